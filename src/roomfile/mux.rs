//! Writes the room file: Matroska with every recording's tracks, blocks copied as they are.
//!
//! Layout: EBML header, a Segment of unknown size (patched at the end, as the daemon's writer
//! does), a Void reserved for the SeekHead, the Info (DateUTC, Title, Duration patched at the
//! end), the Tracks (known before the first block: they are the inputs' TrackEntries), then
//! Clusters and Cues. Each Cluster is written with a known size: the tag writer holds one
//! cluster (at most [`MAX_CLUSTER_MS`] of every track) in memory, so memory stays bounded.
//!
//! Streamed ([`RoomWriter::stream`], the page's download), nothing is patched: the Segment
//! stays unknown-sized, the Info carries the duration expected, the SeekHead's room stays a
//! Void and the Cues come last, found by players that scan.

use std::fs::File;
use std::io::{self, BufWriter, Seek, SeekFrom, Write};
use std::num::TryFromIntError;
use std::path::{Path, PathBuf};

use time::OffsetDateTime;
use time::macros::datetime;
use webm_iterable::WebmWriter as TagWriter;
use webm_iterable::WriteOptions;
use webm_iterable::errors::TagWriterError;
use webm_iterable::matroska_spec::{Master, MatroskaSpec};

use super::RoomError;
use crate::media::MediaKind;
use crate::webm::matroska::{
    CUES_ID, INFO_ID, SIZE_FIELD_LEN, TRACKS_ID, UNKNOWN_SIZED_HEADER_LEN, WriteCause, fill_region,
    opus_frame_ms, seek, sized_vint, void_of,
};

/// A cluster is closed once it spans this long.
pub const MAX_CLUSTER_MS: i64 = 2_000;
/// A track whose newest block is more than this behind is not waited for when choosing a
/// cluster's timestamp (see [`RoomWriter::cluster_timestamp`]).
const MAX_LAG_MS: i64 = 5_000;
/// Room reserved for the SeekHead and for the Info to change size when the Duration is
/// written.
const SEEKHEAD_ROOM: usize = 96;
const INFO_ROOM: usize = 24;

/// Matroska's epoch for DateUTC.
const MATROSKA_EPOCH: OffsetDateTime = datetime!(2001-01-01 0:00 UTC);

/// DateUTC of a moment: nanoseconds since 2001-01-01T00:00:00Z (negative before it).
pub fn date_utc(t: OffsetDateTime) -> i64 {
    let ns = (t - MATROSKA_EPOCH).whole_nanoseconds();
    i64::try_from(ns).unwrap_or(if ns < 0 { i64::MIN } else { i64::MAX })
}

/// What went wrong writing the room file (the cause in [`RoomError::Output`]).
#[derive(Debug, thiserror::Error)]
pub enum MuxError {
    /// Creating, writing, seeking or syncing the file failed.
    #[error(transparent)]
    Io(#[from] io::Error),
    /// The tag writer refused an element (its own writes to the file fail as this too).
    #[error(transparent)]
    Encode(#[from] TagWriterError),
    /// A reserved header region could not be filled (shared with the recordings' writer).
    #[error(transparent)]
    Region(#[from] WriteCause),
    /// A block for a track the room file does not have.
    #[error("no track {0}")]
    NoTrack(u64),
    /// A block too far from its cluster's timestamp for a block's 16-bit offset.
    #[error("a block at {ms} ms in a cluster at {cluster_ms} ms: {source}")]
    BlockOffset {
        ms: i64,
        cluster_ms: i64,
        #[source]
        source: TryFromIntError,
    },
}

/// A track of the room file.
#[derive(Debug, Clone)]
pub struct OutTrack {
    pub number: u64,
    pub kind: MediaKind,
    pub name: String,
    pub default: bool,
    /// The input's TrackEntry children (codec, CodecPrivate, Audio/Video settings...).
    pub entry: Vec<MatroskaSpec>,
}

/// A block on its way to the room file: the input block's flags and payload, with the room
/// file's track number and time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutBlock {
    pub track: u64,
    /// Milliseconds on the room file's timeline (from its DateUTC).
    pub ms: i64,
    pub flags: u8,
    pub payload: Vec<u8>,
}

impl OutBlock {
    pub fn keyframe(&self) -> bool {
        self.flags & 0x80 != 0
    }

    /// Not a block: where a recording starts, so that its file is opened only when the
    /// merge reaches it (track 0 is no track).
    pub fn placeholder(ms: i64) -> OutBlock {
        OutBlock {
            track: 0,
            ms,
            flags: 0,
            payload: Vec::new(),
        }
    }

    pub fn is_placeholder(&self) -> bool {
        self.track == 0
    }
}

/// What each track of the finished room file holds.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrackStats {
    pub frames: u64,
    pub first_ms: Option<i64>,
    pub last_ms: Option<i64>,
    /// The end of its last frame: an Opus packet's own length, for video the last interval.
    pub end_ms: i64,
}

/// Where the room file goes: a file (patched at the end) or a stream (never gone back over).
enum Sink {
    File(BufWriter<File>),
    Stream(BufWriter<Box<dyn Write + Send>>),
}

impl Sink {
    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        match self {
            Sink::File(f) => f.write_all(buf),
            Sink::Stream(s) => s.write_all(buf),
        }
    }
}

