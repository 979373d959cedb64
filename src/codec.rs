//! Bitstream knowledge shared by the recorder's writer and the check tool: what a video frame
//! of H.264, H.265 or AV1 says (keyframe, coded size), how its packetized form (Annex B NAL
//! units, low-overhead OBUs) becomes a Matroska block, and the decoder configuration records
//! (avcC, hvcC, av1C) that go into a track's CodecPrivate.
//!
//! Pure: no IO and no str0m types. Everything here reads peer-supplied bytes, so nothing may
//! panic on any input: slices are read with `get`, arithmetic is checked, and every loop is
//! bounded by its input.

mod bits;
pub mod nal;

pub mod av1;
pub mod h264;
pub mod h265;
pub mod vp9;

/// What one video frame's bitstream says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FrameInfo {
    /// The frame can be decoded on its own (H.264 IDR, H.265 IRAP, AV1 key frame with its
    /// sequence header).
    pub keyframe: bool,
    /// Coded picture size from a parameter set / sequence header in this frame.
    pub size: Option<(u32, u32)>,
}

/// The video codecs a recording may hold, by their Matroska CodecID.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum VideoCodec {
    Vp8,
    Vp9,
    H264,
    H265,
    Av1,
}

impl VideoCodec {
    /// The codec of a Matroska CodecID, if it is one of ours.
    pub fn from_codec_id(id: &str) -> Option<VideoCodec> {
        Some(match id {
            "V_VP8" => VideoCodec::Vp8,
            "V_VP9" => VideoCodec::Vp9,
            "V_MPEG4/ISO/AVC" => VideoCodec::H264,
            "V_MPEGH/ISO/HEVC" => VideoCodec::H265,
            "V_AV1" => VideoCodec::Av1,
            _ => return None,
        })
    }

    /// The Matroska CodecID.
    pub fn codec_id(self) -> &'static str {
        match self {
            VideoCodec::Vp8 => "V_VP8",
            VideoCodec::Vp9 => "V_VP9",
            VideoCodec::H264 => "V_MPEG4/ISO/AVC",
            VideoCodec::H265 => "V_MPEGH/ISO/HEVC",
            VideoCodec::Av1 => "V_AV1",
        }
    }

    /// Whether frames may be stored in decode order with presentation times out of order
    /// (B-frames). WebRTC senders use none, but files from elsewhere do.
    pub fn reorders(self) -> bool {
        matches!(self, VideoCodec::H264 | VideoCodec::H265)
    }

    /// Whether Matroska needs a CodecPrivate for it (a decoder configuration record).
    pub fn needs_codec_private(self) -> bool {
        matches!(self, VideoCodec::H264 | VideoCodec::H265 | VideoCodec::Av1)
    }
}

#[cfg(test)]
mod test_streams;
