//! The recordings of a room directory, found through their sidecars, and a streaming reader of
//! one recording's blocks.
//!
//! Only the sidecars are trusted for placing a recording on the room clock (`started_at` is
//! the UTC time of the file's time zero); a media file without a sidecar cannot be placed and
//! is skipped. The room manifest (`*.room.json`) is not needed and not read.

use std::fs::File;
use std::io::{self, BufReader};
use std::path::{Path, PathBuf};

use ebml_iterable::error::CorruptedFileError;
use serde::Deserialize;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use webm_iterable::WebmIterator;
use webm_iterable::errors::TagIteratorError;
use webm_iterable::matroska_spec::{Master, MatroskaSpec};

use super::RoomError;
use crate::ids::{FeedId, RoomId};
use crate::media::MediaKind;
use crate::webm::read::{MAX_ELEMENT, SegmentAsUnknown, element_limit, next_element};

/// Why a recording cannot be used: its sidecar or its media file (the cause in
/// [`RoomError::Input`], or a warning naming the sidecar).
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// Opening or reading the file failed.
    #[error(transparent)]
    Io(#[from] io::Error),
    #[error("not a recording's sidecar: {0}")]
    NotASidecar(#[source] serde_json::Error),
    /// The sidecar's `file` is not the name of a file beside it (a path, `..`, empty).
    #[error("the file name {0:?} is not a plain name")]
    NotAPlainName(String),
    /// The media file the sidecar names is not there.
    #[error("its recording {} is missing", .0.display())]
    MissingMedia(PathBuf),
    /// `started_at` or `ended_at` is not an RFC 3339 time.
    #[error("bad time {text:?}: {source}")]
    BadTime {
        text: String,
        #[source]
        source: time::error::Parse,
    },
    /// The media file's header (up to the first Cluster) cannot be read.
    #[error("unreadable header: {0}")]
    UnreadableHeader(#[source] TagIteratorError),
    #[error("no audio or video track")]
    NoTracks,
    /// Larger than any sidecar we write: not read (a sparse file claiming 300 MB was read
    /// whole, 314 MB of memory).
    #[error(
        "{size} bytes, larger than a sidecar can be ({} bytes)",
        crate::recordings::MAX_SIDECAR_BYTES
    )]
    TooLarge { size: u64 },
}

/// The fields of a recording's sidecar that placing it needs (see [`crate::output::Sidecar`]);
/// other fields are ignored, so sidecars from newer versions still read.
#[derive(Debug, Clone, Deserialize)]
pub struct SidecarFields {
    pub room: RoomId,
    pub feed: FeedId,
    pub display: Option<String>,
    /// The media file's name, in the sidecar's directory.
    pub file: String,
    pub started_at: String,
    #[serde(default)]
    pub ended_at: Option<String>,
    /// With `split_after`: this file's number among the parts, and the file of the part
    /// before it.
    #[serde(default)]
    pub part: Option<u32>,
    #[serde(default)]
    pub previous_part: Option<String>,
}

/// One recording of the room: its media file and where it sits on the room clock.
#[derive(Debug, Clone)]
pub struct Recording {
    pub media: PathBuf,
    pub sidecar: SidecarFields,
    /// The UTC time of the file's time zero.
    pub start: OffsetDateTime,
    /// When it ended, if the sidecar says so (a recording still going has no end yet).
    pub end: Option<OffsetDateTime>,
}

impl Recording {
    /// The display name, or the feed id for a publisher that gave none, without control
    /// characters or bidi overrides: it is written into the room file's track names and the
    /// grid's captions, and printed (a publisher's `\x1b]...` must not reach a terminal).
    pub fn who(&self) -> String {
        let display = self
            .sidecar
            .display
            .as_deref()
            .map(crate::text::strip_hazards)
            .filter(|d| !d.trim().is_empty());
        match display {
            Some(d) => d,
            None => crate::text::strip_hazards(&format!("feed {}", self.sidecar.feed)),
        }
    }
}

