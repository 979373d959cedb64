//! A recording's file, written on a thread of its own: the runtime's one thread never waits
//! for the disk. Frames, flushes and sidecars go to the thread through a queue, in order; a
//! disk that stalls (a stuck NFS mount, a device with its queue frozen) stalls only that
//! thread, while the media loop, the other feeds and the watchdog go on.
//!
//! The queue holds at most [`MAX_QUEUED`] bytes of frames: past that (a disk stalled for
//! minutes) frames are dropped and counted rather than letting memory grow without bound,
//! and video takes up again at a keyframe (the frames between would not decode).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::thread;
use std::time::Duration;

use crate::media::MediaKind;
use crate::output::Sidecar;
use crate::webm::writer::{FrameBytes, WebmWriter, WriteCause, WriteError, WriteSummary};

/// Frame bytes a recording may hold waiting for its disk: a minute of a 4 Mb/s feed, most
/// of a minute at 12 Mb/s; far past any flush a working disk takes.
const MAX_QUEUED: usize = 32 << 20;

/// A recording's file on its own thread.
pub(crate) struct DiskWriter {
    jobs: Option<mpsc::Sender<Job>>,
    shared: Arc<Shared>,
    thread: Option<thread::JoinHandle<Result<WriteSummary, WriteError>>>,
    path: PathBuf,
    /// Frames were dropped (the queue was full): video waits for its next keyframe.
    video_dropped: bool,
    /// Frames dropped so far.
    dropped: u64,
}

/// What the feed and the thread share.
struct Shared {
    /// Frame bytes sent and not yet written.
    queued: AtomicUsize,
    /// The first write failure; the feed ends on it.
    failed: Mutex<Option<WriteError>>,
}

enum Job {
    Frame {
        ts: Duration,
        kind: MediaKind,
        keyframe: bool,
        data: FrameBytes,
    },
    /// Hand what is written to the operating system.
    Flush,
    /// Write the sidecar (atomically, synced).
    Sidecar(Box<Sidecar>, PathBuf),
}

impl DiskWriter {
    /// Takes over `writer` (its file created) on a thread named after the file.
    pub(crate) fn start(writer: WebmWriter, path: &Path) -> std::io::Result<DiskWriter> {
        let (jobs, queue) = mpsc::channel();
        let shared = Arc::new(Shared {
            queued: AtomicUsize::new(0),
            failed: Mutex::new(None),
        });
        let theirs = shared.clone();
        let span = tracing::Span::current();
        let thread = thread::Builder::new()
            .name("janus-recorder-disk".into())
            .spawn(move || span.in_scope(|| write_all(writer, queue, &theirs)))?;
        Ok(DiskWriter {
            jobs: Some(jobs),
            shared,
            thread: Some(thread),
            path: path.to_path_buf(),
            video_dropped: false,
            dropped: 0,
        })
    }

    /// Queues a frame at `ts` on the file's timeline. `Err`: the file failed (the first
    /// failure, once the thread met it).
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
        let job = Job::Frame {
            ts,
            kind,
            keyframe,
            data,
        };
        self.send(job);
        Ok(())
    }

    /// Asks for what is written to be handed to the operating system; returns the first
    /// failure so far.
    pub(crate) fn flush(&mut self) -> Result<(), WriteError> {
        self.failed()?;
        self.send(Job::Flush);
        Ok(())
    }

    /// Writes `sidecar` at `path` after what is queued (a failure is logged).
    pub(crate) fn write_sidecar(&self, sidecar: Sidecar, path: PathBuf) {
        self.send(Job::Sidecar(Box::new(sidecar), path));
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
        self.jobs = None;
        let thread = self.thread.take().expect("finalized once");
        match thread.join() {
            Ok(summary) => summary,
            Err(_) => Err(WriteError {
                path: self.path.clone(),
                cause: WriteCause::Io(Arc::new(std::io::Error::other(
                    "the file's writing thread panicked",
                ))),
            }),
        }
    }

    fn send(&self, job: Job) {
        // The thread ends only when `jobs` is dropped: sending cannot fail before.
        if let Some(jobs) = &self.jobs {
            let _ = jobs.send(job);
        }
    }

    fn failed(&self) -> Result<(), WriteError> {
        match &*self.shared.failed.lock().expect("not poisoned") {
            Some(e) => Err(WriteError {
                path: e.path.clone(),
                cause: e.cause.clone(),
            }),
            None => Ok(()),
        }
    }
}

impl Drop for DiskWriter {
    /// Dropped without [`DiskWriter::finalize`] (a panicking feed): the thread still writes
    /// what is queued and finalizes, on its own.
    fn drop(&mut self) {
        self.jobs = None;
    }
}

/// The thread: every job in order, then the file finalized once the feed lets go.
fn write_all(
    mut writer: WebmWriter,
    queue: mpsc::Receiver<Job>,
    shared: &Shared,
) -> Result<WriteSummary, WriteError> {
    // The new file's name is durable too (its directory entry), not only its data.
    if let Some(dir) = writer.path().parent()
        && let Err(e) = crate::output::sync_dir(dir)
    {
        tracing::warn!(dir = %dir.display(), error = %e, "cannot sync the directory");
    }
    for job in queue {
        let written = match job {
            Job::Frame {
                ts,
                kind,
                keyframe,
                data,
            } => {
                let len = data.len();
                let r = writer.write_frame(ts, kind, keyframe, data);
                shared.queued.fetch_sub(len, Ordering::AcqRel);
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
            let mut failed = shared.failed.lock().expect("not poisoned");
            failed.get_or_insert(e);
        }
    }
    writer.finalize()
}
