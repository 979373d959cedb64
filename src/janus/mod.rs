//! The Janus API client: WebSocket transport, transactions, keepalive ([`client`]), TLS trust for `wss://` ([`tls`]) and the
//! parsed form of everything Janus sends ([`messages`]).

pub mod client;
pub mod messages;
pub mod tls;
pub mod videoroom;

pub use client::{Auth, Handle, JanusError, Session};
pub use tls::TlsTrust;
