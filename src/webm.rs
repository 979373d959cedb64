//! WebM and Matroska: the live writer, and block reading shared by every reader of ours.

mod frame;
pub mod read;
mod video;
pub(crate) mod vpx;
pub mod writer;
