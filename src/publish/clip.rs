//! The media a synthetic publisher sends: the frames of a small WebM or Matroska clip (Opus;
//! VP8, VP9, AV1, H.264 or H.265), read once into memory with their times and keyframe flags,
//! in the form str0m packetizes: H.26x as Annex B with the parameter sets from CodecPrivate
//! before each keyframe, AV1 as OBUs with the sequence header in each keyframe.

use std::fs::File;
use std::io::BufReader;
use std::path::{Path, PathBuf};
use std::time::Duration;

use webm_iterable::WebmIterator;
use webm_iterable::errors::TagIteratorError;
use webm_iterable::matroska_spec::{Master, MatroskaSpec};

use crate::codec::{av1, h264, h265, nal};
use crate::media::{Codec, MediaKind};
use crate::webm::read::{BlockError, decode_block};

/// Largest clip accepted (it is held in memory, once for all publishers).
const MAX_CLIP: u64 = 256 << 20;

/// Why a clip cannot be sent; each names the file.
#[derive(Debug, thiserror::Error)]
pub enum ClipError {
    /// The file cannot be opened.
    #[error("{}: {source}", path.display())]
    Open {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// Over [`MAX_CLIP`] (the clip is held in memory).
    #[error("{}: larger than {max_mib} MiB", path.display())]
    TooLarge { path: PathBuf, max_mib: u64 },
    /// The file's elements cannot be read.
    #[error("{}: not a readable WebM file: {source}", path.display())]
    NotWebm {
        path: PathBuf,
        #[source]
        source: TagIteratorError,
    },
    /// A block's bytes cannot be decoded.
    #[error("{}: {source}", path.display())]
    Block {
        path: PathBuf,
        #[source]
        source: BlockError,
    },
    /// An H.264 track whose CodecPrivate is not an avcC (its parameter sets are needed).
    #[error("{}: H.264 track without a valid avcC", path.display())]
    NoAvcC { path: PathBuf },
    /// An H.265 track whose CodecPrivate is not an hvcC.
    #[error("{}: H.265 track without a valid hvcC", path.display())]
    NoHvcC { path: PathBuf },
    /// The video's first frame is not a keyframe, so nothing could decode it.
    #[error("{}: the video does not start with a keyframe", path.display())]
    NoLeadingKeyframe { path: PathBuf },
    #[error("{}: no Opus or video frames in it", path.display())]
    NoFrames { path: PathBuf },
}

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
    pub fn load(path: &Path) -> Result<Clip, ClipError> {
        let path_buf = || path.to_path_buf();
        let file = File::open(path).map_err(|source| ClipError::Open {
            path: path_buf(),
            source,
        })?;
        if file.metadata().map(|m| m.len()).unwrap_or(0) > MAX_CLIP {
            return Err(ClipError::TooLarge {
                path: path_buf(),
                max_mib: MAX_CLIP >> 20,
            });
        }
        let mut tracks: Vec<(u64, ClipTrack)> = Vec::new();
        let mut entry: (Option<u64>, Option<String>, Vec<u8>) = (None, None, Vec::new());
        let mut privates: Vec<(u64, Vec<u8>)> = Vec::new();
        let mut scale_ns = 1_000_000u64;
        let mut cluster_ts = 0u64;
        let mut group: Option<(Vec<u8>, bool)> = None;
        for tag in WebmIterator::new(BufReader::new(file), &[]) {
            let tag = tag.map_err(|source| ClipError::NotWebm {
                path: path_buf(),
                source,
            })?;
            let block = match tag {
                MatroskaSpec::TimestampScale(s) if s > 0 => {
                    scale_ns = s;
                    None
                }
                MatroskaSpec::TrackEntry(Master::Start) => {
                    entry = (None, None, Vec::new());
                    None
                }
                MatroskaSpec::CodecPrivate(p) => {
                    entry.2 = p;
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
                    let codec = entry.1.as_deref().and_then(Codec::from_matroska_id);
                    if let (Some(n), Some(c)) = (entry.0, codec) {
                        let frames = Vec::new();
                        tracks.push((n, ClipTrack { codec: c, frames }));
                        privates.push((n, std::mem::take(&mut entry.2)));
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
            let (number, offset, key, frames) = decoded.map_err(|source| ClipError::Block {
                path: path_buf(),
                source,
            })?;
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
        for (number, mut track) in tracks {
            let private = privates
                .iter()
                .find(|p| p.0 == number)
                .map_or(&[][..], |p| &p.1[..]);
            to_sender_format(&mut track, private, path)?;
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
            return Err(ClipError::NoLeadingKeyframe { path: path_buf() });
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
            .ok_or_else(|| ClipError::NoFrames { path: path_buf() })?;
        Ok(clip)
    }
}

/// Turns a track's Matroska blocks into what str0m packetizes (see the module doc); `path`
/// is the clip's, for the error.
fn to_sender_format(track: &mut ClipTrack, private: &[u8], path: &Path) -> Result<(), ClipError> {
    let codec = track.codec;
    let (length_size, parameter_sets): (usize, Vec<Vec<u8>>) = match codec {
        Codec::Opus | Codec::Vp8 | Codec::Vp9 => return Ok(()),
        Codec::Av1 => {
            // The configOBUs after av1C's 4 fixed bytes: the sequence header.
            let seq = private.get(4..).unwrap_or_default().to_vec();
            for f in track.frames.iter_mut().filter(|f| f.keyframe) {
                let has_seq = av1::obus(&f.data).any(|o| o.obu_type == av1::OBU_SEQUENCE_HEADER);
                if !has_seq {
                    f.data.splice(0..0, seq.iter().copied());
                }
            }
            return Ok(());
        }
        Codec::H264 => {
            let c = h264::parse_decoder_config(private).ok_or_else(|| ClipError::NoAvcC {
                path: path.to_path_buf(),
            })?;
            (c.length_size, c.sps.into_iter().chain(c.pps).collect())
        }
        Codec::H265 => {
            let c = h265::parse_decoder_config(private).ok_or_else(|| ClipError::NoHvcC {
                path: path.to_path_buf(),
            })?;
            (
                c.length_size,
                c.vps.into_iter().chain(c.sps).chain(c.pps).collect(),
            )
        }
    };
    for f in &mut track.frames {
        let mut annexb = Vec::with_capacity(f.data.len() + 64);
        let sets = if f.keyframe { &parameter_sets[..] } else { &[] };
        let units = sets
            .iter()
            .map(Vec::as_slice)
            .chain(nal::length_prefixed_nal_units(&f.data, length_size));
        for unit in units {
            annexb.extend_from_slice(&[0, 0, 0, 1]);
            annexb.extend_from_slice(unit);
        }
        f.data = annexb;
    }
    Ok(())
}
