//! WebM and Matroska writing.

mod video;
pub(crate) mod vpx;
pub mod writer;
