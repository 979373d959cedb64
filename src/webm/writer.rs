//! The live WebM/Matroska writer: one file per feed, playable at every moment. WebM for Opus
//! with VP8/VP9/AV1, Matroska (DocType `matroska`) once H.264 or H.265 is in it; video frames
//! become blocks in [`super::video`].
//!
//! While recording, the Segment and every Cluster have an *unknown* size, so a file cut off by a
//! crash plays up to the cut with no fix-up. Room for the SeekHead, the Info's Duration and the
//! Tracks (whose video size may be learnt late) is reserved with `Void` elements right after
//! the header; [`WebmWriter::finalize`] appends Cues, fills those regions in and patches the
//! Segment's and Clusters' sizes in place (their size fields are 8 bytes wide, as the unknown
//! size marker, so no byte moves).
//!
//! Frames come in arrival order, which across tracks is not timestamp order; a muxing queue
//! holds each frame until every track has reached its time (at most `MAX_HOLD_MS`;
//! [`WebmWriter::flush`] keeps only the last `FLUSH_HOLD_MS`), so blocks normally go out in
//! timestamp order. A frame that
//! comes later than that keeps its own time as long as it is not before its cluster's
//! timestamp: block offsets are never negative (Chromium's WebM parser rejects them). To make
//! room for such frames a cluster's timestamp is the earliest time a frame of any live track
//! may still have (see `WebmWriter::cluster_timestamp`), which can be a little before the
//! cluster's first block. Only a frame later than even that is moved forward to the cluster's
//! timestamp, and counted.
//!
//! Each track's times only go forward: a frame not after its track's previous one is placed
//! 1 ms after it (and counted), so the queue never reorders frames of one track. Not at the
//! same time: tools that remux (ffmpeg into MP4, say) reject equal timestamps in a track.

use std::collections::VecDeque;
use std::fs::File;
use std::io::{self, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use webm_iterable::WebmWriter as TagWriter;
use webm_iterable::WriteOptions;
use webm_iterable::matroska_spec::{Master, MatroskaSpec, SimpleBlock};

/// Re-exported: callers name it with the writer they hand it to.
pub use super::frame::FrameBytes;
use super::matroska::{
    CUES_ID, INFO_ID, SIZE_FIELD_LEN, TRACKS_ID, UNKNOWN_SIZED_HEADER_LEN, fill_region,
    opus_frame_ms, seek, sized_vint, void_of,
};
pub use super::matroska::{WriteCause, WriteError};
use super::video::VideoIn;
use crate::media::{Codec, Container, MediaKind};

/// Clusters are cut once they would span this long.
const MAX_CLUSTER_MS: u64 = 2_000;
/// A video keyframe starts a new cluster once the current one is at least this old.
const MIN_KEYFRAME_CLUSTER_MS: u64 = 250;
/// Longest a frame waits in the muxing queue for the other track to catch up (a track that
/// stalls, or lags the other, holds the queue no longer than this).
const MAX_HOLD_MS: u64 = 1_000;
/// A track whose newest frame is more than this behind the frame opening a cluster is taken
/// as paused, not lagging: the cluster's timestamp is not held back for it. (The feed
/// re-anchors a track whose RTP time is more than 5 s off its arrival time, so within one
/// recording tracks lag each other by at most about this much.)
const MAX_LAG_MS: u64 = 5_000;
/// [`WebmWriter::flush`] lets frames go that are this much older than the newest, so a crash
/// loses at most this plus the time between flushes, while the usual tens of ms of disorder
/// between tracks still come out in order.
const FLUSH_HOLD_MS: u64 = 200;
/// How long the header waits (in media time) for a video keyframe to learn the frame size
/// (and, for H.26x and AV1, the CodecPrivate).
const HEADER_WAIT_MS: u64 = 2_000;
/// Reserved room (bytes) for the SeekHead, for the Info to grow by a Duration, and for the
/// Tracks to grow by a late-learnt frame size.
const SEEKHEAD_ROOM: usize = 96;
const INFO_ROOM: usize = 24;
const TRACKS_ROOM: usize = 32;
/// More room in the Tracks when the header had to go out before the CodecPrivate was known
/// (H.26x or AV1 whose first keyframe came late): an avcC or av1C is tens of bytes, an hvcC
/// around a hundred; a larger one is left out (and counted by `check`).
const CODEC_PRIVATE_ROOM: usize = 1_024;
/// Frame size written when no keyframe arrived before the header had to go out; corrected at
/// finalize (Chromium's fake camera and most webcams start at this size).
const PLACEHOLDER_SIZE: (u32, u32) = (640, 480);
/// Pending bytes are handed to the system once they reach this much (besides at cluster
/// ends and flushes), so what a feed holds in memory stays small whatever its bitrate.
const PENDING_WRITE_AT: usize = 32 * 1024;
/// The room a new pending buffer starts with: the write threshold and a frame past it (a
/// larger frame grows it once).
const PENDING_ROOM: usize = PENDING_WRITE_AT + 8 * 1024;
const CLUSTER_ID_LEN: u64 = 4;

/// The tracks a file will have; fixed when the file is created.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TrackSetup {
    pub audio: Option<Codec>,
    pub video: Option<Codec>,
}

