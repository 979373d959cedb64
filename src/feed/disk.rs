//! A recording's file, written off the runtime's thread: the runtime never waits for the
//! disk. Frames, flushes and sidecars go into the recording's queue, in order, and a job on
//! tokio's blocking pool drains it (one job at a time per recording, started when work
//! arrives and none runs). A disk that stalls (a stuck NFS mount, a device with its queue
//! frozen) holds only the jobs of the files on it, while the media loop, the other feeds and
//! the watchdog go on. With a working disk a couple of pool threads serve every recording,
//! so the files cost no thread (nor a thread's allocator cache) each.
//!
//! Frames go over in batches (at every flush, once a second, or every [`BATCH_FRAMES`]):
//! one job per batch, not per frame (a job per feed tick, five a second, woke pool threads
//! 250 times a second at 50 feeds).
//!
//! The queue holds at most [`MAX_QUEUED`] bytes of frames: past that (a disk stalled for
//! minutes) frames are dropped and counted rather than letting memory grow without bound,
//! and video takes up again at a keyframe (the frames between would not decode).

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use crate::media::MediaKind;
use crate::output::Sidecar;
use crate::webm::writer::{FrameBytes, WebmWriter, WriteCause, WriteError, WriteSummary};

/// Frame bytes a recording may hold waiting for its disk: a minute of a 4 Mb/s feed, most
/// of a minute at 12 Mb/s; far past any flush a working disk takes.
const MAX_QUEUED: usize = 32 << 20;

/// Frames gathered before they go to the queue at the latest (a flush sends sooner): three
/// seconds of a feed's audio and video.
const BATCH_FRAMES: usize = 256;

/// A recording's file, written on the blocking pool.
pub(crate) struct DiskWriter {
    /// Frames not in the queue yet.
    batch: Vec<Frame>,
    shared: Arc<Shared>,
    runtime: tokio::runtime::Handle,
    path: PathBuf,
    /// Frames were dropped (the queue was full): video waits for its next keyframe.
    video_dropped: bool,
    /// Frames dropped so far.
    dropped: u64,
    /// Set once finalized (or handed to the drop path).
    done: bool,
}

/// What the feed and the draining job share.
struct Shared {
    state: Mutex<State>,
    /// Signalled when a draining job ends (finalize waits for it).
    idle: Condvar,
    /// Frame bytes queued and not yet written.
    queued: AtomicUsize,
    /// `State::failed` is set: read on every frame without taking the lock.
    has_failed: AtomicBool,
}

struct State {
    jobs: VecDeque<Job>,
    /// The writer, while no job holds it.
    writer: Option<WebmWriter>,
    /// A draining job runs.
    draining: bool,
    /// The first write failure; the feed ends on it.
    failed: Option<WriteError>,
}

/// One frame for the file.
struct Frame {
    ts: Duration,
    kind: MediaKind,
    keyframe: bool,
    data: FrameBytes,
}

enum Job {
    Frames(Vec<Frame>),
    /// Hand what is written to the operating system.
    Flush,
    /// Write the sidecar (atomically, synced).
    Sidecar(Box<Sidecar>, PathBuf),
}

impl DiskWriter {
    /// Takes over `writer` (its file created). Needs a tokio runtime (its blocking pool).
    pub(crate) fn start(writer: WebmWriter, path: &Path) -> std::io::Result<DiskWriter> {
        let runtime = tokio::runtime::Handle::try_current().map_err(std::io::Error::other)?;
        let disk = DiskWriter {
            batch: Vec::new(),
            shared: Arc::new(Shared {
                state: Mutex::new(State {
                    jobs: VecDeque::new(),
                    writer: Some(writer),
                    draining: false,
                    failed: None,
                }),
                idle: Condvar::new(),
                queued: AtomicUsize::new(0),
                has_failed: AtomicBool::new(false),
            }),
            runtime,
            path: path.to_path_buf(),
            video_dropped: false,
            dropped: 0,
            done: false,
        };
        // The new file's name is durable too (its directory entry), not only its data.
        if let Some(dir) = path.parent().map(Path::to_path_buf) {
            disk.runtime.spawn_blocking(move || {
                if let Err(e) = crate::output::sync_dir(&dir) {
                    tracing::warn!(dir = %dir.display(), error = %e, "cannot sync the directory");
                }
            });
        }
        Ok(disk)
    }

    /// Queues a frame at `ts` on the file's timeline. `Err`: the file failed (the first
    /// failure, once the writing met it).
    pub(crate) fn write(
        &mut self,
        ts: Duration,
        kind: MediaKind,
        keyframe: bool,
        data: FrameBytes,
    ) -> Result<(), WriteError> {
        self.failed()?;
        let len = data.len();
        let is_video = kind == MediaKind::Video;
        if self.shared.queued.load(Ordering::Acquire) + len > MAX_QUEUED
            || (is_video && self.video_dropped && !keyframe)
        {
            if self.dropped == 0 {
                tracing::warn!(path = %self.path.display(), "the disk is not keeping up: frames are dropped until it does");
            }
            self.dropped += 1;
            self.video_dropped |= is_video;
            crate::metrics::frames_dropped_for_disk();
            return Ok(());
        }
        if is_video {
            self.video_dropped = false;
        }
        self.shared.queued.fetch_add(len, Ordering::AcqRel);
        self.batch.push(Frame {
            ts,
            kind,
            keyframe,
            data,
        });
        if self.batch.len() >= BATCH_FRAMES {
            self.send();
        }
        Ok(())
    }

