//! A frame's bytes on their way into a file, shared by the writer and the video converter
//! (`video`), so neither depends on the other for it.

use std::sync::Arc;

/// A frame's bytes as the writer takes them: str0m's shared buffer kept as it is (VP8, VP9
/// and Opus frames are their own blocks), or a buffer made for the block (H.26x and AV1 are
/// converted). Taking them without a copy matters: every byte recorded passed through here.
#[derive(Debug, Clone)]
pub enum FrameBytes {
    Shared(Arc<[u8]>),
    Owned(Vec<u8>),
}

impl std::ops::Deref for FrameBytes {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match self {
            FrameBytes::Shared(b) => b,
            FrameBytes::Owned(b) => b,
        }
    }
}

impl From<Arc<[u8]>> for FrameBytes {
    fn from(b: Arc<[u8]>) -> FrameBytes {
        FrameBytes::Shared(b)
    }
}

impl From<Vec<u8>> for FrameBytes {
    fn from(b: Vec<u8>) -> FrameBytes {
        FrameBytes::Owned(b)
    }
}

impl From<&[u8]> for FrameBytes {
    fn from(b: &[u8]) -> FrameBytes {
        FrameBytes::Owned(b.to_vec())
    }
}

impl From<&Vec<u8>> for FrameBytes {
    fn from(b: &Vec<u8>) -> FrameBytes {
        FrameBytes::Owned(b.clone())
    }
}