/// Counts the bytes handed to the file; the tag writer's `flush()` after each element does
/// nothing, so the `BufWriter` decides when to write.
struct Counted {
    inner: Sink,
    written: u64,
}

impl Write for Counted {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.inner.write_all(buf)?;
        self.written += buf.len() as u64;
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

struct Cluster {
    timestamp: i64,
    first_ms: i64,
    /// Position relative to the Segment's data.
    position: u64,
    /// Video tracks that already have a cue in this cluster.
    cued: Vec<u64>,
}

/// Writes one room file.
pub struct RoomWriter {
    path: PathBuf,
    tags: TagWriter<Counted>,
    segment_data: u64,
    seekhead: (u64, usize),
    info: (u64, usize),
    tracks_at: u64,
    title: String,
    date_utc: i64,
    kinds: Vec<MediaKind>,
    stats: Vec<TrackStats>,
    cluster: Option<Cluster>,
    /// (time, track, cluster position): a cue per video track's first keyframe in a cluster.
    cues: Vec<(i64, u64, u64)>,
    /// The Duration the Info says before the end (a stream's is never patched).
    expected_ms: f64,
}

impl RoomWriter {
    /// Creates `path` (replacing a file there) and writes the header.
    pub fn create(
        path: &Path,
        title: &str,
        zero: OffsetDateTime,
        tracks: &[OutTrack],
    ) -> Result<RoomWriter, RoomError> {
        let file = crate::output::create_output(path).map_err(|e| output_error(path, e))?;
        let sink = Sink::File(BufWriter::with_capacity(1 << 20, file));
        RoomWriter::start(path, sink, title, zero, tracks, 0.0)
    }

    /// Writes the room file to `out` as it is made, saying `expected_ms` as its duration.
    pub fn stream(
        out: Box<dyn Write + Send>,
        title: &str,
        zero: OffsetDateTime,
        tracks: &[OutTrack],
        expected_ms: f64,
    ) -> Result<RoomWriter, RoomError> {
        let sink = Sink::Stream(BufWriter::with_capacity(256 << 10, out));
        RoomWriter::start(
            Path::new("(stream)"),
            sink,
            title,
            zero,
            tracks,
            expected_ms,
        )
    }

    fn start(
        path: &Path,
        sink: Sink,
        title: &str,
        zero: OffsetDateTime,
        tracks: &[OutTrack],
        expected_ms: f64,
    ) -> Result<RoomWriter, RoomError> {
        let mut w = RoomWriter {
            path: path.to_path_buf(),
            tags: TagWriter::new(Counted {
                inner: sink,
                written: 0,
            }),
            segment_data: 0,
            seekhead: (0, 0),
            info: (0, 0),
            tracks_at: 0,
            title: title.to_string(),
            date_utc: date_utc(zero),
            kinds: tracks.iter().map(|t| t.kind).collect(),
            stats: vec![TrackStats::default(); tracks.len()],
            cluster: None,
            cues: Vec::new(),
            expected_ms,
        };
        for (i, t) in tracks.iter().enumerate() {
            assert_eq!(
                t.number,
                i as u64 + 1,
                "tracks are numbered from 1 in order"
            );
        }
        w.write_header(tracks).map_err(|e| w.error(e))?;
        Ok(w)
    }

