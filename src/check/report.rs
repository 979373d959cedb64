//! What the check tool finds about one file, as JSON and as a short human table.

use std::fmt::Write as _;
use std::path::PathBuf;

use serde::Serialize;

/// The verdict on one file; ordered from best to worst.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Plays, and nothing is wrong with it.
    Ok,
    /// Plays, with problems listed.
    Problems,
    /// Nothing in it can be played.
    Unreadable,
}

impl Status {
    /// The process exit status for this verdict.
    pub fn exit_code(self) -> i32 {
        match self {
            Status::Ok => 0,
            Status::Problems => 1,
            Status::Unreadable => 2,
        }
    }
}

/// Kinds of problems, as they appear in JSON (`snake_case`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ProblemKind {
    Empty,
    NotWebm,
    /// Cut off: a crash while writing, a partial copy, or still being written.
    Truncated,
    /// Whole, but written live (unknown-size Segment): no Cues or Duration to seek by.
    NotFinalized,
    CorruptData,
    MissingDuration,
    MissingCues,
    NoTracks,
    NoFrames,
    UnknownCodec,
    MissingCodecPrivate,
    BadCodecPrivate,
    TimestampBackwards,
    Gap,
    FirstVideoNotKeyframe,
    KeyframeFlagMismatch,
    DecodeError,
    UndecodableVideo,
    /// AV1 blocks must not hold temporal delimiter OBUs (Matroska's AV1 mapping).
    Av1TemporalDelimiter,
    /// More tracks than the check reads (64).
    TooManyTracks,
    /// A second track with the number of an earlier one.
    DuplicateTrack,
    /// A block time that does not fit (a huge TimestampScale or cluster Timestamp).
    BadTimestamp,
}

/// One thing wrong with a file, and where.
#[derive(Debug, Clone, Serialize)]
pub struct Problem {
    pub kind: ProblemKind,
    /// Milliseconds from the start of the file, if the problem has a place in time.
    pub at_ms: Option<i64>,
    pub track: Option<u64>,
    pub message: String,
    /// How long it lasts, for problems that span time (gaps).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub length_ms: Option<u64>,
}

/// A change of the video frame size, from a keyframe's header.
#[derive(Debug, Clone, Serialize)]
pub struct SizeChange {
    pub at_ms: i64,
    pub width: u32,
    pub height: u32,
}

/// What was found in one track.
#[derive(Debug, Clone, Serialize)]
pub struct TrackReport {
    pub number: u64,
    /// "audio", "video" or "other".
    pub kind: String,
    /// The Matroska codec id, e.g. `A_OPUS`, `V_VP8`.
    pub codec: String,
    pub codec_private_bytes: usize,
    pub frames: u64,
    pub keyframes: u64,
    pub first_ms: Option<i64>,
    pub last_ms: Option<i64>,
    /// From the first block to the end of the last one.
    pub duration_ms: u64,
    pub fps: Option<f64>,
    pub bitrate_kbps: Option<f64>,
    pub width: Option<u32>,
    pub height: Option<u32>,
    /// Video: the first 1,000 size changes.
    pub size_changes: Vec<SizeChange>,
    /// Video: all size changes, listed or not.
    pub size_change_count: u64,
    /// Video: when the keyframes are (the first 10,000).
    pub keyframe_ms: Vec<i64>,
    /// Video with `--decode`: pictures the decoder gave (frames a codec never shows, such as
    /// VP8's alternate references, are not counted).
    pub decoded_frames: Option<u64>,
    /// Audio: packets libopus refused.
    pub decode_errors: u64,
    /// Audio: length of what libopus decoded.
    pub decoded_ms: Option<u64>,
    /// Audio: share of decoded 20 ms pieces quieter than -60 dBFS.
    pub silent_share: Option<f64>,
}

/// Everything the check tool says about one file.
#[derive(Debug, Clone, Serialize)]
pub struct FileReport {
    pub file: PathBuf,
    pub playable: bool,
    pub status: Status,
    /// The Segment's Duration if written, else the end of the last block.
    pub duration_ms: Option<u64>,
    /// How much of the file plays (up to the last readable block).
    pub playable_ms: Option<u64>,
    pub bytes: u64,
    /// Whether the writer finished the file (Duration and Cues present, Segment complete).
    pub finalized: bool,
    pub tracks: Vec<TrackReport>,
    /// First video block minus first audio block, in ms.
    pub av_offset_ms: Option<i64>,
    /// Video track duration minus audio track duration, in ms.
    pub av_duration_diff_ms: Option<i64>,
    /// Whether video frames were decoded (`--decode`); if not, video was checked by its
    /// headers only.
    pub video_decoded: bool,
    pub problems: Vec<Problem>,
}

