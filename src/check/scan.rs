//! Reads one file with webm-iterable, tolerating damage, and builds its [`FileReport`].

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufReader, Read, Seek, SeekFrom};
use std::path::Path;

use ebml_iterable::error::CorruptedFileError;
use webm_iterable::WebmIterator;
use webm_iterable::errors::TagIteratorError;
use webm_iterable::matroska_spec::{Master, MatroskaSpec};

use crate::webm::read::{
    MAX_ELEMENT, SegmentAsUnknown, SegmentExtent, decode_block, element_limit, find_cluster,
    next_element,
};

use super::CheckOptions;
use super::audio::{OpusCheck, packet_ms};
use super::decoder::FrameDecoder;
use super::report::{FileReport, Problem, ProblemKind, SizeChange, Status, TrackReport};
use super::video::VideoTrack;
use crate::codec::VideoCodec;

/// Why reading stopped before the end: where (relative to the iterator's start, when the error
/// says), whether the element ran past the end of the file, and the reader's message.
struct Damage {
    at: Option<usize>,
    past_end: bool,
    why: String,
}

/// How [`Scan::read_elements`] stopped.
enum Stop {
    End,
    Damaged(Damage),
}

/// Damaged spots skipped before giving up on the rest of the file.
const MAX_RECOVERIES: usize = 50;
/// Problems of one kind on one track listed one by one; the rest are counted.
const MAX_LISTED: usize = 20;
/// Tracks read; more are reported and not read (each costs memory, an Opus one a decoder).
const MAX_TRACKS: usize = 64;
/// Size changes listed per track; the rest are counted.
const MAX_SIZE_CHANGES: usize = 1_000;
/// Keyframe times listed per video track (for the timeline).
const MAX_KEYFRAME_TIMES: usize = 10_000;

#[derive(Default)]
struct EntryBuilder {
    number: Option<u64>,
    track_type: Option<u64>,
    codec: Option<String>,
    private: Option<Vec<u8>>,
}

/// How a track's frames are read, by codec.
enum Decoder {
    /// Created on the track's first block, so that declared tracks cost no decoder.
    Opus(Option<OpusCheck>),
    Video(VideoTrack),
    None,
}

/// Per-track state while reading.
struct Track {
    number: u64,
    kind: &'static str,
    codec: String,
    private_len: usize,
    frames: u64,
    keyframes: u64,
    bytes: u64,
    first_ms: Option<i64>,
    last_ms: Option<i64>,
    last_len_ms: u64,
    size: Option<(u32, u32)>,
    size_changes: Vec<SizeChange>,
    size_change_count: u64,
    keyframe_ms: Vec<i64>,
    decoder: Decoder,
    /// Video with `--decode`: the real decoder every frame goes through.
    video_decoder: Option<FrameDecoder>,
    /// Codecs with B-frames: the recent block times.
    reorder: Option<ReorderWindow>,
}

/// Block times of a track whose blocks come in decode order (H.264, H.265 with B-frames):
/// a frame shows after every frame decoded more than [`REORDER_DEPTH`] frames before it (the
/// most either codec's decoded picture buffer can hold back).
#[derive(Default)]
struct ReorderWindow {
    recent: std::collections::VecDeque<i64>,
    /// The latest time of the frames that left the window.
    floor: Option<i64>,
}

const REORDER_DEPTH: usize = 16;

impl ReorderWindow {
    /// Adds a block's time; returns the time no later block may go below.
    fn push(&mut self, ms: i64) -> Option<i64> {
        let floor = self.floor;
        self.recent.push_back(ms);
        if self.recent.len() > REORDER_DEPTH
            && let Some(old) = self.recent.pop_front()
        {
            self.floor = Some(self.floor.map_or(old, |f| f.max(old)));
        }
        floor
    }
}

impl Track {
    fn new(number: u64, kind: &'static str, codec: String, decoder: Decoder) -> Track {
        Track {
            number,
            kind,
            codec,
            private_len: 0,
            frames: 0,
            keyframes: 0,
            bytes: 0,
            first_ms: None,
            last_ms: None,
            last_len_ms: 0,
            size: None,
            size_changes: Vec::new(),
            size_change_count: 0,
            keyframe_ms: Vec::new(),
            decoder,
            reorder: None,
            video_decoder: None,
        }
    }

    /// Notes the frame size a frame gives; a change from the last one is listed (the first
    /// [`MAX_SIZE_CHANGES`]) and counted.
    fn see_size(&mut self, at_ms: i64, size: (u32, u32)) {
        if self.size == Some(size) {
            return;
        }
        if self.size.is_some() {
            self.size_change_count += 1;
            if self.size_changes.len() < MAX_SIZE_CHANGES {
                self.size_changes.push(SizeChange {
                    at_ms,
                    width: size.0,
                    height: size.1,
                });
            }
        }
        self.size = Some(size);
    }

    fn end_ms(&self) -> Option<i64> {
        self.last_ms.map(|l| l + self.last_len_ms as i64)
    }

    fn duration_ms(&self) -> u64 {
        match (self.first_ms, self.end_ms()) {
            (Some(f), Some(e)) => (e - f).max(0) as u64,
            _ => 0,
        }
    }

    /// The average time between frames (what a video frame is assumed to last).
    fn interval_ms(&self) -> u64 {
        match (self.first_ms, self.last_ms) {
            (Some(f), Some(l)) if self.frames > 1 => ((l - f) as u64) / (self.frames - 1),
            _ => 0,
        }
    }
}