impl TrackSetup {
    /// WebM, or Matroska when a codec needs it (H.264, H.265).
    pub fn container(&self) -> Container {
        Container::for_codecs(self.audio.into_iter().chain(self.video))
    }
}

/// What a finalized file holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WriteSummary {
    pub duration: Duration,
    pub audio_frames: u64,
    pub video_frames: u64,
    pub bytes: u64,
}

/// Collects what the tag writer produces (and the blocks written straight into it); the
/// file is written on [`WebmWriter::flush`], at cluster ends and every [`PENDING_WRITE_AT`]
/// bytes. (The tag writer calls `flush()` after every top-level element, which
/// here does nothing, so a block is not a system call.)
#[derive(Default)]
struct Pending {
    bytes: Vec<u8>,
}

impl Write for Pending {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.bytes.extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// How far [`WebmWriter::emit_ready`] empties the muxing queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Drain {
    /// Frames every track has reached, or held [`MAX_HOLD_MS`].
    Ready,
    /// Also frames held [`FLUSH_HOLD_MS`].
    Flush,
    /// Everything, and the header even without the video's frame size.
    All,
}

#[derive(Debug)]
struct QueuedFrame {
    ms: u64,
    kind: MediaKind,
    keyframe: bool,
    data: FrameBytes,
}

/// A region reserved in the header, rewritten at finalize.
#[derive(Debug, Clone, Copy)]
struct Region {
    offset: u64,
    len: usize,
}

#[derive(Debug)]
struct Layout {
    /// Where the Segment's data starts (positions in SeekHead and Cues are relative to it).
    segment_data: u64,
    seekhead: Region,
    info: Region,
    tracks: Region,
    tracks_size: (u32, u32),
    /// The video CodecPrivate written in the header, if any.
    tracks_private: Option<Vec<u8>>,
}

#[derive(Debug)]
struct ClusterMark {
    offset: u64,
    /// The cluster's Timestamp: no block of it is earlier.
    timestamp: u64,
    /// The time of its first block, from which its length is measured.
    first_ms: u64,
    /// The track and time a cue for this cluster points at: its first video keyframe, or in
    /// audio-only files its first block.
    cue: Option<(u64, u64)>,
}

/// Writes one WebM file live. See the module documentation for the layout.
pub struct WebmWriter {
    path: PathBuf,
    file: File,
    tags: TagWriter<Pending>,
    /// Bytes already in the file.
    written: u64,
    /// Bytes the tag writer holds back: it keeps an unknown-sized start until the next
    /// element is written.
    held: u64,
    setup: TrackSetup,
    uid_seed: u64,
    layout: Option<Layout>,
    /// The largest frame size the video's keyframes gave (the header has the first one;
    /// finalize writes this).
    video_size: Option<(u32, u32)>,
    /// Turns video frames into blocks; knows the CodecPrivate.
    video_in: Option<VideoIn>,
    queue: VecDeque<QueuedFrame>,
    /// The newest timestamp seen, overall and per track (audio, video).
    newest_ms: u64,
    newest_by_kind: [Option<u64>; 2],
    clusters: Vec<ClusterMark>,
    /// The latest timestamp written.
    last_ms: Option<u64>,
    audio_frames: u64,
    video_frames: u64,
    audio_end_ms: u64,
    last_video_ms: Option<u64>,
    video_interval_ms: u64,
    /// Frames written behind a later frame of the other track.
    late: u64,
    /// Frames whose time was moved forward: earlier than their track's previous frame, or
    /// than their cluster's timestamp.
    moved: u64,
    failed: Option<WriteCause>,
    finished: bool,
}

