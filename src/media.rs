//! Media types shared by the feed subscriber (producer) and the WebM writer (consumer).

use std::fmt;

/// Audio or video.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MediaKind {
    Audio,
    Video,
}

impl fmt::Display for MediaKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            MediaKind::Audio => "audio",
            MediaKind::Video => "video",
        })
    }
}

/// A codec the recorder can write into WebM/Matroska.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Codec {
    Opus,
    Vp8,
    Vp9,
}

impl Codec {
    /// Parse the codec names Janus uses (`"opus"`, `"vp8"`, `"vp9"`), case-insensitively.
    pub fn from_janus_name(name: &str) -> Option<Codec> {
        match name.to_ascii_lowercase().as_str() {
            "opus" => Some(Codec::Opus),
            "vp8" => Some(Codec::Vp8),
            "vp9" => Some(Codec::Vp9),
            _ => None,
        }
    }

    /// Whether this is an audio or a video codec.
    pub fn kind(self) -> MediaKind {
        match self {
            Codec::Opus => MediaKind::Audio,
            Codec::Vp8 | Codec::Vp9 => MediaKind::Video,
        }
    }

    /// The Matroska `CodecID` string.
    pub fn matroska_id(self) -> &'static str {
        match self {
            Codec::Opus => "A_OPUS",
            Codec::Vp8 => "V_VP8",
            Codec::Vp9 => "V_VP9",
        }
    }
}

impl fmt::Display for Codec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Codec::Opus => "opus",
            Codec::Vp8 => "vp8",
            Codec::Vp9 => "vp9",
        })
    }
}
