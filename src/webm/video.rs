//! Video frames as the writer receives them (str0m's depacketized form) into Matroska blocks,
//! and what the track header needs to know about them.
//!
//! - VP8/VP9: blocks are the frames as they are; the caller's keyframe flag is trusted (str0m
//!   reads it from the payload descriptor) and a keyframe's header gives the frame size.
//! - H.264/H.265: Annex B access units become length-prefixed NAL units (4-byte lengths,
//!   access unit delimiters dropped); parameter sets stay in band too, so a resolution change
//!   mid-stream decodes. The first SPS/PPS (H.265: VPS too) make the avcC/hvcC CodecPrivate.
//! - AV1: temporal units without temporal delimiters (the Matroska AV1 mapping); the sequence
//!   header makes the av1C CodecPrivate.
//!
//! For H.26x and AV1 the keyframe flag and the frame size are read from the bitstream, so the
//! block flags agree with what a decoder sees.

use crate::codec::{FrameInfo, av1, h264, h265};
use crate::media::Codec;

use super::frame::FrameBytes;

use super::vpx;

/// One frame ready to be queued as a block.
#[derive(Debug)]
pub(super) struct Prepared {
    pub data: FrameBytes,
    pub keyframe: bool,
    /// The coded size, when this frame tells it.
    pub size: Option<(u32, u32)>,
}

/// Per-codec state: the parameter sets or sequence header seen so far.
#[derive(Debug)]
enum Stream {
    Vpx(Codec),
    H264(h264::ParameterSets),
    H265(h265::ParameterSets),
    Av1(av1::Av1Stream),
}

/// Turns one video track's frames into blocks and gathers its CodecPrivate.
#[derive(Debug)]
pub(super) struct VideoIn {
    stream: Stream,
}

impl VideoIn {
    /// `None` for an audio codec.
    pub fn new(codec: Codec) -> Option<VideoIn> {
        let stream = match codec {
            Codec::Opus => return None,
            Codec::Vp8 | Codec::Vp9 => Stream::Vpx(codec),
            Codec::H264 => Stream::H264(h264::ParameterSets::default()),
            Codec::H265 => Stream::H265(h265::ParameterSets::default()),
            Codec::Av1 => Stream::Av1(av1::Av1Stream::default()),
        };
        Some(VideoIn { stream })
    }

    /// The block for `frame`; `keyframe` is the sender's flag, used for VP8/VP9 only. A
    /// VP8/VP9 frame is its own block: taken as it is, not copied.
    pub fn prepare(&mut self, frame: FrameBytes, keyframe: bool) -> Prepared {
        let converted = |convert: fn(&[u8], &mut Vec<u8>)| {
            let mut data = Vec::with_capacity(frame.len() + 16);
            convert(&frame, &mut data);
            FrameBytes::Owned(data)
        };
        let (data, info) = match &mut self.stream {
            Stream::Vpx(codec) => {
                let info = FrameInfo {
                    keyframe,
                    size: keyframe.then(|| vpx::frame_size(*codec, &frame)).flatten(),
                };
                (frame, info)
            }
            Stream::H264(sets) => (
                converted(h264::annexb_to_length_prefixed),
                sets.add_frame(&frame),
            ),
            Stream::H265(sets) => (
                converted(h265::annexb_to_length_prefixed),
                sets.add_frame(&frame),
            ),
            Stream::Av1(stream) => (converted(av1::to_matroska_block), stream.add_frame(&frame)),
        };
        Prepared {
            data,
            keyframe: info.keyframe,
            size: info.size,
        }
    }

    /// Whether the track header needs a CodecPrivate (a decoder configuration record).
    pub fn needs_codec_private(&self) -> bool {
        !matches!(self.stream, Stream::Vpx(_))
    }

    /// The CodecPrivate as known now; `None` for VP8/VP9, or before the parameter sets came.
    pub fn codec_private(&self) -> Option<Vec<u8>> {
        match &self.stream {
            Stream::Vpx(_) => None,
            Stream::H264(sets) => sets.decoder_config(),
            Stream::H265(sets) => sets.decoder_config(),
            Stream::Av1(stream) => stream.codec_private(),
        }
    }
}
