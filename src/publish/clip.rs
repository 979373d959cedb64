//! The media a synthetic publisher sends: the Opus and VP8/VP9 frames of a small WebM clip,
//! read once into memory with their times and keyframe flags.

use std::fs::File;
use std::io::BufReader;
use std::path::Path;
use std::time::Duration;

use webm_iterable::WebmIterator;
use webm_iterable::matroska_spec::{Master, MatroskaSpec};

use crate::check::scan::decode_block;
use crate::media::{Codec, MediaKind};

/// Largest clip accepted (it is held in memory, once for all publishers).
const MAX_CLIP: u64 = 256 << 20;

/// One frame of the clip.
#[derive(Debug, Clone)]
pub struct ClipFrame {
    /// From the start of the clip.
    pub at: Duration,
    pub keyframe: bool,
    pub data: Vec<u8>,
}

/// One track of the clip.
#[derive(Debug, Clone)]
pub struct ClipTrack {
    pub codec: Codec,
    pub frames: Vec<ClipFrame>,
}

/// The clip: at most one audio and one video track.
#[derive(Debug, Clone)]
pub struct Clip {
    pub audio: Option<ClipTrack>,
    pub video: Option<ClipTrack>,
    /// From the first frame to the end of the last (the loop length).
    pub duration: Duration,
}

impl Clip {
    /// Reads `path`; the error names the file and the problem.
    pub fn load(path: &Path) -> Result<Clip, String> {
        let fail = |e: String| format!("{}: {e}", path.display());
        let file = File::open(path).map_err(|e| fail(e.to_string()))?;
        if file.metadata().map(|m| m.len()).unwrap_or(0) > MAX_CLIP {
            return Err(fail(format!("larger than {} MiB", MAX_CLIP >> 20)));
        }
        let mut tracks: Vec<(u64, ClipTrack)> = Vec::new();
        let mut entry: (Option<u64>, Option<String>) = (None, None);
        let mut scale_ns = 1_000_000u64;
        let mut cluster_ts = 0u64;
        let mut group: Option<(Vec<u8>, bool)> = None;
        for tag in WebmIterator::new(BufReader::new(file), &[]) {
            let tag = tag.map_err(|e| fail(format!("not a readable WebM file: {e}")))?;
            let block = match tag {
                MatroskaSpec::TimestampScale(s) if s > 0 => {
                    scale_ns = s;
                    None
                }
                MatroskaSpec::TrackEntry(Master::Start) => {
                    entry = (None, None);
                    None
                }
                MatroskaSpec::TrackNumber(n) => {
                    entry.0 = Some(n);
                    None
                }
                MatroskaSpec::CodecID(c) => {
                    entry.1 = Some(c);
                    None
                }
                MatroskaSpec::TrackEntry(Master::End) => {
                    let codec = match entry.1.as_deref() {
                        Some("A_OPUS") => Some(Codec::Opus),
                        Some("V_VP8") => Some(Codec::Vp8),
                        Some("V_VP9") => Some(Codec::Vp9),
                        _ => None,
                    };
                    if let (Some(n), Some(c)) = (entry.0, codec) {
                        let frames = Vec::new();
                        tracks.push((n, ClipTrack { codec: c, frames }));
                    }
                    None
                }
                MatroskaSpec::Timestamp(t) => {
                    cluster_ts = t;
                    None
                }
                MatroskaSpec::BlockGroup(Master::Start) => {
                    group = Some((Vec::new(), true));
                    None
                }
                MatroskaSpec::Block(d) => {
                    if let Some(g) = &mut group {
                        g.0 = d;
                    }
                    None
                }
                MatroskaSpec::ReferenceBlock(_) => {
                    if let Some(g) = &mut group {
                        g.1 = false;
                    }
                    None
                }
                MatroskaSpec::BlockGroup(Master::End) => group
                    .take()
                    .map(|(d, key)| (decode_block(&MatroskaSpec::Block(d)), Some(key))),
                tag @ MatroskaSpec::SimpleBlock(_) => Some((decode_block(&tag), None)),
                _ => None,
            };
            let Some((decoded, group_key)) = block else {
                continue;
            };
            let (number, offset, key, frames) = decoded.map_err(fail)?;
            let Some((_, track)) = tracks.iter_mut().find(|t| t.0 == number) else {
                continue;
            };
            let ticks = (cluster_ts as i64 + i64::from(offset)).max(0) as u64;
            let at = Duration::from_nanos(ticks.saturating_mul(scale_ns));
            for data in frames {
                track.frames.push(ClipFrame {
                    at,
                    keyframe: group_key.unwrap_or(key),
                    data,
                });
            }
        }
        let mut clip = Clip {
            audio: None,
            video: None,
            duration: Duration::ZERO,
        };
        for (_, track) in tracks {
            let slot = match track.codec.kind() {
                MediaKind::Audio => &mut clip.audio,
                MediaKind::Video => &mut clip.video,
            };
            if slot.is_none() && !track.frames.is_empty() {
                *slot = Some(track);
            }
        }
        if let Some(v) = &clip.video
            && !v.frames[0].keyframe
        {
            return Err(fail("the video does not start with a keyframe".into()));
        }
        // The loop length: the last frame's time plus one frame interval, over all tracks.
        clip.duration = [&clip.audio, &clip.video]
            .into_iter()
            .flatten()
            .map(|t| {
                let n = t.frames.len() as u32;
                let last = t.frames[t.frames.len() - 1].at;
                let step = if n > 1 {
                    (last - t.frames[0].at) / (n - 1)
                } else {
                    Duration::from_millis(20)
                };
                last + step
            })
            .max()
            .ok_or_else(|| fail("no Opus, VP8 or VP9 frames in it".into()))?;
        Ok(clip)
    }
}