/// Collects problems, listing at most [`MAX_LISTED`] of one kind per track.
#[derive(Default)]
struct Problems {
    list: Vec<Problem>,
    counts: HashMap<(ProblemKind, Option<u64>), usize>,
}

impl Problems {
    fn add(&mut self, kind: ProblemKind, at_ms: Option<i64>, track: Option<u64>, message: String) {
        self.push(Problem {
            kind,
            at_ms,
            track,
            message,
            length_ms: None,
        });
    }

    fn push(&mut self, problem: Problem) {
        let n = self
            .counts
            .entry((problem.kind, problem.track))
            .or_default();
        *n += 1;
        if *n <= MAX_LISTED {
            self.list.push(problem);
        }
    }

    /// Adds "and N more" lines for kinds that overflowed.
    fn finish(mut self) -> Vec<Problem> {
        let mut extra: Vec<_> = self
            .counts
            .iter()
            .filter(|(_, n)| **n > MAX_LISTED)
            .map(|(&(kind, track), &n)| (kind, track, n))
            .collect();
        extra.sort();
        for (kind, track, n) in extra {
            self.list.push(Problem {
                kind,
                at_ms: None,
                track,
                message: format!("{} more like this not listed", n - MAX_LISTED),
                length_ms: None,
            });
        }
        self.list
    }
}

/// The reading state of one file.
struct Scan<'a> {
    opts: &'a CheckOptions,
    saw_ebml: bool,
    doc_type: Option<String>,
    segment_started: bool,
    segment_ended: bool,
    /// The file gave its Segment a size (a finalized file's layout); unknown-sized, it was
    /// written live.
    segment_known: bool,
    /// A Cluster was reached: damage from here on is skipped to the next Cluster.
    saw_cluster: bool,
    scale_ns: u64,
    info_duration: Option<f64>,
    cue_points: u64,
    entry: Option<EntryBuilder>,
    tracks: Vec<Track>,
    cluster_ts: Option<u64>,
    group_block: Option<Vec<u8>>,
    group_referenced: bool,
    first_video_seen: bool,
    /// Tracks were declared beyond [`MAX_TRACKS`] (their blocks are expected, not corrupt).
    tracks_over_limit: bool,
    problems: Problems,
}

/// Checks one file; never panics on bad input.
pub fn check_file(path: &Path, opts: &CheckOptions) -> FileReport {
    let meta = std::fs::metadata(path);
    let bytes = meta.as_ref().map(|m| m.len()).unwrap_or(0);
    if meta.is_ok_and(|m| !m.is_file()) {
        // A FIFO would block the open; a directory or device is no recording either.
        let message = "not a regular file".to_string();
        return unreadable(path, bytes, ProblemKind::NotWebm, message);
    }
    match File::open(path) {
        Ok(file) => check_reader(path, BufReader::new(file), bytes, opts),
        Err(e) => unreadable(
            path,
            bytes,
            ProblemKind::NotWebm,
            format!("cannot open: {e}"),
        ),
    }
}

/// Checks bytes in memory (the fuzz target's entry); `name` only labels the report.
pub fn check_bytes(name: &Path, data: &[u8], opts: &CheckOptions) -> FileReport {
    check_reader(name, std::io::Cursor::new(data), data.len() as u64, opts)
}

fn empty_report(path: &Path, bytes: u64) -> FileReport {
    FileReport {
        file: path.to_path_buf(),
        playable: false,
        status: Status::Unreadable,
        duration_ms: None,
        playable_ms: None,
        bytes,
        finalized: false,
        tracks: Vec::new(),
        av_offset_ms: None,
        av_duration_diff_ms: None,
        problems: Vec::new(),
        video_decoded: false,
    }
}

/// A report of a file that could not be read at all, and why.
fn unreadable(path: &Path, bytes: u64, kind: ProblemKind, message: String) -> FileReport {
    let mut report = empty_report(path, bytes);
    report.problems.push(Problem {
        kind,
        at_ms: None,
        track: None,
        message,
        length_ms: None,
    });
    report
}

fn check_reader(
    path: &Path,
    source: impl Read + Seek,
    bytes: u64,
    opts: &CheckOptions,
) -> FileReport {
    if bytes == 0 {
        return unreadable(path, bytes, ProblemKind::Empty, "the file is empty".into());
    }
    let report = empty_report(path, bytes);
    let mut scan = Scan::new(opts);
    let source = match SegmentAsUnknown::new(source) {
        Ok(s) => s,
        Err(e) => {
            return unreadable(
                path,
                bytes,
                ProblemKind::NotWebm,
                format!("cannot read: {e}"),
            );
        }
    };
    let (cut_off, segment) = scan.read(source, bytes);
    // The Segment is read as unknown-sized (see `SegmentAsUnknown`): it is whole when the
    // file holds all of it and nothing was cut off. A live file's (unknown from the start)
    // never is.
    if segment.is_some_and(|s| s.data_start.saturating_add(s.size) <= bytes) {
        scan.segment_ended = true;
    }
    scan.finish(cut_off, report)
}

