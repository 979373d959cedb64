//! Service glue: logging, signals, the top-level run loop (to be written).

use std::path::Path;

/// Runs the recorder service until SIGTERM/SIGINT; returns the process exit status.
pub fn run(_config: &Path) -> i32 {
    2
}
