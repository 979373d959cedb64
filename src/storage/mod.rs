//! Uploads of finished recordings to object storage (`[storage]`, an S3-compatible bucket).
//!
//! The recorder tells [`Uploads`] of each finished file (a recording part and its sidecar
//! when the part closes, a room manifest when its watch ends); that hands them over a channel
//! and returns, so recording never waits for storage. One task on the side runtime writes
//! each into the durable [`queue`] in the state directory, uploads them oldest first (one at
//! a time, at most two parts in memory; see [`upload`]), verifies each by HEAD (size and SHA-256),
//! then tells `recording_uploaded` and, as `keep_local` says, deletes the local copy.
//! Failures are retried with exponential backoff and jitter; those that waiting will not
//! heal (credentials, a missing bucket, a checksum mismatch) are logged as errors, shown in
//! `status` and told as `recording_upload_failed`. A reload with a new `[storage]` starts the
//! queue again at once with the new settings.

use std::collections::{HashSet, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub mod config;
pub mod fetch;
pub mod journal;
pub mod queue;
pub mod upload;

pub use config::{KeepLocal, KeyTemplate, KeyVars, StorageConfig};
pub use fetch::{FetchError, Fetched};
pub use queue::{FileKind, Pending, Queue};

/// The extensions of recordings' media files: what `keep_local` deletes once uploaded
/// (sidecars, levels and room manifests stay, small, as the index the API and the page read).
const MEDIA_EXTENSIONS: [&str; 2] = ["webm", "mkv"];

use crate::backoff::Backoff;
use crate::events::{EventKind, Events};
use crate::health::Health;
use journal::Journals;
use upload::{Bucket, Cause, UploadError, Uploaded};

/// The first wait after a failure; it doubles up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_secs(1);
/// The longest wait between two tries.
pub const MAX_BACKOFF: Duration = Duration::from_secs(300);
/// How often the queue's gauges are refreshed and `keep_local = N` days is applied.
const TICK: Duration = Duration::from_secs(5);
/// How often `keep_local = N` days looks for uploaded files to delete.
const KEEP_SWEEP_EVERY: Duration = Duration::from_secs(3600);

/// A finished file the recorder hands over.
#[derive(Debug, Clone)]
struct Finished {
    path: PathBuf,
    kind: FileKind,
    vars: KeyVars,
}

enum Command {
    Add(Vec<Finished>),
    Configure(Option<StorageConfig>),
}

/// The handle the recorder tells finished files to; cheap to clone.
#[derive(Debug, Clone)]
pub struct Uploads {
    tx: Option<mpsc::UnboundedSender<Command>>,
    /// The queue and its ledger of uploaded files (none when disabled).
    queue: Option<Queue>,
    /// Whether `[storage]` is configured now.
    configured: Arc<AtomicBool>,
    /// Files handed over and not yet in the queue on disk (see [`Uploads::settle`]).
    handed: Arc<AtomicUsize>,
    /// The bucket of the `[storage]` now, to read uploaded files back ([`Uploads::fetch`]).
    bucket: SharedBucket,
}

/// The bucket the upload task opened last, shared with the readers.
type SharedBucket = Arc<RwLock<Option<Arc<dyn Bucket>>>>;

impl Uploads {
    /// No uploads, whatever the config says (tests, tools).
    pub fn disabled() -> Uploads {
        Uploads {
            tx: None,
            queue: None,
            configured: Arc::default(),
            handed: Arc::default(),
            bucket: Arc::default(),
        }
    }

    /// Opens the queue in `<state_dir>/uploads/` and starts its task on `runtime`, going on
    /// with what a previous run left queued. Fails only if the directories cannot be made.
    pub fn start(
        state_dir: &Path,
        config: Option<StorageConfig>,
        events: Events,
        health: Arc<Health>,
        runtime: &tokio::runtime::Handle,
        shutdown: CancellationToken,
    ) -> std::io::Result<Uploads> {
        let queue = Queue::open(state_dir)?;
        let journals = Journals::open(state_dir)?;
        let (tx, rx) = mpsc::unbounded_channel();
        let configured = Arc::new(AtomicBool::new(config.is_some()));
        let handed = Arc::new(AtomicUsize::new(0));
        let bucket = SharedBucket::default();
        let runner = Runner {
            handed: handed.clone(),
            shared_bucket: bucket.clone(),
            queue: queue.clone(),
            journals,
            events,
            health,
            config: None,
            bucket: None,
            pending: VecDeque::new(),
            told: HashSet::new(),
            backoff: Backoff::new(FIRST_BACKOFF, MAX_BACKOFF),
            retry_at: None,
        };
        runtime.spawn(runner.run(config, rx, shutdown));
        Ok(Uploads {
            tx: Some(tx),
            queue: Some(queue),
            configured,
            handed,
            bucket,
        })
    }

    /// Takes a reloaded config's `[storage]` (none: uploads stop; what is queued stays).
    pub fn configure(&self, config: Option<StorageConfig>) {
        self.configured.store(config.is_some(), Ordering::SeqCst);
        if let Some(tx) = &self.tx {
            let _ = tx.send(Command::Configure(config));
        }
    }

    /// Whether `path` may be deleted by retention: always without `[storage]`, else only
    /// once it is uploaded and verified.
    pub fn may_delete(&self, path: &Path) -> bool {
        if !self.configured.load(Ordering::SeqCst) {
            return true;
        }
        self.queue.as_ref().is_some_and(|q| q.is_uploaded(path))
    }

    /// Forgets files deleted locally (by retention) from the ledger of uploads. A sidecar's
    /// going forgets its media file too: once `keep_local` deleted that, its ledger entry
    /// was the only note of where the recording went, and now nothing lists it any more.
    pub fn forget(&self, deleted: &[PathBuf]) {
        if let Some(q) = &self.queue {
            for path in deleted {
                q.forget(path);
                if path.extension().is_some_and(|e| e == "json") {
                    for ext in MEDIA_EXTENSIONS {
                        q.forget(&path.with_extension(ext));
                    }
                }
            }
        }
    }

    /// Whether `path` is in the bucket, uploaded and verified (its local copy may be gone).
    pub fn is_uploaded(&self, path: &Path) -> bool {
        self.queue.as_ref().is_some_and(|q| q.is_uploaded(path))
    }

    /// Reads back (a range of) the uploaded copy of `path`, for a recording whose local file
    /// `keep_local` deleted: the recordings page still plays it, through the daemon, so the
    /// bucket needs no public endpoint and no presigned URL leaves the host.
    pub async fn fetch(&self, path: &Path, range: Option<&str>) -> Result<Fetched, FetchError> {
        let key = self
            .queue
            .as_ref()
            .and_then(|q| q.uploaded_key(path))
            .ok_or(FetchError::NotUploaded)?;
        let bucket = self
            .bucket
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
            .ok_or(FetchError::NoStorage)?;
        fetch::fetch(&*bucket, &key, range).await
    }

    /// A recording's file (or one part of it) and its sidecar are finished.
    pub fn recording(&self, media: &Path, sidecar_path: &Path, sidecar: &crate::output::Sidecar) {
        let vars = |file: &Path| KeyVars {
            room: sidecar.room.to_string(),
            date: date_of(&sidecar.started_at),
            feed: sidecar.feed.to_string(),
            display: sidecar.display.clone().unwrap_or_default(),
            file: file_name(file),
        };
        self.add(vec![
            Finished {
                path: media.to_owned(),
                kind: FileKind::Media,
                vars: vars(media),
            },
            Finished {
                path: sidecar_path.to_owned(),
                kind: FileKind::Sidecar,
                vars: vars(sidecar_path),
            },
        ]);
    }

    /// A room manifest's watch ended (`started_at`: RFC 3339).
    pub fn manifest(&self, path: &Path, room: &crate::ids::RoomId, started_at: &str) {
        self.add(vec![Finished {
            path: path.to_owned(),
            kind: FileKind::Manifest,
            vars: KeyVars {
                room: room.to_string(),
                date: date_of(started_at),
                file: file_name(path),
                ..Default::default()
            },
        }]);
    }

    fn add(&self, files: Vec<Finished>) {
        if !self.configured.load(Ordering::SeqCst) {
            return;
        }
        if let Some(tx) = &self.tx {
            self.handed.fetch_add(files.len(), Ordering::SeqCst);
            let _ = tx.send(Command::Add(files));
        }
    }

    /// At shutdown: waits (at most `within`) until every file handed over is in the queue on
    /// disk, so the files finalized by the shutdown are uploaded after the next start.
    pub async fn settle(&self, within: Duration) {
        let deadline = tokio::time::Instant::now() + within;
        while self.handed.load(Ordering::SeqCst) > 0 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

/// `YYYY-MM-DD` of an RFC 3339 time (UTC, as the recorder writes them).
fn date_of(rfc3339: &str) -> String {
    rfc3339.get(..10).unwrap_or("unknown-date").to_owned()
}

/// Whether `path` is a recording's media file (not a sidecar or manifest).
fn is_media(path: &Path) -> bool {
    path.extension()
        .is_some_and(|e| MEDIA_EXTENSIONS.iter().any(|m| e == *m))
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// The upload task's state.
struct Runner {
    /// [`Uploads::handed`].
    handed: Arc<AtomicUsize>,
    /// [`Uploads::bucket`].
    shared_bucket: SharedBucket,
    queue: Queue,
    journals: Journals,
    events: Events,
    health: Arc<Health>,
    config: Option<StorageConfig>,
    bucket: Option<Arc<dyn Bucket>>,
    /// What is queued, oldest first (the front is being uploaded).
    pending: VecDeque<Pending>,
    /// Queue entries whose failure was told already (until one upload succeeds).
    told: HashSet<String>,
    backoff: Backoff,
    retry_at: Option<tokio::time::Instant>,
}

impl Runner {
    async fn run(
        mut self,
        config: Option<StorageConfig>,
        mut rx: mpsc::UnboundedReceiver<Command>,
        shutdown: CancellationToken,
    ) {
        let q = self.queue.clone();
        self.pending = tokio::task::spawn_blocking(move || q.list())
            .await
            .unwrap_or_default()
            .into();
        self.configure(config);
        let mut current: Option<JoinHandle<Result<Uploaded, UploadError>>> = None;
        let mut tick = tokio::time::interval(TICK);
        let mut last_keep_sweep: Option<tokio::time::Instant> = None;
        loop {
            let due = self
                .retry_at
                .is_none_or(|t| t <= tokio::time::Instant::now());
            if current.is_none()
                && due
                && let (Some(bucket), Some(item)) = (self.bucket.clone(), self.pending.front())
            {
                let item = item.clone();
                let journals = self.journals.clone();
                let rate = self.config.as_ref().and_then(|c| c.max_bytes_per_second);
                current = Some(tokio::spawn(async move {
                    upload::upload(&*bucket, &journals, &item, rate).await
                }));
            }
            let retry_at = self.retry_at;
            tokio::select! {
                _ = shutdown.cancelled() => {
                    if let Some(c) = current.take() {
                        c.abort(); // its journal is kept: resumed at the next start
                    }
                    return;
                }
                done = async { current.as_mut().expect("guarded").await }, if current.is_some() => {
                    current = None;
                    let result = done.unwrap_or_else(|e| Err(UploadError {
                        cause: Cause::Unavailable,
                        message: format!("the upload task ended: {e}"),
                    }));
                    self.finished(result).await;
                }
                cmd = rx.recv() => match cmd {
                    None => return,
                    Some(Command::Add(files)) => self.add(files).await,
                    Some(Command::Configure(config)) => {
                        if config != self.config {
                            if let Some(c) = current.take() {
                                c.abort();
                            }
                            self.configure(config);
                        }
                    }
                },
                _ = tokio::time::sleep_until(retry_at.unwrap_or_else(tokio::time::Instant::now)), if retry_at.is_some() && current.is_none() => {
                    self.retry_at = None;
                }
                _ = tick.tick() => {
                    self.publish_metrics();
                    if last_keep_sweep.is_none_or(|t| t.elapsed() >= KEEP_SWEEP_EVERY) {
                        last_keep_sweep = Some(tokio::time::Instant::now());
                        self.keep_local_sweep().await;
                    }
                }
            }
        }
    }

    /// Takes new settings: a new bucket, and the queue tried again at once.
    fn configure(&mut self, config: Option<StorageConfig>) {
        self.bucket = match &config {
            None => None,
            Some(c) => match upload::open(c) {
                Ok(b) => {
                    tracing::info!(bucket = %c.bucket, endpoint = c.endpoint.as_deref().unwrap_or("(AWS)"), queued = self.pending.len(), "uploading recordings to object storage");
                    Some(b)
                }
                Err(e) => {
                    tracing::error!(error = %e, "[storage] cannot be used; uploads wait for a config that can");
                    self.health.error(format!("uploads are off: {e}"));
                    None
                }
            },
        };
        *self
            .shared_bucket
            .write()
            .unwrap_or_else(|e| e.into_inner()) = self.bucket.clone();
        self.config = config;
        self.backoff.reset();
        self.retry_at = None;
        self.told.clear();
        self.publish_metrics();
    }

    /// Queues finished files: their keys rendered, written to disk before anything else.
    async fn add(&mut self, files: Vec<Finished>) {
        let n = files.len();
        let Some(config) = &self.config else {
            self.handed.fetch_sub(n, Ordering::SeqCst);
            return;
        };
        let template = config.key.clone();
        let queue = self.queue.clone();
        let added = tokio::task::spawn_blocking(move || {
            files
                .into_iter()
                .filter_map(|f| {
                    let bytes = match std::fs::metadata(&f.path) {
                        Ok(m) => m.len(),
                        Err(e) => {
                            tracing::error!(path = %f.path.display(), error = %e, "a finished file cannot be queued for upload");
                            return None;
                        }
                    };
                    let item = Pending::new(f.path, template.render(&f.vars), f.kind, bytes);
                    if let Err(e) = queue.add(&item) {
                        tracing::error!(path = %item.path.display(), error = %e, "cannot write the upload queue; the file is uploaded while the daemon runs but not after a restart");
                    }
                    Some(item)
                })
                .collect::<Vec<_>>()
        })
        .await
        .unwrap_or_default();
        self.handed.fetch_sub(n, Ordering::SeqCst);
        self.pending.extend(added);
        self.publish_metrics();
    }

    /// After one upload ended: the queue moves on, or waits.
    async fn finished(&mut self, result: Result<Uploaded, UploadError>) {
        let Some(item) = self.pending.front().cloned() else {
            return;
        };
        match result {
            Ok(up) => {
                self.pending.pop_front();
                self.backoff.reset();
                self.told.remove(&item.id);
                self.uploaded(item, up).await;
            }
            Err(e) => {
                metrics::counter!("janus_recorder_upload_failures_total", "cause" => e.cause.label()).increment(1);
                if e.cause == Cause::LocalFile {
                    // Nothing left to upload: the entry goes, and the next one is tried now.
                    self.pending.pop_front();
                    let _ = self.queue.remove(&item);
                    tracing::error!(path = %item.path.display(), key = %item.key, error = %e, "the file to upload cannot be read; dropped from the upload queue");
                    self.emit_failed(&item, &e);
                    self.publish_metrics();
                    return;
                }
                let wait = self.backoff.next_jittered();
                self.retry_at = Some(tokio::time::Instant::now() + wait);
                if e.cause.heals_by_waiting() {
                    tracing::warn!(path = %item.path.display(), key = %item.key, error = %e, retry_in = ?wait, "upload failed; retrying");
                } else {
                    tracing::error!(path = %item.path.display(), key = %item.key, error = %e, retry_in = ?wait, "upload failed and will not succeed by waiting: fix [storage] and reload (systemctl reload janus-recorder); the local files are kept");
                    self.health.error(format!("upload failed: {e}"));
                }
                if !e.cause.heals_by_waiting() {
                    self.emit_failed(&item, &e);
                }
            }
        }
        self.publish_metrics();
    }

    /// Tells `recording_upload_failed` for `item`, once until a reload or a success.
    fn emit_failed(&mut self, item: &Pending, e: &UploadError) {
        if !self.told.insert(item.id.clone()) {
            return;
        }
        self.events.emit(
            EventKind::RecordingUploadFailed,
            serde_json::json!({
                "path": item.path.display().to_string(),
                "key": item.key,
                "bucket": self.config.as_ref().map(|c| c.bucket.clone()),
                "cause": e.cause.label(),
                "error": e.message,
            }),
        );
    }

    /// A verified upload: out of the queue, into the ledger, told, and the local copy
    /// deleted if `keep_local` says so.
    async fn uploaded(&mut self, item: Pending, up: Uploaded) {
        let queue = self.queue.clone();
        let delete_now = item.kind == FileKind::Media
            && self
                .config
                .as_ref()
                .is_some_and(|c| c.keep_local == KeepLocal::UntilUploaded);
        let it = item.clone();
        let _ = tokio::task::spawn_blocking(move || {
            if let Err(e) = queue.mark_uploaded(&it.path, &it.key) {
                tracing::error!(path = %it.path.display(), error = %e, "cannot note the upload in the ledger; retention will keep the file");
            }
        })
        .await;
        // Told before the queue entry goes: a stop in between uploads it (and tells) again,
        // rather than never telling.
        metrics::counter!("janus_recorder_uploaded_bytes_total").increment(up.bytes);
        tracing::info!(path = %item.path.display(), key = %item.key, bytes = up.bytes, sha256 = %up.sha256, upload_id = up.upload_id.as_deref().unwrap_or("(single put)"), resumed_parts = up.resumed_parts, "uploaded and verified");
        let recording = matches!(item.kind, FileKind::Media)
            .then(|| crate::recordings::recording_id(&item.path));
        self.events.emit(
            EventKind::RecordingUploaded,
            serde_json::json!({
                "id": recording,
                "kind": item.kind,
                "path": item.path.display().to_string(),
                "bucket": self.config.as_ref().map(|c| c.bucket.clone()),
                "key": item.key,
                "bytes": up.bytes,
                "sha256": up.sha256,
                "upload_id": up.upload_id,
                "delete_local": delete_now,
            }),
        );
        let queue = self.queue.clone();
        let _ = tokio::task::spawn_blocking(move || {
            let _ = queue.remove(&item);
            if !delete_now {
                return;
            }
            // The ledger keeps the entry: it says where the recording is now.
            match std::fs::remove_file(&item.path) {
                Ok(()) => {
                    tracing::info!(path = %item.path.display(), "keep_local: deleted the uploaded local copy");
                }
                Err(e) => {
                    tracing::warn!(path = %item.path.display(), error = %e, "cannot delete the uploaded local copy");
                }
            }
        })
        .await;
    }

    /// `keep_local = N` days: deletes uploaded media files last written more than N days ago;
    /// forgets ledger entries whose recording is gone altogether (its sidecar too).
    async fn keep_local_sweep(&self) {
        let Some(KeepLocal::Days(days)) = self.config.as_ref().map(|c| c.keep_local) else {
            return;
        };
        let keep = Duration::from_secs(u64::from(days.get()) * 86_400);
        let queue = self.queue.clone();
        let _ = tokio::task::spawn_blocking(move || {
            let now = std::time::SystemTime::now();
            for (path, _) in queue.uploaded() {
                let media = is_media(&path);
                let old = media
                    && std::fs::metadata(&path)
                    .and_then(|m| m.modified())
                    .is_ok_and(|t| now.duration_since(t).is_ok_and(|age| age > keep));
                if old && std::fs::remove_file(&path).is_ok() {
                    tracing::info!(path = %path.display(), days = days.get(), "keep_local: deleted the uploaded local copy");
                }
                let gone = !path.exists()
                    && (!media || !path.with_extension("json").exists());
                if gone {
                    queue.forget(&path);
                }
            }
        })
        .await;
    }

    fn publish_metrics(&self) {
        if self.config.is_none() {
            return; // `status` shows no upload line without [storage]
        }
        let bytes: u64 = self.pending.iter().map(|p| p.bytes).sum();
        let oldest = self
            .pending
            .iter()
            .map(|p| p.queued_at)
            .min()
            .map_or(0, |t| queue::unix_now().saturating_sub(t));
        metrics::gauge!("janus_recorder_upload_queue_files").set(self.pending.len() as f64);
        metrics::gauge!("janus_recorder_upload_queue_bytes").set(bytes as f64);
        metrics::gauge!("janus_recorder_upload_oldest_pending_seconds").set(oldest as f64);
    }
}
