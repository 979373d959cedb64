//! Placeholder of the events module (replaced by the events branch): broadcast only.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

/// What happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    RoomStarted,
    RoomEnded,
    RecordingStarted,
    RecordingFinished,
    RecordingFailed,
    RecordingUploaded,
    RecordingUploadFailed,
}

/// One event as delivered.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Event {
    pub id: String,
    #[serde(rename = "type")]
    pub kind: EventKind,
    pub at: String,
    pub data: serde_json::Value,
}

/// One `[[webhooks]]` table.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct WebhookConfig {
    pub url: String,
}

/// The event bus.
#[derive(Debug, Clone)]
pub struct Events {
    tx: tokio::sync::broadcast::Sender<Arc<Event>>,
}

impl Events {
    pub fn disabled() -> Events {
        Events {
            tx: tokio::sync::broadcast::channel(1024).0,
        }
    }

    pub fn start(
        _state_dir: &std::path::Path,
        _hooks: Vec<WebhookConfig>,
        _runtime: &tokio::runtime::Handle,
        _shutdown: tokio_util::sync::CancellationToken,
    ) -> std::io::Result<Events> {
        Ok(Events::disabled())
    }

    pub fn set_webhooks(&self, _hooks: Vec<WebhookConfig>) {}

    pub fn emit(&self, kind: EventKind, data: serde_json::Value) {
        let _ = self.tx.send(Arc::new(Event {
            id: String::new(),
            kind,
            at: crate::output::rfc3339(std::time::SystemTime::now()),
            data,
        }));
    }

    /// Whether anyone is told of `kind` (a webhook wants it, or a stream listens): the
    /// caller may skip building an event nobody reads.
    pub fn wanted(&self, _kind: EventKind) -> bool {
        self.tx.receiver_count() > 0
    }

    pub fn subscribe(&self) -> tokio::sync::broadcast::Receiver<Arc<Event>> {
        self.tx.subscribe()
    }
}