    fn error(&self, cause: MuxError) -> RoomError {
        RoomError::Output {
            path: self.path.clone(),
            cause,
        }
    }

    fn pos(&self) -> u64 {
        self.tags.get_ref().written
    }

    fn put(&mut self, tag: &MatroskaSpec) -> Result<(), MuxError> {
        Ok(self.tags.write(tag)?)
    }

    fn write_header(&mut self, tracks: &[OutTrack]) -> Result<(), MuxError> {
        self.put(&MatroskaSpec::Ebml(Master::Full(vec![
            MatroskaSpec::EbmlVersion(1),
            MatroskaSpec::EbmlReadVersion(1),
            MatroskaSpec::EbmlMaxIdLength(4),
            MatroskaSpec::EbmlMaxSizeLength(8),
            MatroskaSpec::DocType("matroska".into()),
            MatroskaSpec::DocTypeVersion(4),
            MatroskaSpec::DocTypeReadVersion(2),
        ])))?;
        self.segment_data = self.pos() + UNKNOWN_SIZED_HEADER_LEN;
        self.tags.write_advanced(
            &MatroskaSpec::Segment(Master::Start),
            WriteOptions::is_unknown_sized_element(),
        )?;
        // The Void also releases the Segment start the tag writer holds back.
        self.put(&void_of(SEEKHEAD_ROOM)?)?;
        self.seekhead = (self.segment_data, SEEKHEAD_ROOM);
        let info_at = self.pos();
        self.put(&self.info(self.expected_ms))?;
        self.put(&void_of(INFO_ROOM)?)?;
        self.info = (info_at, (self.pos() - info_at) as usize);
        self.tracks_at = self.pos();
        let entries = tracks.iter().map(|t| self.track_entry(t)).collect();
        self.put(&MatroskaSpec::Tracks(Master::Full(entries)))
    }

    fn info(&self, duration_ms: f64) -> MatroskaSpec {
        let app = format!("janus-recorder {}", env!("CARGO_PKG_VERSION"));
        MatroskaSpec::Info(Master::Full(vec![
            MatroskaSpec::TimestampScale(1_000_000),
            MatroskaSpec::DateUTC(self.date_utc),
            MatroskaSpec::Title(self.title.clone()),
            MatroskaSpec::MuxingApp(app.clone()),
            MatroskaSpec::WritingApp(app),
            MatroskaSpec::Duration(duration_ms),
        ]))
    }

    fn track_entry(&self, t: &OutTrack) -> MatroskaSpec {
        let uid = (self.date_utc as u64).rotate_left(17) ^ t.number.wrapping_mul(0x9E37_79B9) | 1;
        let mut children = vec![
            MatroskaSpec::TrackNumber(t.number),
            MatroskaSpec::TrackUID(uid),
            MatroskaSpec::FlagDefault(u64::from(t.default)),
            MatroskaSpec::Language("und".into()),
            MatroskaSpec::Name(t.name.clone()),
        ];
        children.extend(t.entry.iter().filter(|c| !replaced(c)).cloned());
        MatroskaSpec::TrackEntry(Master::Full(children))
    }

    /// Adds a block. Blocks should come in time order (a little disorder across tracks is
    /// absorbed by the cluster timestamps).
    pub fn write(&mut self, block: OutBlock) -> Result<(), RoomError> {
        self.write_block(block).map_err(|e| self.error(e))
    }

