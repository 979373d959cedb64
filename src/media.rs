//! Media types shared by the feed subscriber (producer) and the writer (consumer).

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

/// A codec the recorder can write: every codec Janus's VideoRoom forwards but G.711/G.722
/// and multiopus.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Codec {
    Opus,
    Vp8,
    Vp9,
    Av1,
    H264,
    H265,
}

impl Codec {
    /// Every codec, for tables and tests.
    pub const ALL: [Codec; 6] = [
        Codec::Opus,
        Codec::Vp8,
        Codec::Vp9,
        Codec::Av1,
        Codec::H264,
        Codec::H265,
    ];

    /// Parse the codec names Janus uses (`"opus"`, `"vp8"`, `"vp9"`, `"av1"`, `"h264"`,
    /// `"h265"`), case-insensitively.
    pub fn from_janus_name(name: &str) -> Option<Codec> {
        Codec::ALL
            .into_iter()
            .find(|c| c.janus_name().eq_ignore_ascii_case(name))
    }

    /// The name Janus uses for it (also how the sidecar names it).
    pub fn janus_name(self) -> &'static str {
        match self {
            Codec::Opus => "opus",
            Codec::Vp8 => "vp8",
            Codec::Vp9 => "vp9",
            Codec::Av1 => "av1",
            Codec::H264 => "h264",
            Codec::H265 => "h265",
        }
    }

    /// Whether this is an audio or a video codec.
    pub fn kind(self) -> MediaKind {
        match self {
            Codec::Opus => MediaKind::Audio,
            _ => MediaKind::Video,
        }
    }

    /// The Matroska `CodecID` string.
    pub fn matroska_id(self) -> &'static str {
        match self {
            Codec::Opus => "A_OPUS",
            Codec::Vp8 => "V_VP8",
            Codec::Vp9 => "V_VP9",
            Codec::Av1 => "V_AV1",
            Codec::H264 => "V_MPEG4/ISO/AVC",
            Codec::H265 => "V_MPEGH/ISO/HEVC",
        }
    }

    /// The codec of a Matroska `CodecID`, if it is one of ours.
    pub fn from_matroska_id(id: &str) -> Option<Codec> {
        Codec::ALL.into_iter().find(|c| c.matroska_id() == id)
    }

    /// Which container can hold it: WebM admits only Opus/Vorbis with VP8/VP9/AV1.
    pub fn container(self) -> Container {
        match self {
            Codec::H264 | Codec::H265 => Container::Matroska,
            _ => Container::Webm,
        }
    }

    /// The one mapping from str0m's codecs to ours.
    pub fn from_str0m(codec: str0m::format::Codec) -> Option<Codec> {
        use str0m::format::Codec as S;
        match codec {
            S::Opus => Some(Codec::Opus),
            S::Vp8 => Some(Codec::Vp8),
            S::Vp9 => Some(Codec::Vp9),
            S::Av1 => Some(Codec::Av1),
            S::H264 => Some(Codec::H264),
            S::H265 => Some(Codec::H265),
            _ => None,
        }
    }

    /// The one mapping from ours to str0m's.
    pub fn to_str0m(self) -> str0m::format::Codec {
        use str0m::format::Codec as S;
        match self {
            Codec::Opus => S::Opus,
            Codec::Vp8 => S::Vp8,
            Codec::Vp9 => S::Vp9,
            Codec::Av1 => S::Av1,
            Codec::H264 => S::H264,
            Codec::H265 => S::H265,
        }
    }
}

impl fmt::Display for Codec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.janus_name())
    }
}

/// The file format of a recording: WebM where the codecs allow it, else Matroska.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Container {
    Webm,
    Matroska,
}

impl Container {
    /// The container for a file holding these codecs.
    pub fn for_codecs(codecs: impl IntoIterator<Item = Codec>) -> Container {
        if codecs
            .into_iter()
            .any(|c| c.container() == Container::Matroska)
        {
            Container::Matroska
        } else {
            Container::Webm
        }
    }

    /// The EBML DocType.
    pub fn doc_type(self) -> &'static str {
        match self {
            Container::Webm => "webm",
            Container::Matroska => "matroska",
        }
    }

    /// The file name extension, without the dot.
    pub fn extension(self) -> &'static str {
        match self {
            Container::Webm => "webm",
            Container::Matroska => "mkv",
        }
    }
}

impl fmt::Display for Container {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.doc_type())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_containers_follow_the_codecs() {
        for c in Codec::ALL {
            assert_eq!(Codec::from_janus_name(c.janus_name()), Some(c));
            assert_eq!(
                Codec::from_janus_name(&c.janus_name().to_uppercase()),
                Some(c)
            );
            assert_eq!(Codec::from_str0m(c.to_str0m()), Some(c));
            assert_eq!(Codec::from_matroska_id(c.matroska_id()), Some(c));
        }
        assert_eq!(Codec::from_janus_name("pcmu"), None);
        let webm = [Codec::Opus, Codec::Vp9];
        assert_eq!(Container::for_codecs(webm), Container::Webm);
        assert_eq!(
            Container::for_codecs([Codec::Opus, Codec::Av1]),
            Container::Webm
        );
        let mkv = [Codec::Opus, Codec::H264];
        assert_eq!(Container::for_codecs(mkv).extension(), "mkv");
        assert_eq!(Container::for_codecs([Codec::H265]), Container::Matroska);
    }
}
