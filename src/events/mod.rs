//! Events for the platform that drives the recorder: rooms and recordings starting,
//! finishing and failing. Each event goes to the API's Server-Sent Events stream (who is
//! listening now) and to every `[[webhooks]]` that wants it, at least once: it is written to
//! that webhook's outbox in the state directory before anything is sent, POSTed signed, and
//! removed only once the receiver answered 2xx, so neither a receiver that is down nor a
//! SIGKILL of the daemon loses it.
//!
//! Nothing here runs on the recording runtime: [`Events::emit`] hands the event to a channel
//! and returns; the outbox writes and the deliveries run on the side runtime given to
//! [`Events::start`], so a slow, failing or hanging receiver never delays recording.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};
use tokio::sync::{Notify, broadcast, mpsc};
use tokio_util::sync::CancellationToken;

use crate::output::rfc3339;
use crate::secret::Secret;

mod webhook;

pub use webhook::{SIGNATURE_HEADER, sign};

/// What happened. Written snake_case (`recording_finished`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    /// A room's watcher joined it: its publishers are recorded from now on.
    RoomStarted,
    /// A room is no longer watched (`reason`: `stopped`, `destroyed`, `shutdown`, ...).
    RoomEnded,
    /// A recording's file was opened (its first keyframe is in it).
    RecordingStarted,
    /// A recording's file was finalized; with the check tool's verdict on it.
    RecordingFinished,
    /// A feed could not be recorded (subscribing failed), or its recording ended by an error.
    RecordingFailed,
    /// A recording was uploaded to object storage and verified.
    RecordingUploaded,
    /// An upload failed in a way that waiting will not heal.
    RecordingUploadFailed,
}

/// One event as it is delivered: `{"id", "type", "at", "data"}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Event {
    /// Unique (a UUIDv7: ordered by time): receivers de-duplicate by it.
    pub id: String,
    #[serde(rename = "type")]
    pub kind: EventKind,
    /// When it happened (RFC 3339, UTC).
    pub at: String,
    #[schema(value_type = Object)]
    pub data: serde_json::Value,
}

/// The longest an event is retried before it is dropped.
pub const GIVE_UP_AFTER: Duration = Duration::from_secs(24 * 3600);

/// One `[[webhooks]]` table: where events are POSTed.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookConfig {
    /// `http://` or `https://`.
    pub url: String,
    /// The signing secret (HMAC-SHA256, see [`sign`]).
    pub secret: Secret,
    /// The events wanted; empty: all.
    #[serde(default)]
    pub events: Vec<EventKind>,
    /// A name for logs and metrics (default: the URL's host; the URL itself may hold a token).
    #[serde(default)]
    pub name: Option<String>,
    /// The most events kept for this webhook while it cannot take them; past it the oldest
    /// are dropped (logged and counted).
    #[serde(default = "default_max_outbox")]
    pub max_outbox: usize,
    /// How long one delivery may take.
    #[serde(default = "default_timeout", deserialize_with = "duration")]
    pub timeout: Duration,
    /// The longest wait between two tries (the waits double from 1 s, or from this when it
    /// is shorter, with jitter).
    #[serde(default = "default_retry_max", deserialize_with = "duration")]
    pub retry_max: Duration,
}

fn default_max_outbox() -> usize {
    10_000
}

fn default_timeout() -> Duration {
    Duration::from_secs(10)
}

fn default_retry_max() -> Duration {
    Duration::from_secs(300)
}

fn duration<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    use serde::de::Error;
    let text = String::deserialize(d)?;
    match crate::config::parse_duration(&text) {
        Ok(v) if v.is_zero() => Err(D::Error::custom(format!("{text:?} must not be zero"))),
        Ok(v) => Ok(v),
        Err(e) => Err(D::Error::custom(e)),
    }
}

impl WebhookConfig {
    /// What is wrong with it, if anything (the config names the key).
    pub fn validate(&self) -> Result<(), (&'static str, String)> {
        if !(self.url.starts_with("http://") || self.url.starts_with("https://")) {
            return Err(("url", "must start with http:// or https://".into()));
        }
        if reqwest::Url::parse(&self.url).is_err() {
            return Err(("url", "is not a valid URL".into()));
        }
        if self.secret.expose().len() < 16 {
            return Err(("secret", "must be at least 16 characters".into()));
        }
        if self.max_outbox == 0 {
            return Err(("max_outbox", "must be at least 1".into()));
        }
        Ok(())
    }

    /// Whether this webhook wants `kind`.
    pub fn wants(&self, kind: EventKind) -> bool {
        self.events.is_empty() || self.events.contains(&kind)
    }

    /// Its name in logs and metrics: `name`, else the URL's host and port (never the whole
    /// URL: its path or query may hold a token, as Slack's and Discord's do).
    pub fn label(&self) -> String {
        self.name.clone().unwrap_or_else(|| {
            reqwest::Url::parse(&self.url)
                .ok()
                .and_then(|u| {
                    let host = u.host_str()?;
                    Some(match u.port() {
                        Some(port) => format!("{host}:{port}"),
                        None => host.to_owned(),
                    })
                })
                .unwrap_or_else(|| "webhook".into())
        })
    }

