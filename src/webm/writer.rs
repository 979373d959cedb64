//! WebM writer (to be written).