    fn write_block(&mut self, block: OutBlock) -> Result<(), MuxError> {
        let no_track = || MuxError::NoTrack(block.track);
        let index = usize::try_from(block.track - 1).map_err(|_| no_track())?;
        let kind = *self.kinds.get(index).ok_or_else(no_track)?;
        let ms = block.ms;
        let fits = |c: &Cluster| i16::try_from(ms - c.timestamp).is_ok();
        let new_cluster = match &self.cluster {
            None => true,
            Some(c) => ms - c.first_ms >= MAX_CLUSTER_MS || !fits(c),
        };
        if new_cluster {
            self.open_cluster(ms)?;
        }
        let cluster = self.cluster.as_mut().expect("a cluster is open");
        let rel =
            i16::try_from(ms - cluster.timestamp).map_err(|source| MuxError::BlockOffset {
                ms,
                cluster_ms: cluster.timestamp,
                source,
            })?;
        if kind == MediaKind::Video && block.keyframe() && !cluster.cued.contains(&block.track) {
            cluster.cued.push(block.track);
            self.cues.push((ms, block.track, cluster.position));
        }
        let stats = &mut self.stats[index];
        stats.frames += 1;
        stats.first_ms.get_or_insert(ms);
        let end = match kind {
            MediaKind::Audio => ms + opus_frame_ms(&block.payload) as i64,
            MediaKind::Video => ms + stats.last_ms.map_or(0, |l| (ms - l).max(0)),
        };
        stats.end_ms = stats.end_ms.max(end);
        stats.last_ms = Some(stats.last_ms.map_or(ms, |l| l.max(ms)));
        let mut data = Vec::with_capacity(block.payload.len() + 6);
        data.extend(track_vint(block.track));
        data.extend(rel.to_be_bytes());
        data.push(block.flags);
        data.extend_from_slice(&block.payload);
        self.put(&MatroskaSpec::SimpleBlock(data))
    }

    fn open_cluster(&mut self, ms: i64) -> Result<(), MuxError> {
        if self.cluster.is_some() {
            self.put(&MatroskaSpec::Cluster(Master::End))?;
        }
        let timestamp = self.cluster_timestamp(ms);
        let position = self.pos() - self.segment_data;
        self.put(&MatroskaSpec::Cluster(Master::Start))?;
        self.put(&MatroskaSpec::Timestamp(timestamp.max(0) as u64))?;
        self.cluster = Some(Cluster {
            timestamp: timestamp.max(0),
            first_ms: ms,
            position,
            cued: Vec::new(),
        });
        Ok(())
    }

    /// A cluster's timestamp: the time of the block that opens it, or earlier if a track's
    /// newest block is earlier (within [`MAX_LAG_MS`]): blocks of one track come in time
    /// order, so a lagging track's next block still gets a non-negative offset. Never before
    /// the previous cluster's.
    fn cluster_timestamp(&self, ms: i64) -> i64 {
        let earliest = self
            .stats
            .iter()
            .filter_map(|s| s.last_ms)
            .filter(|l| l + MAX_LAG_MS >= ms)
            .fold(ms, i64::min);
        let previous = self.cluster.as_ref().map_or(i64::MIN, |c| c.timestamp);
        earliest.max(previous)
    }

    /// Writes the Cues, the Duration, the SeekHead and the Segment's size; returns what each
    /// track holds.
    pub fn finish(mut self) -> Result<Vec<TrackStats>, RoomError> {
        self.finish_file().map_err(|e| self.error(e))?;
        Ok(self.stats)
    }

    /// The end of the last frame of any track, in ms.
    pub fn duration_ms(&self) -> i64 {
        self.stats.iter().map(|s| s.end_ms).max().unwrap_or(0)
    }