    /// Its outbox directory's name: a digest of the URL, so it is the same after a restart
    /// and differs between webhooks (two tables with one URL are refused, see
    /// [`same_url`]).
    fn key(&self) -> String {
        use sha2::Digest;
        let digest = sha2::Sha256::digest(self.url.as_bytes());
        digest[..8].iter().map(|b| format!("{b:02x}")).collect()
    }
}

/// Checks the `[[webhooks]]` tables: each one, and that no two share a URL (a URL has one
/// outbox) or a label (logs and metrics could not tell them apart). The error names the key
/// (`webhooks[1].url`) and the problem.
pub fn validate_all(hooks: &[WebhookConfig]) -> Result<(), (String, String)> {
    for (i, hook) in hooks.iter().enumerate() {
        let key = |k: &str| format!("webhooks[{i}].{k}");
        hook.validate().map_err(|(k, problem)| (key(k), problem))?;
        let earlier = &hooks[..i];
        if earlier.iter().any(|h| h.url == hook.url) {
            return Err((
                key("url"),
                "is an earlier webhook's too: list every event it wants in one table".into(),
            ));
        }
        let label = hook.label();
        if earlier.iter().any(|h| h.label() == label) {
            return Err((
                key("name"),
                format!(
                    "{label:?} is an earlier webhook's name too (in logs and metrics): give each a `name`"
                ),
            ));
        }
    }
    Ok(())
}

/// The first webhook (its index) whose URL an earlier one has (see [`validate_all`]).
pub fn same_url(hooks: &[WebhookConfig]) -> Option<usize> {
    (1..hooks.len()).find(|&i| hooks[..i].iter().any(|h| h.url == hooks[i].url))
}

/// The event bus; cheap to clone.
#[derive(Debug, Clone)]
pub struct Events {
    tx: broadcast::Sender<Arc<Event>>,
    outbox: Option<Arc<Outbox>>,
}

/// The webhooks' side: the outbox directory, the writer's channel, the delivery tasks.
#[derive(Debug)]
struct Outbox {
    dir: PathBuf,
    runtime: tokio::runtime::Handle,
    shutdown: CancellationToken,
    /// Held while an event gets its id and is queued, so that ids (the outbox's order) are
    /// queued in order when several threads emit at once.
    writer: Mutex<mpsc::UnboundedSender<Arc<Event>>>,
    /// Events emitted and not yet in the outbox.
    queued: std::sync::atomic::AtomicUsize,
    hooks: Mutex<Vec<Running>>,
}

/// One webhook's delivery task.
#[derive(Debug)]
struct Running {
    config: WebhookConfig,
    wake: Arc<Notify>,
    stop: CancellationToken,
}

impl Events {
    /// Broadcast only (no outbox, no webhooks).
    pub fn disabled() -> Events {
        Events {
            tx: broadcast::channel(1024).0,
            outbox: None,
        }
    }

    /// Opens `<state_dir>/outbox/` (created 0750), and starts each webhook's delivery on
    /// `runtime`, beginning with what a previous run left in its outbox. Fails only if the
    /// directory cannot be made or written to.
    pub fn start(
        state_dir: &Path,
        hooks: Vec<WebhookConfig>,
        runtime: &tokio::runtime::Handle,
        shutdown: CancellationToken,
    ) -> std::io::Result<Events> {
        let dir = state_dir.join("outbox");
        crate::output::create_private_dir(&dir)?;
        crate::output::check_writable_dir(&dir)?;
        let (writer, queue) = mpsc::unbounded_channel();
        let outbox = Arc::new(Outbox {
            dir,
            runtime: runtime.clone(),
            shutdown,
            writer: Mutex::new(writer),
            queued: Default::default(),
            hooks: Mutex::new(Vec::new()),
        });
        runtime.spawn(write_outbox(Arc::downgrade(&outbox), queue));
        let events = Events {
            tx: broadcast::channel(1024).0,
            outbox: Some(outbox),
        };
        events.set_webhooks(hooks);
        Ok(events)
    }