/// Every recording in `dir` that has a readable sidecar and media file, oldest first (ties by
/// file name). Problems with single recordings are returned as warnings, not errors; a
/// directory that cannot be read is an error.
pub fn find_recordings(dir: &Path) -> Result<(Vec<Recording>, Vec<String>), RoomError> {
    let unreadable = |source: io::Error| RoomError::Unreadable {
        path: dir.to_path_buf(),
        source,
    };
    let mut names: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(unreadable)?
        .map(|e| e.map(|e| e.path()))
        .collect::<Result<_, _>>()
        .map_err(unreadable)?;
    names.sort();
    let mut found = Vec::new();
    let mut warnings = Vec::new();
    for path in names {
        let name = path.file_name().unwrap_or_default().to_string_lossy();
        if !name.ends_with(".json") || name.ends_with(".room.json") || !path.is_file() {
            continue;
        }
        match read_sidecar(dir, &path) {
            Ok(r) => found.push(r),
            Err(why) => warnings.push(format!("{}: {why}; skipped", path.display())),
        }
    }
    found.sort_by(|a, b| a.start.cmp(&b.start).then(a.media.cmp(&b.media)));
    Ok((found, warnings))
}

fn read_sidecar(dir: &Path, path: &Path) -> Result<Recording, SourceError> {
    use std::io::Read;
    let file = File::open(path)?;
    let size = file.metadata()?.len();
    if size > crate::recordings::MAX_SIDECAR_BYTES {
        return Err(SourceError::TooLarge { size });
    }
    let mut text = String::new();
    file.take(crate::recordings::MAX_SIDECAR_BYTES)
        .read_to_string(&mut text)?;
    let sidecar: SidecarFields = serde_json::from_str(&text).map_err(SourceError::NotASidecar)?;
    // The file name comes from the sidecar: it must name a file beside it, nothing elsewhere.
    if Path::new(&sidecar.file).file_name() != Some(std::ffi::OsStr::new(&sidecar.file)) {
        return Err(SourceError::NotAPlainName(sidecar.file));
    }
    let media = dir.join(&sidecar.file);
    if !media.is_file() {
        return Err(SourceError::MissingMedia(media));
    }
    let time = |s: &str| {
        OffsetDateTime::parse(s, &Rfc3339).map_err(|source| SourceError::BadTime {
            text: s.to_string(),
            source,
        })
    };
    let start = time(&sidecar.started_at)?;
    let end = sidecar.ended_at.as_deref().map(time).transpose()?;
    Ok(Recording {
        media,
        sidecar,
        start,
        end,
    })
}

/// A track of an input file, as its TrackEntry declares it.
#[derive(Debug, Clone)]
pub struct InputTrack {
    pub number: u64,
    pub kind: MediaKind,
    /// The TrackEntry's children, copied to the output as they are (apart from the number,
    /// UID, name, language and default flag, which the room file sets).
    pub entry: Vec<MatroskaSpec>,
}

/// A track's kind, CodecID and CodecPrivate.
pub type TrackSignature = (MediaKind, Option<String>, Option<Vec<u8>>);

impl InputTrack {
    /// What must match for two files' tracks to be one track: kind, codec and CodecPrivate.
    pub fn signature(&self) -> TrackSignature {
        let codec = self.entry.iter().find_map(|c| match c {
            MatroskaSpec::CodecID(id) => Some(id.clone()),
            _ => None,
        });
        let private = self.entry.iter().find_map(|c| match c {
            MatroskaSpec::CodecPrivate(p) => Some(p.clone()),
            _ => None,
        });
        (self.kind, codec, private)
    }
}

/// One block of an input file: a SimpleBlock's bytes (a Block of a BlockGroup is turned into
/// one), with its track, time and keyframe flag read from them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InputBlock {
    pub track: u64,
    /// Milliseconds on the input file's timeline.
    pub ms: i64,
    pub keyframe: bool,
    /// The flags byte (keyframe, invisible, lacing, discardable).
    pub flags: u8,
    /// The block's bytes after its header (track, time, flags): the frame data, laced or not.
    pub payload: Vec<u8>,
}

/// Reads one recording's blocks in file order, one at a time: memory does not grow with the
/// file's length. A file cut off (a recording still going, or a crash) ends where it is cut;
/// corrupt data ends it early, with a warning.
pub struct InputReader {
    path: PathBuf,
    iter: WebmIterator<SegmentAsUnknown<BufReader<File>>>,
    /// The element limit for this file ([`element_limit`]).
    limit: usize,
    scale_ns: u64,
    cluster_ts: Option<u64>,
    group: Option<(Vec<u8>, bool)>,
    /// Why reading stopped before the end of the file, if it did.
    pub stopped: Option<String>,
    /// Its first audio and its first video track: what a recording holds. A file declaring
    /// more (thousands, from someone who wants a room file no player opens) has the others
    /// counted in `ignored_tracks`, and their blocks skipped.
    pub tracks: Vec<InputTrack>,
    pub ignored_tracks: usize,
}

