//! `janus-recorder check`: proves that recordings play, without a player.
//!
//! It reads each file on its own with webm-iterable (`scan`): structure, tracks and
//! CodecPrivate, every block's time, each video frame's bitstream (`video`: VP8/VP9 frame
//! headers from `vpx`, H.264/H.265/AV1 from `crate::codec`) and every Opus packet decoded with
//! libopus (`audio`). It shares nothing with the writer but the WebM element
//! definitions, so it catches the writer's mistakes instead of repeating them.

mod audio;
mod report;
pub(crate) mod scan;
mod timeline;
mod video;
mod vpx;

use std::path::{Path, PathBuf};
use std::time::Duration;

pub use report::{FileReport, Problem, ProblemKind, SizeChange, Status, TrackReport};
pub use scan::{check_bytes, check_file};

/// Command-line arguments of `janus-recorder check`.
#[derive(Debug, clap::Args)]
pub struct CheckArgs {
    /// Recordings to check: files, or directories searched recursively for .webm/.mkv.
    #[arg(required = true)]
    pub paths: Vec<PathBuf>,
    /// One JSON object per file (an array when there are several) instead of the table.
    #[arg(long)]
    pub json: bool,
    /// Report pauses in a track longer than this many milliseconds.
    #[arg(long, default_value_t = 500)]
    pub gap_ms: u64,
    /// Draw each recording's timeline (tracks, gaps, keyframes, problems) as SVG. With several
    /// files, OUT.svg becomes OUT-NAME.svg for each (NAME: the file name without extension).
    #[arg(long, value_name = "OUT.svg")]
    pub timeline: Option<PathBuf>,
}

/// How strict the check is.
#[derive(Debug, Clone)]
pub struct CheckOptions {
    /// Pauses longer than this in one track are reported as gaps.
    pub gap: Duration,
}

impl Default for CheckOptions {
    fn default() -> Self {
        CheckOptions {
            gap: Duration::from_millis(500),
        }
    }
}

/// Runs `janus-recorder check`; returns the exit status: 0 every file plays with no problem,
/// 1 some file has problems, 2 some file is unreadable (or none was found).
pub fn run(args: &CheckArgs) -> i32 {
    let mut files = Vec::new();
    for p in &args.paths {
        if p.is_dir() {
            let before = files.len();
            find_recordings(p, &mut files);
            if files.len() == before {
                eprintln!("check: no .webm or .mkv files under {}", p.display());
                return 2;
            }
        } else {
            files.push(p.clone());
        }
    }
    let opts = CheckOptions {
        gap: Duration::from_millis(args.gap_ms),
    };
    let reports: Vec<FileReport> = files.iter().map(|f| check_file(f, &opts)).collect();
    if args.json {
        let text = if reports.len() == 1 {
            serde_json::to_string_pretty(&reports[0])
        } else {
            serde_json::to_string_pretty(&reports)
        };
        println!("{}", text.expect("reports serialize"));
    } else {
        for r in &reports {
            print!("{}", r.human());
        }
    }
    let mut status = reports
        .iter()
        .map(|r| r.status)
        .max()
        .unwrap_or(Status::Unreadable);
    if let Some(out) = &args.timeline {
        for r in &reports {
            let path = timeline_path(out, &r.file, reports.len() > 1);
            if let Err(e) = std::fs::write(&path, timeline::svg(r)) {
                eprintln!("check: cannot write {}: {e}", path.display());
                status = Status::Unreadable;
            }
        }
    }
    status.exit_code()
}

/// Every .webm/.mkv file under `dir`, sorted.
fn find_recordings(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let mut paths: Vec<PathBuf> = entries.flatten().map(|e| e.path()).collect();
    paths.sort();
    for p in paths {
        if p.is_dir() {
            find_recordings(&p, out);
        } else if p
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("webm") || e.eq_ignore_ascii_case("mkv"))
        {
            out.push(p);
        }
    }
}

/// `OUT.svg`, or `OUT-<file stem>.svg` when several files are drawn.
fn timeline_path(out: &Path, file: &Path, several: bool) -> PathBuf {
    if !several {
        return out.to_path_buf();
    }
    let stem = out.file_stem().unwrap_or_default().to_string_lossy();
    let file_stem = file.file_stem().unwrap_or_default().to_string_lossy();
    out.with_file_name(format!("{stem}-{file_stem}.svg"))
}
