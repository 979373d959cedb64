//! Janus API client.