    fn finish_file(&mut self) -> Result<(), MuxError> {
        if self.cluster.is_some() {
            self.put(&MatroskaSpec::Cluster(Master::End))?;
        }
        let cues_at = self.pos();
        let points: Vec<MatroskaSpec> = self
            .cues
            .iter()
            .map(|&(ms, track, position)| {
                MatroskaSpec::CuePoint(Master::Full(vec![
                    MatroskaSpec::CueTime(ms.max(0) as u64),
                    MatroskaSpec::CueTrackPositions(Master::Full(vec![
                        MatroskaSpec::CueTrack(track),
                        MatroskaSpec::CueClusterPosition(position),
                    ])),
                ]))
            })
            .collect();
        let has_cues = !points.is_empty();
        if has_cues {
            self.put(&MatroskaSpec::Cues(Master::Full(points)))?;
        }
        let out = match &mut self.tags.get_mut().inner {
            Sink::Stream(s) => return Ok(s.flush()?),
            Sink::File(f) => f,
        };
        out.flush()?;
        let end = self.pos();
        let mut seeks = vec![
            seek(INFO_ID, self.info.0 - self.segment_data),
            seek(TRACKS_ID, self.tracks_at - self.segment_data),
        ];
        if has_cues {
            seeks.push(seek(CUES_ID, cues_at - self.segment_data));
        }
        let patches = [
            (
                self.segment_data - SIZE_FIELD_LEN,
                sized_vint(end - self.segment_data),
            ),
            (
                self.seekhead.0,
                fill_region(
                    &[MatroskaSpec::SeekHead(Master::Full(seeks))],
                    self.seekhead.1,
                )?,
            ),
            (
                self.info.0,
                fill_region(&[self.info(self.duration_ms() as f64)], self.info.1)?,
            ),
        ];
        let Sink::File(out) = &mut self.tags.get_mut().inner else {
            return Ok(());
        };
        let file = out.get_mut();
        for (offset, bytes) in patches {
            file.seek(SeekFrom::Start(offset))
                .and_then(|_| file.write_all(&bytes))?;
        }
        Ok(file.sync_all()?)
    }
}

/// TrackEntry children the room file sets itself.
fn replaced(c: &MatroskaSpec) -> bool {
    matches!(
        c,
        MatroskaSpec::TrackNumber(_)
            | MatroskaSpec::TrackUID(_)
            | MatroskaSpec::FlagDefault(_)
            | MatroskaSpec::Language(_)
            | MatroskaSpec::LanguageIETF(_)
            | MatroskaSpec::Name(_)
    )
}

/// A track number as an EBML vint: 1 byte up to 126, 2 up to 16382, 3 up to 2^21 - 2 (a
/// number past 16382 was cut to its low 14 bits, landing on another track). Room files hold
/// at most 2 * [`super::MAX_ROOM_RECORDINGS`] tracks; larger numbers panic in debug builds.
fn track_vint(n: u64) -> Vec<u8> {
    debug_assert!(n < (1 << 21) - 1, "track number {n}");
    if n < 0x7F {
        vec![0x80 | n as u8]
    } else if n < 0x3FFF {
        ((n as u16) | 0x4000).to_be_bytes().to_vec()
    } else {
        let v = (n as u32 & 0x1F_FFFF) | 0x20_0000;
        v.to_be_bytes()[1..].to_vec()
    }
}

fn output_error(path: &Path, e: io::Error) -> RoomError {
    RoomError::Output {
        path: path.to_path_buf(),
        cause: e.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn date_utc_counts_nanoseconds_from_2001() {
        assert_eq!(date_utc(datetime!(2001-01-01 0:00 UTC)), 0);
        assert_eq!(date_utc(datetime!(2001-01-01 0:00:01 UTC)), 1_000_000_000);
        assert_eq!(date_utc(datetime!(2000-12-31 23:59:59 UTC)), -1_000_000_000);
        // 2026-12-01T00:46:33.123456789Z: 9465 days and 2793.123456789 s after the epoch.
        let t = datetime!(2026-12-01 0:46:33.123456789 UTC);
        assert_eq!(
            date_utc(t),
            (9_465 * 86_400 + 2_793) * 1_000_000_000 + 123_456_789
        );
        // The Unix time of the Matroska epoch is 978307200.
        let unix = datetime!(2026-12-01 0:46:33 UTC).unix_timestamp();
        assert_eq!(
            date_utc(datetime!(2026-12-01 0:46:33 UTC)),
            (unix - 978_307_200) * 1_000_000_000
        );
        // An offset other than UTC is the same moment.
        assert_eq!(
            date_utc(datetime!(2001-01-01 1:00 +1)),
            0,
            "01:00 at +01:00 is the epoch"
        );
    }

    #[test]
    fn track_numbers_encode_as_vints() {
        assert_eq!(track_vint(1), [0x81]);
        assert_eq!(track_vint(126), [0xFE]);
        assert_eq!(track_vint(127), [0x40, 0x7F]);
        assert_eq!(track_vint(300), [0x41, 0x2C]);
        // Past 16382: three bytes (it was cut to 14 bits: 16390 landed on track 6).
        assert_eq!(track_vint(16_390), [0x20, 0x40, 0x06]);
        assert_eq!(track_vint(16_382), [0x7F, 0xFE]);
    }
}
