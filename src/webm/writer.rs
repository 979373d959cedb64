//! WebM writer: placeholder with the agreed API until the real one is merged.
#![allow(unused)]
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::media::Codec;

pub struct TrackSetup {
    pub audio: Option<Codec>,
    pub video: Option<Codec>,
}
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct WriteError(String);
pub struct WriteSummary {
    pub duration: Duration,
    pub audio_frames: u64,
    pub video_frames: u64,
    pub bytes: u64,
}
pub struct WebmWriter {
    path: PathBuf,
}
impl WebmWriter {
    pub fn create(path: &Path, tracks: TrackSetup) -> Result<WebmWriter, WriteError> {
        Err(WriteError("not written yet".into()))
    }
    pub fn write_audio(&mut self, ts: Duration, data: &[u8]) -> Result<(), WriteError> {
        unreachable!()
    }
    pub fn write_video(
        &mut self,
        ts: Duration,
        keyframe: bool,
        data: &[u8],
    ) -> Result<(), WriteError> {
        unreachable!()
    }
    pub fn flush(&mut self) -> Result<(), WriteError> {
        unreachable!()
    }
    pub fn finalize(self) -> Result<WriteSummary, WriteError> {
        unreachable!()
    }
    pub fn path(&self) -> &Path {
        &self.path
    }
}
