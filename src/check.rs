//! `janus-recorder check`: proves that recordings play (to be written).

use std::path::PathBuf;

/// Command-line arguments of `janus-recorder check`.
#[derive(Debug, clap::Args)]
pub struct CheckArgs {
    /// Recordings to check: files, or directories searched recursively for .webm/.mkv.
    #[arg(required = true)]
    pub paths: Vec<PathBuf>,
}

/// Runs `janus-recorder check`; returns the process exit status (0 good, 1 problems, 2 unreadable).
pub fn run(_args: &CheckArgs) -> i32 {
    eprintln!("check: not implemented yet");
    2
}