impl InputReader {
    /// Opens `path` and reads its header up to the first Cluster.
    pub fn open(path: &Path) -> Result<InputReader, RoomError> {
        let fail = |cause: SourceError| RoomError::Input {
            path: path.to_path_buf(),
            cause,
        };
        let file = File::open(path).map_err(|e| fail(e.into()))?;
        let bytes = file.metadata().map_err(|e| fail(e.into()))?.len();
        // The Segment read as unknown-sized, so that every element can be held to
        // MAX_ELEMENT (see `SegmentAsUnknown`), and to the file's size: a block claiming
        // gigabytes, or more than the file holds, costs nothing.
        let source = SegmentAsUnknown::new(BufReader::with_capacity(1 << 16, file))
            .map_err(|e| fail(e.into()))?;
        let mut iter = WebmIterator::new(source, &[MatroskaSpec::TrackEntry(Master::Start)]);
        let limit = element_limit(bytes);
        iter.set_max_allowable_tag_size(Some(limit));
        let mut reader = InputReader {
            path: path.to_path_buf(),
            iter,
            limit,
            scale_ns: 1_000_000,
            cluster_ts: None,
            group: None,
            stopped: None,
            tracks: Vec::new(),
            ignored_tracks: 0,
        };
        loop {
            match next_element(&mut reader.iter, reader.limit) {
                None => break,
                Some(Err(e)) => return Err(fail(SourceError::UnreadableHeader(e))),
                Some(Ok(tag)) => match tag {
                    MatroskaSpec::TimestampScale(s) if s > 0 => reader.scale_ns = s,
                    MatroskaSpec::TrackEntry(Master::Full(children)) => {
                        if let Some(t) = input_track(children) {
                            if reader.tracks.iter().any(|o| o.kind == t.kind) {
                                reader.ignored_tracks += 1;
                            } else {
                                reader.tracks.push(t);
                            }
                        }
                    }
                    MatroskaSpec::Cluster(Master::Start) => break,
                    _ => {}
                },
            }
        }
        if reader.tracks.is_empty() {
            return Err(fail(SourceError::NoTracks));
        }
        Ok(reader)
    }

    /// The next block in file order, or `None` at the end (or where the file is cut off or
    /// corrupt: see [`InputReader::stopped`]).
    pub fn next_block(&mut self) -> Option<InputBlock> {
        if self.stopped.is_some() {
            return None;
        }
        loop {
            let tag = match next_element(&mut self.iter, self.limit)? {
                Ok(tag) => tag,
                // Over the limit only because the file is smaller than the claim: cut off too.
                Err(TagIteratorError::UnexpectedEOF { .. })
                | Err(TagIteratorError::CorruptedFileData(CorruptedFileError::InvalidTagSize {
                    size: ..=MAX_ELEMENT,
                    ..
                })) => {
                    self.stopped = Some("the file is cut off".into());
                    return None;
                }
                Err(e) => {
                    self.stopped = Some(format!(
                        "corrupt data near byte {}: {e}",
                        self.iter.last_emitted_tag_offset()
                    ));
                    return None;
                }
            };
            let block = match tag {
                MatroskaSpec::Timestamp(t) => {
                    self.cluster_ts = Some(t);
                    None
                }
                MatroskaSpec::SimpleBlock(data) => self.block(data, None),
                MatroskaSpec::BlockGroup(Master::Start) => {
                    self.group = None;
                    None
                }
                MatroskaSpec::Block(data) => {
                    self.group = Some((data, true));
                    None
                }
                MatroskaSpec::ReferenceBlock(_) => {
                    if let Some(g) = &mut self.group {
                        g.1 = false;
                    }
                    None
                }
                MatroskaSpec::BlockGroup(Master::End) => match self.group.take() {
                    Some((data, key)) => self.block(data, Some(key)),
                    None => None,
                },
                _ => None,
            };
            if block.is_some() {
                return block;
            }
            if self.stopped.is_some() {
                return None;
            }
        }
    }