impl<'a> Scan<'a> {
    fn new(opts: &'a CheckOptions) -> Scan<'a> {
        Scan {
            opts,
            saw_ebml: false,
            doc_type: None,
            segment_started: false,
            segment_ended: false,
            segment_known: false,
            saw_cluster: false,
            scale_ns: 1_000_000,
            info_duration: None,
            cue_points: 0,
            entry: None,
            tracks: Vec::new(),
            cluster_ts: None,
            group_block: None,
            group_referenced: false,
            first_video_seen: false,
            tracks_over_limit: false,
            problems: Problems::default(),
        }
    }

    /// Reads every element; returns whether the file ended in the middle of one, and the
    /// Segment's extent as the file declared it. After damage (an element claiming more than
    /// its parent or the file holds, an invalid header) reading starts again at the next
    /// Cluster, as ffmpeg's demuxer does, and the span skipped is reported.
    fn read<R: Read + Seek>(
        &mut self,
        source: SegmentAsUnknown<R>,
        bytes: u64,
    ) -> (bool, Option<SegmentExtent>) {
        let segment = source.segment();
        self.segment_known = segment.is_some();
        let mut source = source;
        // Where the current iterator started: its offsets are relative to it.
        let mut base = 0u64;
        let limit = element_limit(bytes);
        for _ in 0..=MAX_RECOVERIES {
            let mut it = WebmIterator::new(source, &[]);
            // Without this, elements still open at the end of the file would be reported as
            // closed, and a cut-off file would look complete.
            it.emit_master_end_when_eof(false);
            // Elements are held whole in memory, and webm-iterable allocates an element's
            // claimed size before reading it: none may claim more than MAX_ELEMENT, nor more
            // than the whole file (a 4 KiB file claiming a 60 MiB block cost 190 MB); masters,
            // which are not held, may claim more (`next_element`).
            it.set_max_allowable_tag_size(Some(limit));
            let damage = match self.read_elements(&mut it, limit) {
                Stop::End => return (false, segment),
                Stop::Damaged(d) => d,
            };
            let last = base + it.last_emitted_tag_offset() as u64;
            source = it.into_inner();
            let from = damage.at.map_or(last, |at| base + at as u64);
            let next = find_cluster(&mut source, from + 1);
            let at = self.last_time();
            match next {
                Ok(Some(cluster)) => {
                    let message = match damage.at {
                        Some(_) => format!(
                            "damaged data from byte {from} to {cluster} ({} bytes skipped; \
                             reading went on at the next Cluster): {}",
                            cluster - from,
                            damage.why
                        ),
                        // The error does not say where: after the last element read.
                        None => format!(
                            "damaged data after byte {from}, up to byte {cluster} (reading went \
                             on at the next Cluster): {}",
                            damage.why
                        ),
                    };
                    self.problems
                        .add(ProblemKind::CorruptData, at, None, message);
                    if source.seek(SeekFrom::Start(cluster)).is_err() {
                        return (true, segment);
                    }
                    base = cluster;
                    self.cluster_ts = None;
                    self.group_block = None;
                }
                // What runs past the end with no Cluster after it: the file is cut there.
                Ok(None) if damage.past_end => return (true, segment),
                Ok(None) => {
                    let message = format!(
                        "damaged data from byte {from} to the end (no Cluster after it): {}",
                        damage.why
                    );
                    self.problems
                        .add(ProblemKind::CorruptData, at, None, message);
                    return (true, segment);
                }
                Err(_) => return (true, segment),
            }
        }
        (true, segment)
    }

    /// Feeds the iterator's elements to `on_tag` until the end or damage.
    fn read_elements<R: Read>(&mut self, it: &mut WebmIterator<R>, limit: usize) -> Stop {
        let mut header_recoveries = 0;
        loop {
            match next_element(it, limit) {
                None => return Stop::End,
                Some(Ok(tag)) => {
                    if !self.saw_ebml && !matches!(tag, MatroskaSpec::Ebml(_)) {
                        // Not EBML at all: stop rather than hunt through random bytes.
                        return Stop::End;
                    }
                    self.on_tag(tag);
                }
                Some(Err(TagIteratorError::UnexpectedEOF { tag_start, .. })) => {
                    return Stop::Damaged(Damage {
                        at: Some(tag_start),
                        past_end: true,
                        why: "an element runs past the end of the file".into(),
                    });
                }
                // The element was read past: only its value is bad.
                Some(Err(e @ TagIteratorError::CorruptedTagData { .. })) => {
                    let at = self.last_time();
                    self.problems
                        .add(ProblemKind::CorruptData, at, None, format!("{e}"));
                }
                Some(Err(e)) => {
                    if !self.saw_ebml {
                        return Stop::End;
                    }
                    let misplaced = matches!(
                        e,
                        TagIteratorError::CorruptedFileData(
                            CorruptedFileError::HierarchyError { .. }
                        )
                    );
                    if !self.saw_cluster && !misplaced {
                        // Before the first Cluster (the header, Info, Tracks): skip to the next
                        // element that reads, rather than past the Tracks to a Cluster. (An
                        // element out of place there, often a Cluster, ends the header.)
                        let near = it.last_emitted_tag_offset();
                        let message = format!("corrupt data near byte {near}: {e}");
                        self.problems
                            .add(ProblemKind::CorruptData, None, None, message);
                        header_recoveries += 1;
                        if header_recoveries > MAX_RECOVERIES || it.try_recover().is_err() {
                            return Stop::End;
                        }
                        continue;
                    }
                    // Over the file-size limit but not over MAX_ELEMENT: it runs past the end
                    // of the file (a cut, unless a Cluster follows).
                    let past_end = matches!(
                        e,
                        TagIteratorError::CorruptedFileData(
                            CorruptedFileError::InvalidTagSize { size, .. }
                        ) if size <= MAX_ELEMENT
                    );
                    let at = match &e {
                        TagIteratorError::CorruptedFileData(
                            CorruptedFileError::InvalidTagId { position, .. }
                            | CorruptedFileError::InvalidTagData { position, .. }
                            | CorruptedFileError::OversizedChildElement { position, .. }
                            | CorruptedFileError::InvalidTagSize { position, .. },
                        ) => Some(*position),
                        _ => None,
                    };
                    return Stop::Damaged(Damage {
                        at,
                        past_end,
                        why: e.to_string(),
                    });
                }
            }
        }
    }

    fn last_time(&self) -> Option<i64> {
        self.tracks.iter().filter_map(|t| t.last_ms).max()
    }

    fn on_tag(&mut self, tag: MatroskaSpec) {
        match tag {
            MatroskaSpec::Ebml(Master::Start) => self.saw_ebml = true,
            MatroskaSpec::DocType(d) => self.doc_type = Some(ebml_string(d)),
            MatroskaSpec::Segment(Master::Start) => self.segment_started = true,
            MatroskaSpec::Segment(Master::End) => self.segment_ended = true,
            MatroskaSpec::TimestampScale(s) if s > 0 => self.scale_ns = s,
            MatroskaSpec::Duration(d) => self.info_duration = Some(d),
            MatroskaSpec::CuePoint(Master::Start) => self.cue_points += 1,
            MatroskaSpec::TrackEntry(Master::Start) => self.entry = Some(EntryBuilder::default()),
            MatroskaSpec::TrackNumber(n) => self.with_entry(|e| e.number = Some(n)),
            MatroskaSpec::TrackType(t) => self.with_entry(|e| e.track_type = Some(t)),
            MatroskaSpec::CodecID(c) => self.with_entry(|e| e.codec = Some(ebml_string(c))),
            MatroskaSpec::CodecPrivate(p) => self.with_entry(|e| e.private = Some(p)),
            MatroskaSpec::TrackEntry(Master::End) => self.end_entry(),
            MatroskaSpec::Cluster(Master::Start) => self.saw_cluster = true,
            MatroskaSpec::Timestamp(t) => self.cluster_ts = Some(t),
            MatroskaSpec::BlockGroup(Master::Start) => {
                self.group_block = None;
                self.group_referenced = false;
            }
            MatroskaSpec::Block(data) => self.group_block = Some(data),
            MatroskaSpec::ReferenceBlock(_) => self.group_referenced = true,
            MatroskaSpec::BlockGroup(Master::End) => {
                if let Some(data) = self.group_block.take() {
                    match decode_block(&MatroskaSpec::Block(data)) {
                        Ok((track, ts, _, frames)) => {
                            let key = !self.group_referenced;
                            self.on_block(track, ts, key, frames);
                        }
                        Err(e) => self.corrupt_block(e.to_string()),
                    }
                }
            }
            tag @ MatroskaSpec::SimpleBlock(_) => match decode_block(&tag) {
                Ok((track, ts, key, frames)) => self.on_block(track, ts, key, frames),
                Err(e) => self.corrupt_block(e.to_string()),
            },
            _ => {}
        }
    }

    fn with_entry(&mut self, f: impl FnOnce(&mut EntryBuilder)) {
        if let Some(e) = &mut self.entry {
            f(e);
        }
    }

    fn end_entry(&mut self) {
        let Some(e) = self.entry.take() else { return };
        let Some(number) = e.number else {
            self.problems.add(
                ProblemKind::CorruptData,
                None,
                None,
                "a track without a number".into(),
            );
            return;
        };
        if self.tracks.iter().any(|t| t.number == number) {
            let message = format!("a second track numbered {number} is not read");
            self.problems
                .add(ProblemKind::DuplicateTrack, None, Some(number), message);
            return;
        }
        if self.tracks.len() >= MAX_TRACKS {
            self.tracks_over_limit = true;
            let message = format!("track {number} is not read: only {MAX_TRACKS} tracks are");
            self.problems
                .add(ProblemKind::TooManyTracks, None, None, message);
            return;
        }
        let kind = match e.track_type {
            Some(1) => "video",
            Some(2) => "audio",
            _ => "other",
        };
        let codec = e.codec.unwrap_or_default();
        if codec.is_empty() {
            self.problems.add(
                ProblemKind::UnknownCodec,
                None,
                Some(number),
                "the track has no codec id".into(),
            );
        }
        if codec == "A_OPUS" {
            match &e.private {
                None => self.problems.add(
                    ProblemKind::MissingCodecPrivate,
                    None,
                    Some(number),
                    "Opus needs an OpusHead in CodecPrivate".into(),
                ),
                Some(p) if p.len() < 19 || !p.starts_with(b"OpusHead") || p[9] == 0 => {
                    self.problems.add(
                        ProblemKind::BadCodecPrivate,
                        None,
                        Some(number),
                        format!("CodecPrivate is not a valid OpusHead ({} bytes)", p.len()),
                    )
                }
                Some(_) => {}
            }
        }
        let known = codec == "A_OPUS" || VideoCodec::from_codec_id(&codec).is_some();
        if !known && !codec.is_empty() {
            self.problems.add(
                ProblemKind::UnknownCodec,
                None,
                Some(number),
                format!(
                    "track {number}: codec {codec} not checked (only Opus, VP8, VP9, H.264, \
                     H.265 and AV1 are)"
                ),
            );
        }
        let mut size = None;
        let mut video_decoder = None;
        let reorders = VideoCodec::from_codec_id(&codec).is_some_and(VideoCodec::reorders);
        let decoder = if codec == "A_OPUS" {
            Decoder::Opus(None)
        } else if let Some(video) = VideoCodec::from_codec_id(&codec) {
            if let Some(program) = &self.opts.video_decoder {
                match FrameDecoder::new(program, video, e.private.as_deref()) {
                    Ok(d) => video_decoder = Some(d),
                    Err(why) => {
                        let message = format!("track {number} is not decoded: {why}");
                        self.problems
                            .add(ProblemKind::DecodeError, None, Some(number), message);
                    }
                }
            }
            let (video, private_size, finding) = VideoTrack::new(video, e.private.as_deref());
            if let Some((kind, message)) = finding {
                self.problems.add(kind, None, Some(number), message);
            }
            size = private_size;
            Decoder::Video(video)
        } else {
            Decoder::None
        };
        let mut track = Track::new(number, kind, codec, decoder);
        track.private_len = e.private.map_or(0, |p| p.len());
        track.size = size;
        track.reorder = reorders.then(ReorderWindow::default);
        track.video_decoder = video_decoder;
        self.tracks.push(track);
    }

    fn corrupt_block(&mut self, why: String) {
        let at = self.last_time();
        self.problems.add(
            ProblemKind::CorruptData,
            at,
            None,
            format!("unreadable block: {why}"),
        );
    }

    fn on_block(&mut self, track: u64, rel: i16, flagged_key: bool, frames: Vec<Vec<u8>>) {
        let Some(cluster) = self.cluster_ts else {
            return self.corrupt_block("a block outside a cluster with a timestamp".into());
        };
        let Some(ms) = block_ms(cluster, rel, self.scale_ns) else {
            let at = self.last_time();
            let message = format!(
                "a block time that does not fit: cluster {cluster} {rel:+} ticks of {} ns",
                self.scale_ns
            );
            return self
                .problems
                .add(ProblemKind::BadTimestamp, at, Some(track), message);
        };
        let gap_ms = i64::try_from(self.opts.gap.as_millis()).unwrap_or(i64::MAX);
        let Some(t) = self.tracks.iter_mut().find(|t| t.number == track) else {
            if self.tracks_over_limit {
                return; // one of the tracks beyond the limit, already reported
            }
            return self.corrupt_block(format!("a block for track {track}, which is not declared"));
        };
        let mut found: Vec<Problem> = Vec::new();
        let problem = |kind, at_ms: i64, message: String| Problem {
            kind,
            at_ms: Some(at_ms),
            track: Some(track),
            message,
            length_ms: None,
        };
        // With B-frames, blocks come in decode order: a time may go back, but not below
        // those of frames decoded long before.
        let floor = match &mut t.reorder {
            Some(window) => window.push(ms),
            None => t.last_ms,
        };
        if let Some(prev) = t.last_ms {
            if let Some(floor) = floor
                && ms < floor
            {
                found.push(problem(
                    ProblemKind::TimestampBackwards,
                    ms,
                    format!("goes back {} ms", floor - ms),
                ));
            } else if ms - prev > gap_ms {
                found.push(Problem {
                    length_ms: Some((ms - prev) as u64),
                    ..problem(
                        ProblemKind::Gap,
                        prev,
                        format!("no {} for {:.2} s", t.kind, (ms - prev) as f64 / 1000.0),
                    )
                });
            }
        }
        t.frames += frames.len() as u64;
        t.keyframes += u64::from(flagged_key);
        if flagged_key && t.kind == "video" && t.keyframe_ms.len() < MAX_KEYFRAME_TIMES {
            t.keyframe_ms.push(ms);
        }
        if t.reorder.is_some() {
            t.first_ms = Some(t.first_ms.map_or(ms, |f| f.min(ms)));
        } else {
            t.first_ms.get_or_insert(ms);
        }
        t.last_ms = Some(t.last_ms.map_or(ms, |l| l.max(ms)));
        for frame in &frames {
            t.bytes += frame.len() as u64;
            let read = match &mut t.decoder {
                Decoder::Opus(opus) => {
                    t.last_len_ms = packet_ms(frame).unwrap_or(20);
                    if !self.opts.decode_audio {
                        continue;
                    }
                    if let Err(e) = opus.get_or_insert_with(OpusCheck::new).decode(frame) {
                        found.push(problem(
                            ProblemKind::DecodeError,
                            ms,
                            format!("libopus: {e}"),
                        ));
                    }
                    continue;
                }
                Decoder::Video(video) => video.frame(frame),
                Decoder::None => continue,
            };
            if let Some(decoder) = &mut t.video_decoder {
                for e in decoder.decode(frame) {
                    found.push(problem(
                        ProblemKind::DecodeError,
                        ms,
                        format!("video decoder: {e}"),
                    ));
                }
            }
            let first = !self.first_video_seen;
            self.first_video_seen = true;
            if let Some((kind, message)) = read.finding {
                found.push(problem(kind, ms, message));
            }
            let Some(h) = read.info else { continue };
            // The bitstream decides whether the start shows; a keyframe whose block flag is
            // cleared is a flag mismatch (players that trust the flag may skip it).
            if first && !h.keyframe {
                found.push(problem(
                    ProblemKind::FirstVideoNotKeyframe,
                    ms,
                    "the first video frame is not a keyframe: the start will not show".into(),
                ));
            }
            if h.keyframe != flagged_key {
                found.push(problem(
                    ProblemKind::KeyframeFlagMismatch,
                    ms,
                    format!(
                        "block flag says {}, bitstream says {}",
                        key_word(flagged_key),
                        key_word(h.keyframe)
                    ),
                ));
            }
            if let Some(size) = h.size {
                t.see_size(ms, size);
            }
        }
        for p in found {
            self.problems.push(p);
        }
    }

    fn finish(mut self, cut_off: bool, mut report: FileReport) -> FileReport {
        for t in &mut self.tracks {
            let Some(decoder) = &mut t.video_decoder else {
                continue;
            };
            for e in decoder.finish() {
                let message = format!("video decoder, at the end: {e}");
                self.problems
                    .add(ProblemKind::DecodeError, t.last_ms, Some(t.number), message);
            }
        }
        report.video_decoded = self.opts.video_decoder.is_some();
        let mut problems = self.problems;
        let not_webm = |problems: &mut Problems, msg: &str| {
            problems.add(ProblemKind::NotWebm, None, None, msg.into());
        };
        if !self.saw_ebml {
            not_webm(&mut problems, "no EBML header: not a WebM/Matroska file");
        } else if !matches!(self.doc_type.as_deref(), Some("webm" | "matroska")) {
            not_webm(
                &mut problems,
                &format!("document type {:?} is not webm or matroska", self.doc_type),
            );
        } else if !self.segment_started {
            not_webm(&mut problems, "no Segment");
        } else if self.tracks.is_empty() {
            problems.add(ProblemKind::NoTracks, None, None, "no tracks".into());
        }
        let frames: u64 = self.tracks.iter().map(|t| t.frames).sum();
        let end = self.tracks.iter().filter_map(Track::end_ms).max();
        report.playable = self.saw_ebml && self.segment_started && frames > 0;
        if self.saw_ebml && self.segment_started && !self.tracks.is_empty() && frames == 0 {
            problems.add(ProblemKind::NoFrames, None, None, "no frames".into());
        }
        report.playable_ms = end.map(|e| e.max(0) as u64);
        report.finalized = self.segment_ended && !cut_off;
        if report.playable {
            let playable = report.playable_ms.unwrap_or(0) as f64 / 1000.0;
            if !report.finalized && (cut_off || self.segment_known) {
                // Cut inside an element, or a Segment whose size says there is more.
                problems.add(
                    ProblemKind::Truncated,
                    end,
                    None,
                    format!(
                        "truncated (a crash, a partial copy, or still being written): \
                         {playable:.1} s playable"
                    ),
                );
            } else if !report.finalized {
                // An unknown-sized Segment read to its end with nothing cut: a file written
                // live (`ffmpeg -live 1`, MediaRecorder), or one whose writer stopped between
                // blocks (this recorder's own files are live until finalized). Not a crash's
                // cut: everything in it plays.
                let mut missing = String::new();
                if self.cue_points == 0 {
                    missing.push_str(", no Cues");
                }
                if self.info_duration.is_none() {
                    missing.push_str(", no Duration");
                }
                problems.add(
                    ProblemKind::NotFinalized,
                    None,
                    None,
                    format!(
                        "not finalized: unknown-size Segment{missing} (written live, or its \
                         writer stopped before finalizing it); nothing is cut, {playable:.1} s \
                         playable"
                    ),
                );
            } else {
                if self.info_duration.is_none() {
                    problems.add(
                        ProblemKind::MissingDuration,
                        None,
                        None,
                        "no Duration in the Segment Info".into(),
                    );
                }
                if self.cue_points == 0 {
                    problems.add(
                        ProblemKind::MissingCues,
                        None,
                        None,
                        "no Cues: players cannot seek".into(),
                    );
                }
            }
        }
        report.duration_ms = match self.info_duration {
            Some(d) if report.finalized => {
                Some((d * self.scale_ns as f64 / 1_000_000.0).round() as u64)
            }
            _ => report.playable_ms,
        };
        let first_of = |kind: &str| self.tracks.iter().find(|t| t.kind == kind && t.frames > 0);
        if let (Some(a), Some(v)) = (first_of("audio"), first_of("video")) {
            report.av_offset_ms = Some(v.first_ms.unwrap_or(0) - a.first_ms.unwrap_or(0));
            report.av_duration_diff_ms = Some(v.duration_ms() as i64 - a.duration_ms() as i64);
        }
        report.tracks = self
            .tracks
            .into_iter()
            .map(|mut t| {
                if t.kind == "video" {
                    t.last_len_ms = t.interval_ms();
                }
                let duration_ms = t.duration_ms();
                let seconds = duration_ms as f64 / 1000.0;
                let span_ms = t.last_ms.unwrap_or(0) - t.first_ms.unwrap_or(0);
                let opus = match &t.decoder {
                    Decoder::Opus(opus) => opus.as_ref(),
                    _ => None,
                };
                TrackReport {
                    number: t.number,
                    kind: t.kind.to_string(),
                    codec: t.codec.clone(),
                    codec_private_bytes: t.private_len,
                    frames: t.frames,
                    keyframes: t.keyframes,
                    first_ms: t.first_ms,
                    last_ms: t.last_ms,
                    duration_ms,
                    fps: (t.kind == "video" && t.frames > 1 && span_ms > 0)
                        .then(|| (t.frames - 1) as f64 / (span_ms as f64 / 1000.0)),
                    bitrate_kbps: (seconds > 0.0).then(|| t.bytes as f64 * 8.0 / seconds / 1000.0),
                    width: t.size.map(|s| s.0),
                    height: t.size.map(|s| s.1),
                    size_changes: t.size_changes,
                    size_change_count: t.size_change_count,
                    keyframe_ms: t.keyframe_ms,
                    decoded_frames: t.video_decoder.as_ref().map(FrameDecoder::decoded),
                    decode_errors: opus.map_or(0, |o| o.errors),
                    decoded_ms: opus.map(OpusCheck::decoded_ms),
                    silent_share: opus.and_then(OpusCheck::silent_share),
                }
            })
            .collect();
        report.problems = problems.finish();
        report.status = if !report.playable {
            Status::Unreadable
        } else if report.problems.is_empty() {
            Status::Ok
        } else {
            Status::Problems
        };
        report
    }
}

/// Blocks further than this from 0 (about 30,000 years) are refused: every sum and
/// difference of block times then fits in an i64.
const MAX_BLOCK_MS: i64 = 1 << 50;

/// A block's time in ms: (cluster timestamp + relative timestamp) ticks of `scale_ns`; `None`
/// if it does not fit.
fn block_ms(cluster: u64, rel: i16, scale_ns: u64) -> Option<i64> {
    let ticks = i128::from(cluster).checked_add(i128::from(rel))?;
    let ms = ticks.checked_mul(i128::from(scale_ns))? / 1_000_000;
    i64::try_from(ms).ok().filter(|ms| ms.abs() <= MAX_BLOCK_MS)
}

/// An EBML string's value: it ends at its first NUL (RFC 8794 7.4-7.5: strings may be padded
/// with zero bytes, e.g. a DocType of `webm\0`).
fn ebml_string(mut s: String) -> String {
    if let Some(end) = s.find('\0') {
        s.truncate(end);
    }
    s
}

fn key_word(key: bool) -> &'static str {
    if key { "keyframe" } else { "not a keyframe" }
}

