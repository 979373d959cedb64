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
//! Recordings with work wait in one process-wide list ([`Runners`]), and a pool job drains
//! recordings from it until it is empty: the feeds that flush on the same tick cost one
//! wake-up of a pool thread, not one each (a job per recording and flush, 50 a second at 50
//! feeds, cost 6-7% of the daemon's CPU in thread wake-ups and switches). A runner held up
//! by a stalled disk does not hold the others' recordings: when every runner has been on
//! one recording for [`STUCK`], the next recording with work starts another runner.
//!
//! The queue holds at most [`MAX_QUEUED`] bytes of frames: past that (a disk stalled for
//! minutes) frames are dropped and counted rather than letting memory grow without bound,
//! and video takes up again at a keyframe (the frames between would not decode).

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::time::{Duration, Instant};

use crate::media::MediaKind;
use crate::output::Sidecar;
use crate::webm::writer::{FrameBytes, WebmWriter, WriteCause, WriteError, WriteSummary};

/// Frame bytes a recording may hold waiting for its disk: a minute of a 4 Mb/s feed, most
/// of a minute at 12 Mb/s; far past any flush a working disk takes.
const MAX_QUEUED: usize = 32 << 20;

/// Frames gathered before they go to the queue at the latest (a flush sends sooner): three
/// seconds of a feed's audio and video.
const BATCH_FRAMES: usize = 256;

/// How long a runner may be on one recording before the recordings waiting behind it get
/// a runner of their own: far longer than a working disk takes for a second of a feed,
/// far shorter than any gap a recording would notice (its frames wait in memory).
const STUCK: Duration = Duration::from_millis(100);

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
                let (s, waited) = self
                    .shared
                    .idle
                    .wait_timeout(state, STUCK)
                    .unwrap_or_else(|e| e.into_inner());
                state = s;
                if waited.timed_out() && state.draining {
                    // Waiting behind a stalled disk's recording: not for long.
                    drop(state);
                    Runners::get().unstick(&self.runtime);
                    state = self.shared.lock();
                }
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

    /// Puts `job` in the queue; the recording waits for a runner if none drains it.
    fn job(&self, job: Job) {
        let mut state = self.shared.lock();
        state.jobs.push_back(job);
        let waiting = !state.draining;
        state.draining = true;
        drop(state);
        let runners = Runners::get();
        if waiting {
            runners.add(self.shared.clone(), tracing::Span::current(), &self.runtime);
        } else {
            // Already waiting or being drained: a runner stuck elsewhere must not keep it.
            runners.unstick(&self.runtime);
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

/// The process's disk runners: recordings waiting to be drained, and the pool jobs that
/// drain them.
struct Runners {
    state: Mutex<RunnersState>,
}

#[derive(Default)]
struct RunnersState {
    /// Recordings with work, each with its feed's span (for the log lines of its writes).
    ready: VecDeque<(Arc<Shared>, tracing::Span)>,
    /// Each running runner, with when it took the recording it is on (`None`: between two).
    running: Vec<(u64, Option<Instant>)>,
    next_id: u64,
}

impl Runners {
    fn get() -> &'static Runners {
        static RUNNERS: OnceLock<Runners> = OnceLock::new();
        RUNNERS.get_or_init(|| Runners {
            state: Mutex::new(RunnersState::default()),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, RunnersState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// `shared` has work and no runner: it waits in the list; a runner starts if none runs
    /// or all are stuck.
    fn add(
        &'static self,
        shared: Arc<Shared>,
        span: tracing::Span,
        runtime: &tokio::runtime::Handle,
    ) {
        let mut state = self.lock();
        state.ready.push_back((shared, span));
        self.start_if_needed(state, runtime);
    }

    /// Starts a runner if recordings wait and every runner is stuck.
    fn unstick(&'static self, runtime: &tokio::runtime::Handle) {
        let state = self.lock();
        if !state.ready.is_empty() {
            self.start_if_needed(state, runtime);
        }
    }

    fn start_if_needed(
        &'static self,
        mut state: std::sync::MutexGuard<'_, RunnersState>,
        runtime: &tokio::runtime::Handle,
    ) {
        let now = Instant::now();
        let all_stuck = state
            .running
            .iter()
            .all(|(_, since)| since.is_some_and(|t| now.duration_since(t) >= STUCK));
        if !all_stuck {
            return;
        }
        let id = state.next_id;
        state.next_id += 1;
        state.running.push((id, None));
        drop(state);
        let runner = Runner { runners: self, id };
        runtime.spawn_blocking(move || runner.run());
    }

    fn mark(&self, id: u64, since: Option<Instant>) {
        if let Some(slot) = self.lock().running.iter_mut().find(|(r, _)| *r == id) {
            slot.1 = since;
        }
    }
}

/// One runner. Dropped, it is no longer counted: also when its pool job never ran (the
/// runtime shut down first), so later recordings do not wait for it.
struct Runner {
    runners: &'static Runners,
    id: u64,
}

impl Runner {
    /// Drains the waiting recordings one after the other until none waits.
    fn run(self) {
        loop {
            let (shared, span) = {
                let mut state = self.runners.lock();
                let Some(next) = state.ready.pop_front() else {
                    // Under the same lock as the look: a recording added after it finds
                    // this runner gone and starts one.
                    state.running.retain(|(r, _)| *r != self.id);
                    return;
                };
                next
            };
            self.runners.mark(self.id, Some(Instant::now()));
            // A panic while writing loses that recording's writer (`drain` sees to its
            // state), not the runner: the recordings after it are still drained.
            let drained = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                span.in_scope(|| drain(&shared))
            }));
            if drained.is_err() {
                tracing::error!("writing a recording panicked: its file is not written further");
            }
            self.runners.mark(self.id, None);
        }
    }
}

impl Drop for Runner {
    fn drop(&mut self) {
        self.runners.lock().running.retain(|(r, _)| *r != self.id);
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
