//! One webhook: its outbox on disk (one file per event, named by the event's time-ordered
//! id, so a listing is the delivery order) and the task that delivers it, in order, signed,
//! retried with backoff and jitter until the receiver answers 2xx or the event is a day old.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::{Event, GIVE_UP_AFTER, WebhookConfig};
use crate::backoff::Backoff;

/// The header with the signature: `t=<unix seconds>,v1=<hex HMAC-SHA256>`.
pub const SIGNATURE_HEADER: &str = "Janus-Recorder-Signature";
/// The header with the event's id (also in the body), for de-duplication.
pub const EVENT_ID_HEADER: &str = "Janus-Recorder-Event-Id";
/// The first wait after a failed delivery; it doubles up to the webhook's `retry_max` (and
/// is `retry_max` when that is shorter, which is how the tests retry quickly).
const FIRST_RETRY: Duration = Duration::from_secs(1);
/// A temporary file of [`crate::output::write_json_atomically`] older than this was left by a
/// process that died while writing it (a live write takes milliseconds): removed at start.
const STALE_TEMPORARY: Duration = Duration::from_secs(60);

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

/// The outboxes under `outbox` of webhooks not among `keys` that still hold events, with how
/// many each holds.
pub(super) fn orphaned(outbox: &Path, keys: &[String]) -> Vec<(PathBuf, usize)> {
    let Ok(entries) = std::fs::read_dir(outbox) else {
        return Vec::new();
    };
    let mut found: Vec<(PathBuf, usize)> = entries
        .flatten()
        .filter(|e| !keys.iter().any(|k| e.file_name() == k.as_str()))
        .map(|e| e.path())
        .filter_map(|d| Some(pending(&d).len()).filter(|&n| n > 0).map(|n| (d, n)))
        .collect();
    found.sort();
    found
}

/// Writes `event` into the outbox `dir` (atomically, the file and then the directory synced,
/// so the event outlives a power cut as well as a SIGKILL), then drops the oldest events past
/// `max` (each logged and counted).
pub(super) fn store(dir: &Path, event: &Event, max: usize, label: &str) -> std::io::Result<()> {
    crate::output::create_private_dir(dir)?;
    crate::output::write_json_atomically(&dir.join(format!("{}.json", event.id)), event)?;
    std::fs::File::open(dir)?.sync_all()?;
    bound(dir, max, label);
    Ok(())
}

/// Drops the oldest events of the outbox `dir` past `max`, each logged and counted.
fn bound(dir: &Path, max: usize, label: &str) {
    let files = pending(dir);
    if files.len() > max {
        for old in &files[..files.len() - max] {
            if std::fs::remove_file(old).is_ok() {
                tracing::warn!(webhook = %label, event = %event_id(old), max_outbox = max, "webhook outbox full: the oldest event is dropped");
                metrics::counter!("janus_recorder_webhook_events_dropped_total", "why" => "outbox-full")
                    .increment(1);
            }
        }
    }
}

/// Removes what a process killed while writing into `dir` left: temporaries older than
/// [`STALE_TEMPORARY`] (never one being written now).
fn remove_stale_temporaries(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        let old = entry
            .metadata()
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.elapsed().ok())
            .is_some_and(|age| age > STALE_TEMPORARY);
        if name.starts_with('.') && name.ends_with(".tmp") && old {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

/// Delivers `hook`'s outbox `dir` until `stop`: oldest first, each until it is taken (2xx)
/// or is older than [`GIVE_UP_AFTER`]; woken by `wake` when an event is added. The directory
/// is listed once per batch (not once per event: a backlog of 10,000 drains in linear time)
/// and again after each failure.
pub(super) async fn deliver(
    hook: WebhookConfig,
    dir: PathBuf,
    wake: Arc<Notify>,
    stop: CancellationToken,
) {
    let label = hook.label();
    // No redirects: a 3xx is a failure, as with Stripe (a redirected POST may become a GET,
    // and the receiver's address is the operator's to change, in the config).
    let client = match reqwest::Client::builder()
        .timeout(hook.timeout)
        .redirect(reqwest::redirect::Policy::none())
        .build()
    {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(webhook = %label, error = %e, "cannot make an HTTP client; webhook off");
            return;
        }
    };
    let (d, max, l) = (dir.clone(), hook.max_outbox, label.clone());
    let _ = tokio::task::spawn_blocking(move || {
        remove_stale_temporaries(&d);
        bound(&d, max, &l); // `max_outbox` may have been lowered since the events were stored
    })
    .await;
    let outbox_size =
        metrics::gauge!("janus_recorder_webhook_outbox_events", "webhook" => label.clone());
    let mut backoff = Backoff::new(FIRST_RETRY, hook.retry_max);
    let mut failures = 0u32;
    loop {
        let d = dir.clone();
        let files = tokio::task::spawn_blocking(move || pending(&d))
            .await
            .unwrap_or_default();
        outbox_size.set(files.len() as f64);
        if files.is_empty() {
            tokio::select! {
                _ = wake.notified() => continue,
                _ = stop.cancelled() => return,
            }
        }
        for path in files {
            if stop.is_cancelled() {
                return;
            }
            match deliver_one(&client, &hook, &label, &path, &stop).await {
                Outcome::Gone => outbox_size.decrement(1.0),
                Outcome::Taken => {
                    outbox_size.decrement(1.0);
                    backoff.reset();
                    if failures > 0 {
                        tracing::info!(webhook = %label, failures, "webhook takes events again");
                        failures = 0;
                    }
                }
                Outcome::Failed(why) => {
                    failures += 1;
                    let wait = backoff.next_jittered();
                    tracing::warn!(webhook = %label, event = %event_id(&path), error = %why, retry_in = ?wait, "webhook delivery failed");
                    tokio::select! {
                        _ = tokio::time::sleep(wait) => {}
                        _ = stop.cancelled() => return,
                    }
                    break; // listed again: the bound may have dropped this one meanwhile
                }
                Outcome::Stopped => return,
            }
        }
    }
}