impl FileReport {
    /// 0 good, 1 playable with problems, 2 unreadable.
    pub fn exit_status(&self) -> i32 {
        self.status.exit_code()
    }

    /// A short, readable table.
    pub fn human(&self) -> String {
        let mut s = String::new();
        let verdict = match self.status {
            Status::Ok => "OK",
            Status::Problems => "PROBLEMS",
            Status::Unreadable => "UNREADABLE",
        };
        let _ = write!(
            s,
            "{}  {verdict}",
            printable(&self.file.display().to_string())
        );
        if let Some(d) = self.duration_ms {
            let _ = write!(s, "  {}", clock(d as i64));
        }
        if !self.finalized && self.playable {
            let _ = write!(
                s,
                "  (not finalized: {} playable)",
                clock(self.playable_ms.unwrap_or(0) as i64)
            );
        }
        s.push('\n');
        for t in &self.tracks {
            let _ = write!(
                s,
                "  track {} {:<5} {:<8} {:>6} frames  {:>8}",
                t.number,
                t.kind,
                printable(&t.codec),
                t.frames,
                format!("{:.2}s", t.duration_ms as f64 / 1000.0)
            );
            if t.kind == "video" {
                let _ = write!(s, "  {} keyframes", t.keyframes);
                if let Some(fps) = t.fps {
                    let _ = write!(s, "  {fps:.1} fps");
                }
                if let (Some(w), Some(h)) = (t.width, t.height) {
                    let _ = write!(s, "  {w}x{h}");
                }
                for c in &t.size_changes {
                    let _ = write!(s, ", {}x{} at {}", c.width, c.height, clock(c.at_ms));
                }
                if let Some(n) = t.decoded_frames {
                    let _ = write!(s, "  decoded {n} pictures");
                }
            }
            if let Some(d) = t.decoded_ms {
                let _ = write!(s, "  decoded {:.2}s", d as f64 / 1000.0);
                if let Some(q) = t.silent_share {
                    let _ = write!(s, ", silent {:.0}%", q * 100.0);
                }
            }
            if let Some(b) = t.bitrate_kbps {
                let _ = write!(s, "  {b:.0} kbit/s");
            }
            s.push('\n');
        }
        if !self.video_decoded && self.tracks.iter().any(|t| t.kind == "video") {
            s.push_str("  video checked by its headers only (--decode decodes every frame)\n");
        }
        if let Some(o) = self.av_offset_ms {
            let _ = write!(s, "  A/V offset {o:+} ms");
            if let Some(d) = self.av_duration_diff_ms {
                let _ = write!(s, ", video minus audio duration {d:+} ms");
            }
            s.push('\n');
        }
        for p in &self.problems {
            let at = p.at_ms.map(clock).unwrap_or_else(|| "-".into());
            let _ = writeln!(s, "  ! {at:>9} {:?}: {}", p.kind, printable(&p.message));
        }
        s
    }
}

/// `text` safe for a terminal: control characters (escape sequences could rewrite the
/// screen or the window title) and bidirectional overrides (which reorder what is shown)
/// become `\u{..}` escapes. The file names and codec ids come from the files checked.
pub fn printable(text: &str) -> std::borrow::Cow<'_, str> {
    let unsafe_char = |c: char| {
        c.is_control()
            || matches!(c, '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
    };
    if !text.chars().any(unsafe_char) {
        return text.into();
    }
    text.chars()
        .map(|c| {
            if unsafe_char(c) {
                c.escape_unicode().to_string()
            } else {
                c.to_string()
            }
        })
        .collect::<String>()
        .into()
}

/// `m:ss.s` for a time in ms.
pub fn clock(ms: i64) -> String {
    let sign = if ms < 0 { "-" } else { "" };
    let ms = ms.unsigned_abs();
    format!(
        "{sign}{}:{:04.1}",
        ms / 60_000,
        (ms % 60_000) as f64 / 1000.0
    )
}
