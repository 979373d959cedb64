//! WebM and Matroska: the live writer, and block reading shared by every reader of ours.

mod frame;
pub(crate) mod matroska;
pub mod read;
mod video;
pub(crate) mod vpx;
pub mod writer;