    /// Takes a reloaded config's webhooks: added ones start, removed ones stop (their
    /// outbox stays on disk and is delivered if they come back), changed ones restart.
    pub fn set_webhooks(&self, hooks: Vec<WebhookConfig>) {
        let Some(outbox) = &self.outbox else {
            if !hooks.is_empty() {
                tracing::error!("webhooks are configured but the events outbox is off");
            }
            return;
        };
        let mut hooks = hooks;
        while let Some(i) = same_url(&hooks) {
            let dup = hooks.remove(i);
            tracing::error!(webhook = %dup.label(), "a second webhook with the same URL is ignored");
        }
        let mut running = lock(&outbox.hooks);
        running.retain(|r| {
            let keep = hooks.contains(&r.config);
            if !keep {
                r.stop.cancel();
            }
            keep
        });
        for hook in hooks {
            if running.iter().any(|r| r.config == hook) {
                continue;
            }
            let wake = Arc::new(Notify::new());
            let stop = outbox.shutdown.child_token();
            let dir = outbox.dir.join(hook.key());
            tracing::info!(webhook = %hook.label(), "delivering events");
            outbox.runtime.spawn(webhook::deliver(
                hook.clone(),
                dir,
                wake.clone(),
                stop.clone(),
            ));
            running.push(Running {
                config: hook,
                wake,
                stop,
            });
        }
        let keys: Vec<String> = running.iter().map(|r| r.config.key()).collect();
        drop(running);
        for (dir, n) in webhook::orphaned(&outbox.dir, &keys) {
            tracing::warn!(dir = %dir.display(), events = n, "undelivered events of a webhook no longer configured (removed, or its URL changed) are kept; configure its URL again to deliver them, or delete the directory");
        }
    }

    /// Emits an event now: to the stream's listeners at once, and into the outbox of each
    /// webhook that wants it (written by a task on the events' runtime). Never blocks (beyond
    /// a lock held for a channel send), never fails; callable from any thread, in or out of a
    /// runtime.
    pub fn emit(&self, kind: EventKind, data: serde_json::Value) {
        let new = |data| {
            Arc::new(Event {
                id: uuid::Uuid::now_v7().to_string(),
                kind,
                at: rfc3339(SystemTime::now()),
                data,
            })
        };
        let Some(o) = self
            .outbox
            .as_ref()
            .filter(|o| lock(&o.hooks).iter().any(|r| r.config.wants(kind)))
        else {
            let _ = self.tx.send(new(data));
            return;
        };
        let writer = lock(&o.writer);
        let event = new(data);
        o.queued.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let _ = writer.send(event.clone());
        drop(writer);
        let _ = self.tx.send(event);
    }

    /// At shutdown: waits (at most `within`) until every event emitted is in the outbox and
    /// the outboxes are delivered, so the last events (a room's end) go out now rather than
    /// after the next start. What is not delivered by then stays in the outbox.
    pub async fn settle(&self, within: Duration) {
        let Some(o) = &self.outbox else { return };
        let dirs: Vec<PathBuf> = lock(&o.hooks)
            .iter()
            .map(|r| o.dir.join(r.config.key()))
            .collect();
        if dirs.is_empty() {
            return;
        }
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let queued = o.queued.load(std::sync::atomic::Ordering::SeqCst);
            let d = dirs.clone();
            let pending = tokio::task::spawn_blocking(move || {
                d.iter().map(|d| webhook::pending(d).len()).sum::<usize>()
            })
            .await
            .unwrap_or(0);
            if queued == 0 && pending == 0 || tokio::time::Instant::now() >= deadline {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Whether anyone is told of `kind` (a webhook wants it, or a stream listens): the
    /// caller may skip building an event nobody reads.
    pub fn wanted(&self, kind: EventKind) -> bool {
        self.tx.receiver_count() > 0
            || self
                .outbox
                .as_ref()
                .is_some_and(|o| lock(&o.hooks).iter().any(|r| r.config.wants(kind)))
    }

    /// Every event emitted from now on (the API's event stream).
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Event>> {
        self.tx.subscribe()
    }
}

/// Writes each emitted event into the outbox of every webhook that wants it (on a blocking
/// thread: the file is synced), bounds each outbox, and wakes the webhook's delivery.
async fn write_outbox(
    outbox: std::sync::Weak<Outbox>,
    mut queue: mpsc::UnboundedReceiver<Arc<Event>>,
) {
    while let Some(event) = queue.recv().await {
        let Some(o) = outbox.upgrade() else { return };
        let targets: Vec<(WebhookConfig, Arc<Notify>)> = lock(&o.hooks)
            .iter()
            .filter(|r| r.config.wants(event.kind))
            .map(|r| (r.config.clone(), r.wake.clone()))
            .collect();
        let dir = o.dir.clone();
        drop(o);
        let ev = event.clone();
        let written = tokio::task::spawn_blocking(move || {
            targets
                .into_iter()
                .filter_map(|(hook, wake)| {
                    let hook_dir = dir.join(hook.key());
                    match webhook::store(&hook_dir, &ev, hook.max_outbox, &hook.label()) {
                        Ok(()) => Some(wake),
                        Err(e) => {
                            tracing::error!(webhook = %hook.label(), error = %e, "cannot write the event into the outbox; it is not delivered");
                            metrics::counter!("janus_recorder_webhook_events_dropped_total", "why" => "write-error").increment(1);
                            None
                        }
                    }
                })
                .collect::<Vec<_>>()
        })
        .await;
        if let Some(o) = outbox.upgrade() {
            o.queued.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
        }
        for wake in written.into_iter().flatten() {
            wake.notify_one();
        }
    }
}

/// A lock whose holder may have panicked: what it guards stays usable (a list of tasks, a
/// channel end).
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests;