#[cfg(test)]
mod tests {
    use super::*;
    use webm_iterable::WebmWriter;

    /// A Matroska file: `tracks` (TrackEntry children each) and one cluster at `cluster_ts`
    /// with a SimpleBlock for each of `blocks` (track, relative time, data), with the given
    /// TimestampScale.
    fn hostile_file(
        tracks: Vec<Vec<MatroskaSpec>>,
        scale: u64,
        cluster_ts: u64,
        blocks: &[(u8, i16, &[u8])],
    ) -> Vec<u8> {
        let mut out = Vec::new();
        let mut w = WebmWriter::new(&mut out);
        w.write(&MatroskaSpec::Ebml(Master::Full(vec![
            MatroskaSpec::DocType("matroska".into()),
        ])))
        .unwrap();
        let entries = tracks
            .into_iter()
            .map(|e| MatroskaSpec::TrackEntry(Master::Full(e)))
            .collect();
        let mut cluster = vec![MatroskaSpec::Timestamp(cluster_ts)];
        for &(track, rel, data) in blocks {
            let mut b = vec![0x80 | track];
            b.extend_from_slice(&rel.to_be_bytes());
            b.push(0x80);
            b.extend_from_slice(data);
            cluster.push(MatroskaSpec::SimpleBlock(b));
        }
        w.write(&MatroskaSpec::Segment(Master::Full(vec![
            MatroskaSpec::Info(Master::Full(vec![MatroskaSpec::TimestampScale(scale)])),
            MatroskaSpec::Tracks(Master::Full(entries)),
            MatroskaSpec::Cluster(Master::Full(cluster)),
        ])))
        .unwrap();
        drop(w);
        out
    }

