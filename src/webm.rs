//! WebM (Matroska) writing.

pub mod writer;