impl WebmWriter {
    /// Creates the file (it must not exist yet). The header is written with the first frames.
    pub fn create(path: &Path, setup: TrackSetup) -> Result<WebmWriter, WriteError> {
        let file = crate::output::create_private(path).map_err(|e| WriteError {
            path: path.to_path_buf(),
            cause: e.into(),
        })?;
        let uid_seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(1);
        Ok(WebmWriter {
            path: path.to_path_buf(),
            file,
            tags: TagWriter::new(Pending::default()),
            written: 0,
            held: 0,
            setup,
            uid_seed,
            layout: None,
            video_size: None,
            video_in: setup.video.and_then(VideoIn::new),
            queue: VecDeque::new(),
            newest_ms: 0,
            newest_by_kind: [None; 2],
            clusters: Vec::new(),
            last_ms: None,
            audio_frames: 0,
            video_frames: 0,
            audio_end_ms: 0,
            last_video_ms: None,
            video_interval_ms: 0,
            late: 0,
            moved: 0,
            failed: None,
            finished: false,
        })
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Adds an Opus packet at `ts` on the file's timeline. A shared or owned buffer is queued
    /// as it is (a slice is copied).
    pub fn write_audio(
        &mut self,
        ts: Duration,
        data: impl Into<FrameBytes>,
    ) -> Result<(), WriteError> {
        self.write_frame(ts, MediaKind::Audio, true, data.into())
    }

    /// Adds a video frame at `ts` on the file's timeline, as str0m gives it (VP8/VP9 frames,
    /// H.264/H.265 Annex B access units, AV1 temporal units). `keyframe` is used for VP8/VP9;
    /// the other codecs' keyframes are read from the bitstream.
    pub fn write_video(
        &mut self,
        ts: Duration,
        keyframe: bool,
        data: impl Into<FrameBytes>,
    ) -> Result<(), WriteError> {
        self.write_frame(ts, MediaKind::Video, keyframe, data.into())
    }

    /// Hands what was written to the operating system (no fsync): all but the last
    /// `FLUSH_HOLD_MS` of the muxing queue, once the header is out (before that, frames wait
    /// for the first video keyframe's size at most `HEADER_WAIT_MS` of media).
    pub fn flush(&mut self) -> Result<(), WriteError> {
        self.check()?;
        let r = self
            .emit_ready(Drain::Flush)
            .and_then(|()| self.write_pending());
        self.record(r)
    }

    /// Writes the rest, the Cues, Duration, SeekHead and sizes; returns what the file holds.
    pub fn finalize(mut self) -> Result<WriteSummary, WriteError> {
        self.finish()
    }

    /// Adds a frame of either kind ([`WebmWriter::write_audio`], [`WebmWriter::write_video`]).
    pub fn write_frame(
        &mut self,
        ts: Duration,
        kind: MediaKind,
        keyframe: bool,
        data: FrameBytes,
    ) -> Result<(), WriteError> {
        self.check()?;
        let has_track = match kind {
            MediaKind::Audio => self.setup.audio.is_some(),
            MediaKind::Video => self.setup.video.is_some(),
        };
        if !has_track || data.is_empty() {
            return Ok(());
        }
        let newest = self.newest_by_kind[kind_index(kind)];
        let mut ms = ts.as_millis() as u64;
        if let Some(newest) = newest
            && ms <= newest
        {
            // The feed's clocks never go back, so this is a caller's bug; keep the frame and
            // its track's order rather than fail the recording.
            self.count_moved(
                kind,
                newest + 1 - ms,
                "a frame came with a time not after its track's previous frame",
            );
            ms = newest + 1;
        }
        let frame = match (&mut self.video_in, kind) {
            (Some(video), MediaKind::Video) => {
                let p = video.prepare(data, keyframe);
                // The largest size seen: a simulcast or SVC stream may start at a lower layer.
                if let Some(size) = p.size
                    && self.video_size.is_none_or(|s| area(size) > area(s))
                {
                    self.video_size = Some(size);
                }
                if p.data.is_empty() {
                    return Ok(());
                }
                QueuedFrame {
                    ms,
                    kind,
                    keyframe: p.keyframe,
                    data: p.data,
                }
            }
            _ => QueuedFrame {
                ms,
                kind,
                keyframe,
                data,
            },
        };
        // Keep the queue sorted, after frames of the same key (so one track's frames keep their
        // order); frames are nearly in order, so search from the back.
        let key = queue_key(&frame);
        let at = self
            .queue
            .iter()
            .rposition(|f| queue_key(f) <= key)
            .map_or(0, |i| i + 1);
        self.queue.insert(at, frame);
        self.newest_ms = self.newest_ms.max(ms);
        self.newest_by_kind[kind_index(kind)] = Some(ms);
        let r = self.emit_ready(Drain::Ready);
        self.record(r)
    }

    fn check(&self) -> Result<(), WriteError> {
        match &self.failed {
            Some(cause) => Err(self.error(WriteCause::Unusable(Box::new(cause.clone())))),
            None => Ok(()),
        }
    }

    fn error(&self, cause: WriteCause) -> WriteError {
        WriteError {
            path: self.path.clone(),
            cause,
        }
    }

    /// Remembers the first failure: the writer refuses further work after it.
    fn record(&mut self, r: Result<(), WriteCause>) -> Result<(), WriteError> {
        r.map_err(|cause| {
            self.failed = Some(cause.clone());
            self.error(cause)
        })
    }

    /// Turns queued frames into blocks: those every track has reached, and those held longer
    /// than `drain` allows.
    fn emit_ready(&mut self, drain: Drain) -> Result<(), WriteCause> {
        let all = drain == Drain::All;
        if self.layout.is_none() {
            let waited = self
                .queue
                .front()
                .is_some_and(|f| self.newest_ms - f.ms >= HEADER_WAIT_MS);
            if !self.video_known() && !waited && !all {
                return Ok(());
            }
            if self.queue.is_empty() && !all {
                return Ok(());
            }
            self.write_header()?;
        }
        while let Some(front) = self.queue.front() {
            let hold = match drain {
                Drain::Ready => MAX_HOLD_MS,
                Drain::Flush => FLUSH_HOLD_MS,
                Drain::All => 0,
            };
            let ready = self.every_track_reached(front.ms) || front.ms + hold <= self.newest_ms;
            if !ready {
                break;
            }
            let frame = self.queue.pop_front().expect("front exists");
            self.emit(frame)?;
        }
        Ok(())
    }

    /// Whether the header can say all it needs to of the video (if any): its frame size and,
    /// for codecs that need one, its CodecPrivate.
    fn video_known(&self) -> bool {
        match &self.video_in {
            None => true,
            Some(v) => {
                self.video_size.is_some()
                    && (!v.needs_codec_private() || v.codec_private().is_some())
            }
        }
    }

    /// Whether every track of the file has had a frame at or after `ms` (frames of one track
    /// arrive in time order, so nothing earlier can still come).
    fn every_track_reached(&self, ms: u64) -> bool {
        [
            (self.setup.audio, MediaKind::Audio),
            (self.setup.video, MediaKind::Video),
        ]
        .iter()
        .filter(|(codec, _)| codec.is_some())
        .all(|(_, kind)| self.newest_by_kind[kind_index(*kind)].is_some_and(|n| n >= ms))
    }

    fn track_number(&self, kind: MediaKind) -> u64 {
        match kind {
            MediaKind::Audio => 1,
            MediaKind::Video => 1 + u64::from(self.setup.audio.is_some()),
        }
    }

    /// Where the next element starts in the file.
    fn pos(&self) -> u64 {
        self.written + self.tags.get_ref().bytes.len() as u64 + self.held
    }

    /// Writes a complete element (which also releases a held unknown-sized start).
    fn put(&mut self, tag: MatroskaSpec) -> Result<(), WriteCause> {
        self.tags.write(&tag)?;
        self.held = 0;
        Ok(())
    }

    /// Writes a SimpleBlock. Encoded here, straight into the pending bytes: through the tag
    /// writer each block was built in a buffer of its own, then copied into an element, then
    /// into the pending bytes (two allocations and two copies of every frame, which showed in
    /// the benchmark's profile). The tag writer's way is kept for the one case it must
    /// handle: an unknown-sized start it still holds back (a cluster always has its
    /// Timestamp written first, so blocks never meet one).
    fn put_block(
        &mut self,
        track: u64,
        offset: i16,
        keyframe: bool,
        data: &[u8],
    ) -> Result<(), WriteCause> {
        if self.held != 0 || track > 0x7e {
            let block =
                SimpleBlock::new_uncheked(data, track, offset, false, None, false, keyframe);
            return self.put(MatroskaSpec::from(block));
        }
        let out = &mut self.tags.get_mut().bytes;
        encode_simple_block(out, track as u8, offset, keyframe, data);
        Ok(())
    }

    /// Starts a Segment or Cluster of unknown size.
    fn put_unknown_sized(&mut self, tag: MatroskaSpec) -> Result<(), WriteCause> {
        self.tags
            .write_advanced(&tag, WriteOptions::is_unknown_sized_element())?;
        self.held += UNKNOWN_SIZED_HEADER_LEN;
        Ok(())
    }

    fn write_header(&mut self) -> Result<(), WriteCause> {
        self.put(MatroskaSpec::Ebml(Master::Full(vec![
            MatroskaSpec::EbmlVersion(1),
            MatroskaSpec::EbmlReadVersion(1),
            MatroskaSpec::EbmlMaxIdLength(4),
            MatroskaSpec::EbmlMaxSizeLength(8),
            MatroskaSpec::DocType(self.setup.container().doc_type().into()),
            MatroskaSpec::DocTypeVersion(4),
            MatroskaSpec::DocTypeReadVersion(2),
        ])))?;
        self.put_unknown_sized(MatroskaSpec::Segment(Master::Start))?;
        let segment_data = self.pos();
        let seekhead = self.reserve(&[], SEEKHEAD_ROOM)?;
        let info = self.reserve(&[self.info(None)], INFO_ROOM)?;
        let size = self.video_size.unwrap_or(PLACEHOLDER_SIZE);
        let private = self.video_in.as_ref().and_then(VideoIn::codec_private);
        let room = match &self.video_in {
            Some(v) if v.needs_codec_private() && private.is_none() => {
                TRACKS_ROOM + CODEC_PRIVATE_ROOM
            }
            _ => TRACKS_ROOM,
        };
        let tracks = self.reserve(&[self.tracks(size, private.as_deref())], room)?;
        self.layout = Some(Layout {
            segment_data,
            seekhead,
            info,
            tracks,
            tracks_size: size,
            tracks_private: private,
        });
        Ok(())
    }

    /// Writes `tags` followed by `room` bytes of Void; returns the region they cover.
    fn reserve(&mut self, tags: &[MatroskaSpec], room: usize) -> Result<Region, WriteCause> {
        let offset = self.pos();
        for t in tags {
            self.put(t.clone())?;
        }
        self.put(void_of(room)?)?;
        Ok(Region {
            offset,
            len: (self.pos() - offset) as usize,
        })
    }

    fn info(&self, duration_ms: Option<f64>) -> MatroskaSpec {
        let app = format!("janus-recorder {}", env!("CARGO_PKG_VERSION"));
        let mut children = vec![
            MatroskaSpec::TimestampScale(1_000_000),
            MatroskaSpec::MuxingApp(app.clone()),
            MatroskaSpec::WritingApp(app),
        ];
        if let Some(d) = duration_ms {
            children.push(MatroskaSpec::Duration(d));
        }
        MatroskaSpec::Info(Master::Full(children))
    }

    fn tracks(&self, size: (u32, u32), video_private: Option<&[u8]>) -> MatroskaSpec {
        let mut entries = Vec::new();
        if let Some(codec) = self.setup.audio {
            entries.push(self.track_entry(
                MediaKind::Audio,
                codec,
                vec![
                    MatroskaSpec::CodecPrivate(opus_head().to_vec()),
                    // 80 ms pre-roll after a seek, as the WebM spec asks of Opus; no codec
                    // delay, as the OpusHead has no pre-skip (RTP Opus carries none).
                    MatroskaSpec::SeekPreRoll(80_000_000),
                    MatroskaSpec::CodecDelay(0),
                    MatroskaSpec::Audio(Master::Full(vec![
                        MatroskaSpec::SamplingFrequency(48_000.0),
                        MatroskaSpec::Channels(2),
                    ])),
                ],
            ));
        }
        if let Some(codec) = self.setup.video {
            let mut rest: Vec<MatroskaSpec> = video_private
                .map(|p| MatroskaSpec::CodecPrivate(p.to_vec()))
                .into_iter()
                .collect();
            rest.push(MatroskaSpec::Video(Master::Full(vec![
                MatroskaSpec::PixelWidth(u64::from(size.0)),
                MatroskaSpec::PixelHeight(u64::from(size.1)),
            ])));
            entries.push(self.track_entry(MediaKind::Video, codec, rest));
        }
        MatroskaSpec::Tracks(Master::Full(entries))
    }

    /// A TrackEntry: number, UID, type, codec, then `rest`.
    fn track_entry(&self, kind: MediaKind, codec: Codec, rest: Vec<MatroskaSpec>) -> MatroskaSpec {
        let number = self.track_number(kind);
        let (track_type, uid_rotation) = match kind {
            MediaKind::Audio => (2, 7),
            MediaKind::Video => (1, 13),
        };
        let mut children = vec![
            MatroskaSpec::TrackNumber(number),
            // Unique per file (the seed is the creation time) and never 0.
            MatroskaSpec::TrackUID(self.uid_seed.rotate_left(uid_rotation) ^ number | 1),
            MatroskaSpec::TrackType(track_type),
            MatroskaSpec::CodecID(codec.matroska_id().into()),
        ];
        children.extend(rest);
        MatroskaSpec::TrackEntry(Master::Full(children))
    }

    fn emit(&mut self, frame: QueuedFrame) -> Result<(), WriteCause> {
        let mut ms = frame.ms;
        if let Some(last) = self.last_ms
            && ms < last
        {
            self.late += 1;
            if self.late == 1 {
                tracing::debug!(
                    late_ms = last - ms,
                    kind = ?frame.kind,
                    "a frame came after a later frame of the other track was written"
                );
            }
        }
        let is_video = frame.kind == MediaKind::Video;
        let new_cluster = match self.clusters.last() {
            None => true,
            Some(c) => {
                // A late frame (before the cluster's first block) never opens a cluster: that
                // would put clusters out of time order.
                let age = ms.saturating_sub(c.first_ms);
                age >= MAX_CLUSTER_MS
                    || (is_video && frame.keyframe && age >= MIN_KEYFRAME_CLUSTER_MS)
                    || ms - c.timestamp.min(ms) > i16::MAX as u64
            }
        };
        if new_cluster {
            self.open_cluster(ms)?;
        }
        let timestamp = self.clusters.last().map_or(ms, |c| c.timestamp);
        if ms < timestamp {
            self.count_moved(
                frame.kind,
                timestamp - ms,
                "a frame came before its cluster's timestamp",
            );
            ms = timestamp;
        }
        // In range: a cluster spans under MAX_CLUSTER_MS from its first block, whose time is
        // at most MAX_LAG_MS after the cluster's timestamp; the check above guards the rest.
        let offset = (ms - timestamp) as i16;
        let track = self.track_number(frame.kind);
        self.put_block(track, offset, frame.keyframe, &frame.data)?;
        if self.tags.get_ref().bytes.len() >= PENDING_WRITE_AT {
            self.write_pending()?;
        }
        // Cues are for seeking: to a video keyframe (a cluster normally opens with one, but the
        // first may open with audio), or in audio-only files to any cluster.
        let cue_here = match frame.kind {
            MediaKind::Video => frame.keyframe,
            MediaKind::Audio => self.setup.video.is_none(),
        };
        if let Some(c) = self.clusters.last_mut()
            && cue_here
            && c.cue.is_none()
        {
            c.cue = Some((track, ms));
        }
        self.last_ms = Some(self.last_ms.map_or(ms, |l| l.max(ms)));
        match frame.kind {
            MediaKind::Audio => {
                self.audio_frames += 1;
                self.audio_end_ms = ms + opus_frame_ms(&frame.data);
            }
            MediaKind::Video => {
                self.video_frames += 1;
                if let Some(prev) = self.last_video_ms {
                    self.video_interval_ms = ms.saturating_sub(prev);
                }
                self.last_video_ms = Some(ms);
            }
        }
        Ok(())
    }

    /// The Timestamp for a cluster whose first block is at `ms`: the earliest time a frame of
    /// a track may still have (each track's frames only go forward, so it is the newest time
    /// that track has queued), so that a frame still on its way from a lagging track lands in
    /// the cluster with a non-negative offset. A track more than [`MAX_LAG_MS`] behind is
    /// taken as paused. Never before the previous cluster's timestamp.
    fn cluster_timestamp(&self, ms: u64) -> u64 {
        let earliest = self
            .newest_by_kind
            .iter()
            .flatten()
            .copied()
            .filter(|n| n + MAX_LAG_MS >= ms)
            .fold(ms, u64::min);
        let previous = self.clusters.last().map_or(0, |c| c.timestamp);
        earliest.max(previous)
    }

    fn count_moved(&mut self, kind: MediaKind, by_ms: u64, what: &str) {
        self.moved += 1;
        if self.moved == 1 {
            tracing::warn!(path = %self.path.display(), ?kind, by_ms, "{what}; its time was moved forward");
        }
    }

    fn open_cluster(&mut self, ms: u64) -> Result<(), WriteCause> {
        if !self.clusters.is_empty() {
            self.put(MatroskaSpec::Cluster(Master::End))?;
            // A finished cluster is a natural point to hand the bytes to the system.
            self.write_pending()?;
        }
        let timestamp = self.cluster_timestamp(ms);
        let offset = self.pos();
        self.put_unknown_sized(MatroskaSpec::Cluster(Master::Start))?;
        self.put(MatroskaSpec::Timestamp(timestamp))?;
        self.clusters.push(ClusterMark {
            offset,
            timestamp,
            first_ms: ms,
            cue: None,
        });
        Ok(())
    }

    fn write_pending(&mut self) -> Result<(), WriteCause> {
        let bytes = &mut self.tags.get_mut().bytes;
        if bytes.is_empty() {
            return Ok(());
        }
        self.file.write_all(bytes)?;
        self.written += bytes.len() as u64;
        // The same buffer for the next batch: its room is kept (growing one from nothing by
        // copies showed in the profile), and its lines are still in the cache; the copies of
        // frames into a fresh one missed on them (the writer's memmove went from 8.3% to
        // 4.0% of the daemon's samples at 50 feeds). One a large keyframe grew is given back.
        bytes.clear();
        if bytes.capacity() > 4 * PENDING_ROOM {
            bytes.shrink_to(PENDING_ROOM);
        }
        bytes.reserve(PENDING_ROOM);
        Ok(())
    }

    fn finish(&mut self) -> Result<WriteSummary, WriteError> {
        self.check()?;
        self.finished = true;
        let r = self.finish_file();
        self.record(r)?;
        if self.late > 0 || self.moved > 0 {
            tracing::info!(
                path = %self.path.display(),
                late = self.late,
                moved = self.moved,
                "frames written behind a later frame of the other track (late), or with their \
                 time moved forward (moved)"
            );
        }
        Ok(WriteSummary {
            duration: Duration::from_millis(self.duration_ms()),
            audio_frames: self.audio_frames,
            video_frames: self.video_frames,
            bytes: self.written,
        })
    }

    /// The end of the last frame of any track: an Opus packet's own length, and for video the
    /// last interval between frames.
    fn duration_ms(&self) -> u64 {
        let video_end = self.last_video_ms.map_or(0, |v| v + self.video_interval_ms);
        self.audio_end_ms.max(video_end)
    }

    fn finish_file(&mut self) -> Result<(), WriteCause> {
        self.emit_ready(Drain::All)?;
        let layout = self
            .layout
            .take()
            .expect("emit_ready(Drain::All) writes the header");
        if !self.clusters.is_empty() {
            self.put(MatroskaSpec::Cluster(Master::End))?;
        }
        let cues_at = self.pos();
        let cue_points: Vec<MatroskaSpec> = self
            .clusters
            .iter()
            .filter_map(|c| {
                c.cue.map(|(track, ms)| {
                    MatroskaSpec::CuePoint(Master::Full(vec![
                        MatroskaSpec::CueTime(ms),
                        MatroskaSpec::CueTrackPositions(Master::Full(vec![
                            MatroskaSpec::CueTrack(track),
                            MatroskaSpec::CueClusterPosition(c.offset - layout.segment_data),
                        ])),
                    ]))
                })
            })
            .collect();
        let has_cues = !cue_points.is_empty();
        if has_cues {
            self.put(MatroskaSpec::Cues(Master::Full(cue_points)))?;
        }
        let end = self.pos();
        self.write_pending()?;

        // Sizes: the Segment and each Cluster, in place of their unknown-size markers.
        let mut patches = vec![(
            layout.segment_data - SIZE_FIELD_LEN,
            sized_vint(end - layout.segment_data),
        )];
        for (i, c) in self.clusters.iter().enumerate() {
            let next = self.clusters.get(i + 1).map_or(cues_at, |n| n.offset);
            let data = c.offset + CLUSTER_ID_LEN + SIZE_FIELD_LEN;
            patches.push((c.offset + CLUSTER_ID_LEN, sized_vint(next - data)));
        }
        // The header regions: SeekHead, Info with Duration, Tracks with the real frame size.
        let duration = self.duration_ms() as f64;
        let mut seeks = vec![
            seek(INFO_ID, layout.info.offset - layout.segment_data),
            seek(TRACKS_ID, layout.tracks.offset - layout.segment_data),
        ];
        if has_cues {
            seeks.push(seek(CUES_ID, cues_at - layout.segment_data));
        }
        patches.push((
            layout.seekhead.offset,
            fill_region(
                &[MatroskaSpec::SeekHead(Master::Full(seeks))],
                layout.seekhead.len,
            )?,
        ));
        patches.push((
            layout.info.offset,
            fill_region(&[self.info(Some(duration))], layout.info.len)?,
        ));
        // The Tracks again if the frame size, or a CodecPrivate missing from the header,
        // came after the header went out.
        let size = self.video_size.unwrap_or(layout.tracks_size);
        let private = match &layout.tracks_private {
            Some(p) => Some(p.clone()),
            None => self.video_in.as_ref().and_then(VideoIn::codec_private),
        };
        if size != layout.tracks_size || private != layout.tracks_private {
            let tracks = [self.tracks(size, private.as_deref())];
            match fill_region(&tracks, layout.tracks.len) {
                Ok(bytes) => patches.push((layout.tracks.offset, bytes)),
                Err(e) => {
                    tracing::warn!(path = %self.path.display(), error = %e, "the track header could not be completed")
                }
            }
        }
        for (offset, bytes) in patches {
            self.file
                .seek(SeekFrom::Start(offset))
                .and_then(|_| self.file.write_all(&bytes))?;
        }
        Ok(self.file.sync_all()?)
    }
}

impl Drop for WebmWriter {
    /// A writer dropped without [`WebmWriter::finalize`] (a panicking feed) still finalizes.
    fn drop(&mut self) {
        if !self.finished
            && self.failed.is_none()
            && let Err(e) = self.finish()
        {
            tracing::error!(error = %e, "finalizing a dropped recording failed");
        }
    }
}

/// The Opus identification header for CodecPrivate (RFC 7845 section 5.1): version 1, two
/// channels (WebRTC Opus is always signalled as stereo), no pre-skip (RTP carries none), 48 kHz,
/// no gain, channel mapping family 0.
fn opus_head() -> [u8; 19] {
    let mut h = [0u8; 19];
    h[..8].copy_from_slice(b"OpusHead");
    h[8] = 1;
    h[9] = 2;
    h[12..16].copy_from_slice(&48_000u32.to_le_bytes());
    h
}

/// The SimpleBlock id.
const SIMPLE_BLOCK_ID: u8 = 0xA3;

/// Appends a SimpleBlock element to `out`: its id, its size (the shortest EBML size field),
/// then the block header (track number as a one-byte vint, the time offset, flags: keyframe,
/// no lacing) and the frame.
fn encode_simple_block(out: &mut Vec<u8>, track: u8, offset: i16, keyframe: bool, data: &[u8]) {
    let body = 4 + data.len() as u64;
    // The shortest width whose all-ones value (reserved for "unknown") is above `body`.
    let width = (1..=8u32)
        .find(|w| body < (1u64 << (7 * w)) - 1)
        .unwrap_or(8);
    out.reserve(1 + width as usize + body as usize);
    out.push(SIMPLE_BLOCK_ID);
    let size = body | (1u64 << (7 * width));
    out.extend_from_slice(&size.to_be_bytes()[8 - width as usize..]);
    out.push(0x80 | track);
    out.extend_from_slice(&offset.to_be_bytes());
    out.push(if keyframe { 0x80 } else { 0 });
    out.extend_from_slice(data);
}

#[cfg(test)]
mod tests;

/// Queue order: by time, and video before audio at the same time, so a keyframe, not the audio
/// frame beside it, opens the cluster.
fn queue_key(f: &QueuedFrame) -> (u64, bool) {
    (f.ms, f.kind == MediaKind::Audio)
}

fn area((w, h): (u32, u32)) -> u64 {
    u64::from(w) * u64::from(h)
}

fn kind_index(kind: MediaKind) -> usize {
    match kind {
        MediaKind::Audio => 0,
        MediaKind::Video => 1,
    }
}