    /// Reads a block's header; `group_key` is the keyframe flag of a BlockGroup's Block
    /// (whose flags byte has no keyframe bit), `None` for a SimpleBlock.
    fn block(&mut self, mut data: Vec<u8>, group_key: Option<bool>) -> Option<InputBlock> {
        let Some(cluster) = self.cluster_ts else {
            self.stopped = Some("a block outside a cluster".into());
            return None;
        };
        let Some((track, rel, flags, header)) = parse_block_header(&data) else {
            self.stopped = Some(format!("a block of {} bytes is cut short", data.len()));
            return None;
        };
        let flags = match group_key {
            Some(true) => flags | 0x80,
            Some(false) => flags & !0x80,
            None => flags,
        };
        let ticks = i128::from(cluster) + i128::from(rel);
        let ms = i64::try_from(ticks * i128::from(self.scale_ns) / 1_000_000).ok()?;
        data.drain(..header);
        Some(InputBlock {
            track,
            ms,
            keyframe: flags & 0x80 != 0,
            flags,
            payload: data,
        })
    }

    /// The file being read.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// A block's track number (an EBML vint), relative time and flags byte, and the header's
/// length; `None` if the bytes are too short.
pub fn parse_block_header(data: &[u8]) -> Option<(u64, i16, u8, usize)> {
    let first = *data.first()?;
    let len = first.leading_zeros() as usize + 1;
    if len > 8 || data.len() < len + 3 {
        return None;
    }
    let mut track = u64::from(first) & (0xFF >> len);
    for b in &data[1..len] {
        track = (track << 8) | u64::from(*b);
    }
    let rel = i16::from_be_bytes([data[len], data[len + 1]]);
    Some((track, rel, data[len + 2], len + 3))
}

fn input_track(children: Vec<MatroskaSpec>) -> Option<InputTrack> {
    let mut number = None;
    let mut kind = None;
    for c in &children {
        match c {
            MatroskaSpec::TrackNumber(n) => number = Some(*n),
            MatroskaSpec::TrackType(1) => kind = Some(MediaKind::Video),
            MatroskaSpec::TrackType(2) => kind = Some(MediaKind::Audio),
            _ => {}
        }
    }
    Some(InputTrack {
        number: number?,
        kind: kind?,
        entry: children,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A sparse sidecar claiming 300 MB is refused by its size, not read (before: read whole).
    #[test]
    fn oversized_sidecars_are_not_read() {
        let dir = std::env::temp_dir().join(format!("jr-source-big-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("x.json");
        let f = File::create(&path).unwrap();
        f.set_len(300 << 20).unwrap();
        let e = read_sidecar(&dir, &path).unwrap_err();
        assert!(matches!(e, SourceError::TooLarge { .. }), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// A display name's terminal escapes and bidi overrides never reach the room file's track
    /// names or the terminal (before: written and printed raw).
    #[test]
    fn names_lose_control_and_bidi_characters() {
        let rec = |display: Option<&str>| Recording {
            media: PathBuf::from("/r/1/x.webm"),
            sidecar: SidecarFields {
                room: RoomId::from(1),
                feed: FeedId::from(7),
                display: display.map(Into::into),
                file: "x.webm".into(),
                started_at: "2026-12-01T00:00:00Z".into(),
                ended_at: None,
                part: None,
                previous_part: None,
            },
            start: OffsetDateTime::UNIX_EPOCH,
            end: None,
        };
        assert_eq!(
            rec(Some("\u{1b}]0;owned\u{7}Bob\u{202e}gpj")).who(),
            "]0;owned Bob gpj"
        );
        assert_eq!(rec(Some("\u{1b}\u{7}")).who(), "feed 7");
        assert_eq!(rec(None).who(), "feed 7");
        assert_eq!(rec(Some("Zoë")).who(), "Zoë");
    }

    #[test]
    fn block_headers_are_read() {
        assert_eq!(
            parse_block_header(&[0x82, 0xFF, 0xFE, 0x80, 1, 2]),
            Some((2, -2, 0x80, 4))
        );
        // A two-byte track number (300).
        assert_eq!(
            parse_block_header(&[0x41, 0x2C, 0, 5, 0, 9]),
            Some((300, 5, 0, 5))
        );
        assert_eq!(parse_block_header(&[0x81, 0]), None);
        assert_eq!(parse_block_header(&[]), None);
        assert_eq!(parse_block_header(&[0, 1, 2, 3]), None);
    }
}
