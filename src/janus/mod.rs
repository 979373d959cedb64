//! The Janus API client: WebSocket transport, transactions, keepalive ([`client`]) and the
//! parsed form of everything Janus sends ([`messages`]).

pub mod client;
pub mod messages;

pub use client::{Auth, Handle, JanusError, Session};