/// What became of one outbox file.
enum Outcome {
    /// The receiver took it (2xx); its file is removed.
    Taken,
    /// No longer to be sent: removed meanwhile (the bound), expired, or not an event.
    Gone,
    /// Not taken; why (the HTTP status or the error).
    Failed(String),
    /// The delivery was stopped (shutdown, or the webhook was removed or changed).
    Stopped,
}

/// The event id an outbox file is named after (for logs).
fn event_id(path: &Path) -> String {
    path.file_stem()
        .map_or_else(String::new, |s| s.to_string_lossy().into_owned())
}

/// Sends the event in `path` once.
async fn deliver_one(
    client: &reqwest::Client,
    hook: &WebhookConfig,
    label: &str,
    path: &Path,
    stop: &CancellationToken,
) -> Outcome {
    let p = path.to_owned();
    let Ok(Ok(body)) = tokio::task::spawn_blocking(move || std::fs::read(&p)).await else {
        return Outcome::Gone; // removed meanwhile (the outbox bound)
    };
    let event: Event = match serde_json::from_slice(&body) {
        Ok(e) => e,
        Err(e) => {
            let aside = path.with_extension("broken");
            tracing::error!(webhook = %label, path = %path.display(), error = %e, "an outbox file is not an event; moved aside");
            metrics::counter!("janus_recorder_webhook_events_dropped_total", "why" => "unreadable")
                .increment(1);
            let _ = std::fs::rename(path, aside);
            return Outcome::Gone;
        }
    };
    let at = OffsetDateTime::parse(&event.at, &Rfc3339)
        .map(SystemTime::from)
        .or_else(|_| std::fs::metadata(path).and_then(|m| m.modified()))
        .unwrap_or_else(|_| SystemTime::now());
    if too_old(at, SystemTime::now()) {
        tracing::error!(webhook = %label, event = %event.id, kind = ?event.kind, at = %event.at, "event not taken for a day: dropped");
        metrics::counter!("janus_recorder_webhook_events_dropped_total", "why" => "expired")
            .increment(1);
        let _ = std::fs::remove_file(path);
        return Outcome::Gone;
    }
    let sent = tokio::select! {
        r = post(client, hook, &event.id, body) => r,
        _ = stop.cancelled() => return Outcome::Stopped,
    };
    match sent {
        Ok(()) => {
            metrics::counter!("janus_recorder_webhook_deliveries_total", "result" => "ok")
                .increment(1);
            let p = path.to_owned();
            let _ = tokio::task::spawn_blocking(move || std::fs::remove_file(p)).await;
            Outcome::Taken
        }
        Err(why) => {
            metrics::counter!("janus_recorder_webhook_deliveries_total", "result" => "error")
                .increment(1);
            Outcome::Failed(why)
        }
    }
}

/// Whether an event of `at` (its `at`, else when its file was written) has waited longer
/// than [`GIVE_UP_AFTER`].
fn too_old(at: SystemTime, now: SystemTime) -> bool {
    now.duration_since(at).is_ok_and(|age| age > GIVE_UP_AFTER)
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
        // Without the URL (it may carry a token), with the causes ("error sending request"
        // alone does not say that the connection was refused).
        .map_err(|e| {
            let e = e.without_url();
            let mut why = e.to_string();
            let mut cause = std::error::Error::source(&e);
            while let Some(c) = cause {
                why = format!("{why}: {c}");
                cause = c.source();
            }
            why
        })?;
    if resp.status().is_success() {
        Ok(())
    } else {
        Err(format!("answered {}", resp.status()))
    }
}