    fn entry(number: u64, codec: &str) -> Vec<MatroskaSpec> {
        vec![
            MatroskaSpec::TrackNumber(number),
            MatroskaSpec::TrackType(2),
            MatroskaSpec::CodecID(codec.into()),
        ]
    }

    fn check(data: &[u8]) -> FileReport {
        check_bytes(Path::new("hostile.mkv"), data, &CheckOptions::default())
    }

    fn kinds(r: &FileReport) -> Vec<ProblemKind> {
        r.problems.iter().map(|p| p.kind).collect()
    }

    /// 64 tracks are read; the rest are reported, not given decoders.
    #[test]
    fn thousands_of_tracks_are_capped() {
        let tracks = (1..=5_000).map(|n| entry(n, "A_OPUS")).collect();
        let r = check(&hostile_file(tracks, 1_000_000, 0, &[(1, 0, &[0xfc])]));
        assert_eq!(r.tracks.len(), MAX_TRACKS);
        assert!(
            kinds(&r).contains(&ProblemKind::TooManyTracks),
            "{}",
            r.human()
        );
        let listed = r
            .problems
            .iter()
            .filter(|p| p.kind == ProblemKind::TooManyTracks);
        assert!(listed.count() <= MAX_LISTED + 1, "{}", r.human());
    }

