//! WebM (Matroska) writing.

mod vpx;
pub mod writer;