    /// Hands the frames gathered so far to the queue.
    fn send(&mut self) {
        if !self.batch.is_empty() {
            let frames = std::mem::take(&mut self.batch);
            self.job(Job::Frames(frames));
        }
    }

    /// Asks for what is written to be handed to the operating system; returns the first
    /// failure so far.
    pub(crate) fn flush(&mut self) -> Result<(), WriteError> {
        self.failed()?;
        self.send();
        self.job(Job::Flush);
        Ok(())
    }

    /// Writes `sidecar` at `path` after what is queued (a failure is logged).
    pub(crate) fn write_sidecar(&mut self, sidecar: Sidecar, path: PathBuf) {
        self.send();
        self.job(Job::Sidecar(Box::new(sidecar), path));
    }

    /// Frames dropped because the disk did not keep up.
    pub(crate) fn dropped(&self) -> u64 {
        self.dropped
    }

    /// Video frames were dropped and the queue has room again: a keyframe lets video go on.
    pub(crate) fn wants_keyframe(&self) -> bool {
        self.video_dropped && self.shared.queued.load(Ordering::Acquire) < MAX_QUEUED / 2
    }

    /// Writes everything queued and finalizes the file. Blocks until the disk has done it:
    /// call it from a blocking thread.
    pub(crate) fn finalize(mut self) -> Result<WriteSummary, WriteError> {
        self.send();
        self.done = true;
        let writer = {
            let mut state = self.shared.lock();
            while state.draining {
                state = self
                    .shared
                    .idle
                    .wait(state)
                    .unwrap_or_else(|e| e.into_inner());
            }
            // Nothing drains: what is left in the queue is written here.
            let jobs = std::mem::take(&mut state.jobs);
            let Some(mut writer) = state.writer.take() else {
                return Err(gone(&self.path));
            };
            drop(state);
            run_jobs(&mut writer, jobs, &self.shared);
            writer
        };
        writer.finalize()
    }

    /// Puts `job` in the queue; starts a draining job if none runs.
    fn job(&self, job: Job) {
        let mut state = self.shared.lock();
        state.jobs.push_back(job);
        if !state.draining {
            state.draining = true;
            drop(state);
            let shared = self.shared.clone();
            let span = tracing::Span::current();
            self.runtime
                .spawn_blocking(move || span.in_scope(|| drain(&shared)));
        }
    }

    fn failed(&self) -> Result<(), WriteError> {
        if !self.shared.has_failed.load(Ordering::Acquire) {
            return Ok(());
        }
        match &self.shared.lock().failed {
            Some(e) => Err(WriteError {
                path: e.path.clone(),
                cause: e.cause.clone(),
            }),
            None => Ok(()),
        }
    }
}

impl Drop for DiskWriter {
    /// Dropped without [`DiskWriter::finalize`] (a panicking feed): what is queued is still
    /// written and the file finalized, on the blocking pool.
    fn drop(&mut self) {
        if self.done {
            return;
        }
        self.send();
        let shared = self.shared.clone();
        let path = self.path.clone();
        let runtime = self.runtime.clone();
        self.runtime.spawn_blocking(move || {
            let finalizing = DiskWriter {
                batch: Vec::new(),
                shared,
                runtime,
                path,
                video_dropped: false,
                dropped: 0,
                done: false,
            };
            if let Err(e) = finalizing.finalize() {
                tracing::error!(error = %e, "finalizing a dropped recording failed");
            }
        });
    }
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The draining job: takes the writer, writes the queue until it is empty, gives it back.
fn drain(shared: &Shared) {
    /// Should writing panic, the recording is not left "draining" forever (finalize would
    /// wait for it): the writer is lost, and finalize says so.
    struct Ends<'a>(&'a Shared);
    impl Drop for Ends<'_> {
        fn drop(&mut self) {
            if std::thread::panicking() {
                self.0.lock().draining = false;
                self.0.idle.notify_all();
            }
        }
    }
    let _ends = Ends(shared);
    let mut state = shared.lock();
    let Some(mut writer) = state.writer.take() else {
        state.draining = false;
        shared.idle.notify_all();
        return;
    };
    loop {
        let jobs = std::mem::take(&mut state.jobs);
        if jobs.is_empty() {
            state.writer = Some(writer);
            state.draining = false;
            shared.idle.notify_all();
            return;
        }
        drop(state);
        run_jobs(&mut writer, jobs, shared);
        state = shared.lock();
    }
}

/// Writes `jobs` in order; the first failure is kept for the feed (later frames are still
/// counted off the queue).
fn run_jobs(writer: &mut WebmWriter, jobs: VecDeque<Job>, shared: &Shared) {
    for job in jobs {
        let written = match job {
            Job::Frames(frames) => {
                let mut r = Ok(());
                for f in frames {
                    let len = f.data.len();
                    if r.is_ok() {
                        r = writer.write_frame(f.ts, f.kind, f.keyframe, f.data);
                    }
                    shared.queued.fetch_sub(len, Ordering::AcqRel);
                }
                r
            }
            Job::Flush => writer.flush(),
            Job::Sidecar(sidecar, path) => {
                if let Err(e) = sidecar.write(&path) {
                    tracing::warn!(path = %path.display(), error = %e, "cannot write the sidecar");
                }
                Ok(())
            }
        };
        if let Err(e) = written {
            shared.lock().failed.get_or_insert(e);
            shared.has_failed.store(true, Ordering::Release);
        }
    }
}

fn gone(path: &Path) -> WriteError {
    WriteError {
        path: path.to_path_buf(),
        cause: WriteCause::Io(Arc::new(std::io::Error::other(
            "the file's writer was lost (a writing job panicked)",
        ))),
    }
}