    #[test]
    fn a_duplicate_track_number_is_refused() {
        let tracks = vec![entry(1, "A_OPUS"), entry(1, "V_VP8")];
        let r = check(&hostile_file(tracks, 1_000_000, 0, &[(1, 0, &[0xfc])]));
        assert_eq!(r.tracks.len(), 1);
        assert_eq!(r.tracks[0].codec, "A_OPUS");
        assert!(
            kinds(&r).contains(&ProblemKind::DuplicateTrack),
            "{}",
            r.human()
        );
    }

    /// An Opus track costs a decoder only once it has a block.
    #[test]
    fn opus_decoders_are_made_on_the_first_block() {
        let data = hostile_file(
            vec![entry(1, "A_OPUS"), entry(2, "A_OPUS")],
            1_000_000,
            0,
            &[(1, 0, &[0xfc])],
        );
        let opts = CheckOptions::default();
        let mut scan = Scan::new(&opts);
        scan.read(
            SegmentAsUnknown::new(std::io::Cursor::new(&data[..])).unwrap(),
            data.len() as u64,
        );
        let made: Vec<bool> = scan
            .tracks
            .iter()
            .map(|t| matches!(t.decoder, Decoder::Opus(Some(_))))
            .collect();
        assert_eq!(made, [true, false]);
    }

