//! Without the `decode` feature (the fuzz targets' build): no video decoder, ever.

use crate::codec::VideoCodec;

/// Never made: [`FrameDecoder::new`] says why.
pub(crate) enum FrameDecoder {}

impl FrameDecoder {
    pub(crate) fn new(_: VideoCodec, _: Option<&[u8]>) -> Result<FrameDecoder, String> {
        Err("this build has no video decoder (built without the `decode` feature)".into())
    }

    pub(crate) fn decode(&mut self, _: &[u8]) -> Vec<String> {
        match *self {}
    }

    pub(crate) fn finish(&mut self) -> Vec<String> {
        match *self {}
    }

    pub(crate) fn decoded(&self) -> u64 {
        match *self {}
    }
}
