//! One webhook: its outbox on disk (one file per event, named by the event's time-ordered
//! id, so a listing is the delivery order) and the task that delivers it, in order, signed,
//! retried with backoff and jitter until the receiver answers 2xx or the event is a day old.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use hmac::{Hmac, Mac};
use sha2::Sha256;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::{Event, GIVE_UP_AFTER, WebhookConfig};

/// The header with the signature: `t=<unix seconds>,v1=<hex HMAC-SHA256>`.
pub const SIGNATURE_HEADER: &str = "Janus-Recorder-Signature";
/// The header with the event's id (also in the body), for de-duplication.
pub const EVENT_ID_HEADER: &str = "Janus-Recorder-Event-Id";
/// The first wait after a failed delivery; it doubles up to the webhook's `retry_max`.
const FIRST_RETRY: Duration = Duration::from_secs(1);

/// The signature header's value for `body` sent at `t` (Unix seconds): HMAC-SHA256 with the
/// webhook's secret over `"<t>.<body>"`, hex, as Stripe signs its webhooks. A receiver
/// computes the same and compares in constant time, and refuses an old `t` (replays).
pub fn sign(secret: &[u8], t: u64, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes a key of any length");
    mac.update(t.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    let hex: String = mac
        .finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("t={t},v1={hex}")
}

/// The outbox's files, oldest first.
pub(super) fn pending(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.extension().is_some_and(|e| e == "json")
                && !p
                    .file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with('.'))
        })
        .collect();
    files.sort();
    files
}

/// Writes `event` into the outbox `dir` (atomically, synced), then drops the oldest events
/// past `max` (each logged and counted).
pub(super) fn store(dir: &Path, event: &Event, max: usize, label: &str) -> std::io::Result<()> {
    crate::output::create_private_dir(dir)?;
    crate::output::write_json_atomically(&dir.join(format!("{}.json", event.id)), event)?;
    let files = pending(dir);
    if files.len() > max {
        for old in &files[..files.len() - max] {
            if std::fs::remove_file(old).is_ok() {
                tracing::warn!(webhook = %label, event = %old.display(), max_outbox = max, "webhook outbox full: the oldest event is dropped");
                metrics::counter!("janus_recorder_webhook_events_dropped_total", "why" => "outbox-full")
                    .increment(1);
            }
        }
    }
    Ok(())
}

/// A wait of `base` with ±25% jitter, so receivers coming back are not hit by every
/// recorder at once.
fn jittered(base: Duration) -> Duration {
    let r = (uuid::Uuid::new_v4().as_u128() % 1000) as f64 / 1000.0;
    base.mul_f64(0.75 + r * 0.5)
}

/// Delivers `hook`'s outbox `dir` until `stop`: oldest first, each until it is taken (2xx)
/// or is older than [`GIVE_UP_AFTER`]; woken by `wake` when an event is added.
pub(super) async fn deliver(
    hook: WebhookConfig,
    dir: PathBuf,
    wake: Arc<Notify>,
    stop: CancellationToken,
) {
    let label = hook.label();
    let client = match reqwest::Client::builder().timeout(hook.timeout).build() {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(webhook = %label, error = %e, "cannot make an HTTP client; webhook off");
            return;
        }
    };
    let mut backoff = FIRST_RETRY;
    loop {
        let d = dir.clone();
        let files = tokio::task::spawn_blocking(move || pending(&d))
            .await
            .unwrap_or_default();
        metrics::gauge!("janus_recorder_webhook_outbox_events", "webhook" => label.clone())
            .set(files.len() as f64);
        let Some(path) = files.into_iter().next() else {
            tokio::select! {
                _ = wake.notified() => continue,
                _ = stop.cancelled() => return,
            }
        };
        let p = path.clone();
        let Ok(Ok(body)) = tokio::task::spawn_blocking(move || std::fs::read(&p)).await else {
            continue; // removed meanwhile (the outbox bound)
        };
        let event: Event = match serde_json::from_slice(&body) {
            Ok(e) => e,
            Err(e) => {
                let aside = path.with_extension("broken");
                tracing::error!(webhook = %label, path = %path.display(), error = %e, "an outbox file is not an event; moved aside");
                let _ = std::fs::rename(&path, aside);
                continue;
            }
        };
        if too_old(&event, SystemTime::now()) {
            tracing::error!(webhook = %label, event = %event.id, kind = ?event.kind, "event not taken for a day: dropped");
            metrics::counter!("janus_recorder_webhook_events_dropped_total", "why" => "expired")
                .increment(1);
            let _ = std::fs::remove_file(&path);
            continue;
        }
        let sent = tokio::select! {
            r = post(&client, &hook, &event.id, body) => r,
            _ = stop.cancelled() => return,
        };
        match sent {
            Ok(()) => {
                metrics::counter!("janus_recorder_webhook_deliveries_total", "result" => "ok")
                    .increment(1);
                let p = path.clone();
                let _ = tokio::task::spawn_blocking(move || std::fs::remove_file(p)).await;
                backoff = FIRST_RETRY;
            }
            Err(why) => {
                metrics::counter!("janus_recorder_webhook_deliveries_total", "result" => "error")
                    .increment(1);
                let wait = jittered(backoff);
                tracing::warn!(webhook = %label, event = %event.id, error = %why, retry_in = ?wait, "webhook delivery failed");
                tokio::select! {
                    _ = tokio::time::sleep(wait) => {}
                    _ = stop.cancelled() => return,
                }
                backoff = (backoff * 2).min(hook.retry_max);
            }
        }
    }
}

/// Whether `event` has waited longer than [`GIVE_UP_AFTER`].
fn too_old(event: &Event, now: SystemTime) -> bool {
    OffsetDateTime::parse(&event.at, &Rfc3339)
        .ok()
        .and_then(|at| now.duration_since(SystemTime::from(at)).ok())
        .is_some_and(|age| age > GIVE_UP_AFTER)
}

/// One signed POST; `Err` says why it was not taken.
async fn post(
    client: &reqwest::Client,
    hook: &WebhookConfig,
    id: &str,
    body: Vec<u8>,
) -> Result<(), String> {
    let t = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let signature = sign(hook.secret.expose().as_bytes(), t, &body);
    let resp = client
        .post(&hook.url)
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .header(SIGNATURE_HEADER, signature)
        .header(EVENT_ID_HEADER, id)
        .body(body)
        .send()
        .await
        // Without the URL: it may carry a token.
        .map_err(|e| e.without_url().to_string())?;
    if resp.status().is_success() {
        Ok(())
    } else {
        Err(format!("answered {}", resp.status()))
    }
}