    /// Times that do not fit are reported, not computed with overflowing arithmetic.
    #[test]
    fn huge_timestamps_and_scales_are_reported() {
        for (scale, cluster_ts) in [
            (u64::MAX, u64::MAX),
            (u64::MAX, 1),
            (1_000_000, u64::MAX),
            (1, u64::MAX),
        ] {
            let blocks: [(u8, i16, &[u8]); 3] = [
                (1, i16::MIN, &[0xfc]),
                (1, 0, &[0xfc]),
                (1, i16::MAX, &[0xfc]),
            ];
            let r = check(&hostile_file(
                vec![entry(1, "A_OPUS")],
                scale,
                cluster_ts,
                &blocks,
            ));
            let fits = (scale, cluster_ts) == (1, u64::MAX);
            if !fits {
                assert!(
                    kinds(&r).contains(&ProblemKind::BadTimestamp),
                    "{scale} {cluster_ts}: {}",
                    r.human()
                );
            }
        }
        // The gap threshold from the command line is a u64 of milliseconds too.
        let opts = CheckOptions {
            gap: std::time::Duration::from_millis(u64::MAX),
            ..CheckOptions::default()
        };
        let data = hostile_file(vec![entry(1, "A_OPUS")], 1_000_000, 0, &[(1, 0, &[0xfc])]);
        let data2 = hostile_file(
            vec![entry(1, "A_OPUS")],
            1_000_000,
            0,
            &[(1, 0, &[0xfc]), (1, 20, &[0xfc])],
        );
        for d in [data, data2] {
            let r = check_bytes(Path::new("x"), &d, &opts);
            assert!(!kinds(&r).contains(&ProblemKind::Gap), "{}", r.human());
        }
    }

