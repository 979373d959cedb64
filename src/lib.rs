//! janus-recorder: records every publisher of Janus VideoRoom rooms into per-feed WebM files.
//!
//! Data flows one way: Janus event -> [`room`] watcher -> [`feed`] subscriber -> media frames
//! -> [`webm`] writer. The Janus API client lives in [`janus`]; the str0m sans-IO loop lives
//! only in [`rtc`]; [`check`] reads recordings back independently of the writer; [`roomfile`]
//! puts a room's recordings together into one file.

pub mod backoff;
pub mod check;
pub mod codec;
pub mod config;
pub mod discovery;
pub mod events;
pub mod feed;
pub mod fleet;
pub mod forwarded;
pub mod health;
pub mod http;
pub mod ids;
pub mod janus;
pub mod levels;
pub mod limits;
pub mod manifest;
pub mod media;
pub mod meetings;
pub mod metrics;
pub mod net;
pub mod output;
pub mod probe;
pub mod publish;
pub mod recordings;
pub mod registry;
pub mod remote;
pub mod retention;
pub mod room;
pub mod roomfile;
pub mod rtc;
pub mod secret;
pub mod service;
pub mod share;
pub mod status;
pub mod storage;
pub mod text;
pub mod webm;
