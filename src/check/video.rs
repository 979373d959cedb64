//! Video tracks by codec: what their CodecPrivate must hold, and what each frame's bitstream
//! says (keyframe, size), in one place for VP8, VP9, H.264, H.265 and AV1.

use crate::codec::{FrameInfo, VideoCodec, av1, h264, h265};

use super::report::ProblemKind;
use super::vpx;

/// A problem found in a track's CodecPrivate or in a frame.
pub(crate) type Finding = (ProblemKind, String);

/// How to read one video track's frames, from its CodecPrivate.
pub(crate) struct VideoTrack {
    codec: VideoCodec,
    /// H.264/H.265: bytes of each NAL unit's length (4 when CodecPrivate cannot be read).
    length_size: usize,
    /// AV1: the sequence header from CodecPrivate.
    av1_seq: Option<av1::SequenceHeader>,
}

/// What one frame says, and what is wrong with it.
pub(crate) struct Frame {
    /// `None`: the frame cannot be read (the finding says why).
    pub info: Option<FrameInfo>,
    pub finding: Option<Finding>,
}

impl VideoTrack {
    /// Reads the CodecPrivate of a track of `codec`: the track, the picture size the
    /// CodecPrivate gives, and what is wrong with it.
    pub(crate) fn new(
        codec: VideoCodec,
        private: Option<&[u8]>,
    ) -> (VideoTrack, Option<(u32, u32)>, Option<Finding>) {
        let mut track = VideoTrack {
            codec,
            length_size: 4,
            av1_seq: None,
        };
        if !codec.needs_codec_private() {
            return (track, None, None);
        }
        let record = match codec {
            VideoCodec::H264 => "an avcC",
            VideoCodec::H265 => "an hvcC",
            _ => "an av1C with a sequence header",
        };
        let Some(private) = private else {
            let message = format!("{} needs {record} in CodecPrivate", codec.codec_id());
            return (
                track,
                None,
                Some((ProblemKind::MissingCodecPrivate, message)),
            );
        };
        let size = match codec {
            VideoCodec::H264 => h264::parse_decoder_config(private).and_then(|c| {
                track.length_size = c.length_size;
                let sps = h264::parse_sps(c.sps.first()?)?;
                Some((sps.width, sps.height))
            }),
            VideoCodec::H265 => h265::parse_decoder_config(private).and_then(|c| {
                track.length_size = c.length_size;
                let sps = h265::parse_sps(c.sps.first()?)?;
                Some((sps.width, sps.height))
            }),
            _ => av1::parse_codec_private(private).map(|seq| {
                let size = (seq.max_width, seq.max_height);
                track.av1_seq = Some(seq);
                size
            }),
        };
        let finding = size.is_none().then(|| {
            let message = format!(
                "CodecPrivate is not {record} that can be read ({} bytes)",
                private.len()
            );
            (ProblemKind::BadCodecPrivate, message)
        });
        (track, size, finding)
    }

    /// Reads one frame's bitstream.
    pub(crate) fn frame(&self, frame: &[u8]) -> Frame {
        let unreadable = |why: &str| Frame {
            info: None,
            finding: Some((ProblemKind::UndecodableVideo, why.to_string())),
        };
        let info = |info| Frame {
            info: Some(info),
            finding: None,
        };
        match self.codec {
            VideoCodec::Vp8 | VideoCodec::Vp9 => {
                let header = if self.codec == VideoCodec::Vp8 {
                    vpx::vp8(frame)
                } else {
                    // A superframe (VP9 SVC): its first frame says whether it is a keyframe,
                    // and the picture is the largest size any of its frames states.
                    let frames = crate::codec::vp9::frames(frame);
                    vpx::vp9(frames[0]).map(|mut h| {
                        if frames.len() > 1 && h.keyframe {
                            h.size = crate::codec::vp9::picture_size(frame).or(h.size);
                        }
                        h
                    })
                };
                match header {
                    Some(h) => info(h),
                    None => unreadable("the frame header cannot be read"),
                }
            }
            VideoCodec::H264 | VideoCodec::H265 => {
                if frame.is_empty() || !h264::length_prefixed_is_whole(frame, self.length_size) {
                    return unreadable("a NAL unit's length runs past the end of the block");
                }
                info(if self.codec == VideoCodec::H264 {
                    h264::frame_info_length_prefixed(frame, self.length_size)
                } else {
                    h265::frame_info_length_prefixed(frame, self.length_size)
                })
            }
            VideoCodec::Av1 => {
                let mut obus = av1::obus(frame);
                let delimiters = obus
                    .by_ref()
                    .filter(|o| o.obu_type == av1::OBU_TEMPORAL_DELIMITER)
                    .count();
                if frame.is_empty() || !obus.is_complete() {
                    return unreadable("an OBU's size runs past the end of the block");
                }
                let mut read = info(av1::frame_info(frame, self.av1_seq.as_ref()));
                if delimiters > 0 {
                    read.finding = Some((
                        ProblemKind::Av1TemporalDelimiter,
                        "the block holds a temporal delimiter OBU, which Matroska's AV1 mapping \
                         leaves out"
                            .into(),
                    ));
                }
                read
            }
        }
    }
}