    /// Control characters from the file (codec ids) or its name never reach the terminal.
    #[test]
    fn control_characters_are_escaped_in_the_human_report() {
        let evil = "V_\u{1b}]0;pwned\u{7}\u{1b}[2J\u{202e}X";
        let data = hostile_file(vec![entry(1, evil)], 1_000_000, 0, &[(1, 0, &[1])]);
        let r = check_bytes(
            Path::new("a\u{1b}[31m.mkv"),
            &data,
            &CheckOptions::default(),
        );
        assert_eq!(r.tracks[0].codec, evil, "JSON keeps the codec id as it is");
        let text = r.human();
        assert!(
            !text
                .chars()
                .any(|c| c.is_control() && c != '\n' || c == '\u{202e}'),
            "{text:?}"
        );
        assert!(text.contains("V_\\u{1b}]0;pwned"), "{text}");
        let svg = super::super::timeline::svg(&r);
        assert!(!svg.chars().any(|c| c.is_control() && c != '\n'), "{svg:?}");
    }

    /// Blocks shorter than their header (the fuzzer's first find) are errors, not panics.
    #[test]
    fn short_blocks_are_refused() {
        for data in [
            vec![],
            vec![0x81],
            vec![0x81, 0x00],
            vec![0x00, 0x01, 0x02, 0x03],
        ] {
            assert!(decode_block(&MatroskaSpec::SimpleBlock(data.clone())).is_err());
            assert!(decode_block(&MatroskaSpec::Block(data)).is_err());
        }
        let ok = decode_block(&MatroskaSpec::SimpleBlock(vec![
            0x81, 0x00, 0x05, 0x80, 1, 2,
        ]));
        assert_eq!(ok, Ok((1, 5, true, vec![vec![1, 2]])));
    }

    /// A track whose size flips on every frame lists the first changes and counts them all.
    #[test]
    fn size_changes_are_capped_and_counted() {
        let mut t = Track::new(1, "video", "V_VP8".into(), Decoder::None);
        for i in 0..5_000 {
            t.see_size(i, (320 + (i % 2) as u32, 240));
        }
        assert_eq!(t.size_changes.len(), MAX_SIZE_CHANGES);
        assert_eq!(t.size_change_count, 4_999);
    }

    /// Blocks in decode order may go back within the reorder depth, not below it.
    #[test]
    fn reorder_window() {
        let mut w = ReorderWindow::default();
        // I0 P3 B1 B2 P6 B4 B5 ...: never below a frame decoded 16 frames before.
        let times: Vec<i64> = (0..60)
            .map(|i| match i % 3 {
                0 => i + 2,
                _ => i - 1,
            })
            .collect();
        assert!(times.iter().all(|&t| w.push(t).is_none_or(|f| t >= f)));
        assert!(
            w.push(10).is_some_and(|f| f > 40),
            "far back: below the floor"
        );
    }
}
