//! `janus-recorder check`: proves that recordings play, without a player.
//!
//! It reads each file on its own with webm-iterable (`scan`): structure, tracks and
//! CodecPrivate, every block's time, each video frame's bitstream (`video`: VP8/VP9 frame
//! headers from `vpx`, H.264/H.265/AV1 from `crate::codec`) and every Opus packet decoded with
//! libopus (`audio`). It shares nothing with the writer but the WebM element definitions and
//! the codec module's bitstream readers (tested against ffmpeg on their own), so it catches
//! the writer's mistakes instead of repeating them.

mod audio;
pub mod decoder;
mod report;
pub(crate) mod scan;
pub mod timeline;
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
    /// Decode every video frame with a real decoder (libavcodec: VP8, VP9, H.264, H.265;
    /// libdav1d: AV1) and report the frames that fail, with their times. Without it, video is
    /// checked by its headers only (frame headers, NAL units, OBUs).
    #[arg(long)]
    pub decode: bool,
}

/// How strict the check is.
#[derive(Debug, Clone)]
pub struct CheckOptions {
    /// Pauses longer than this in one track are reported as gaps.
    pub gap: Duration,
    /// Decode every Opus packet with libopus (the default). Off, the audio is checked by
    /// its structure and times only: the daemon's verdict on a file it just finished
    /// (`recording_finished`) must come within a second, and decoding an hour of Opus takes
    /// tens of seconds.
    pub decode_audio: bool,
    /// Decode every video frame with this program (`check --decode`: [`decoder::program`]);
    /// `None`, video is checked by its headers.
    pub video_decoder: Option<PathBuf>,
}

impl Default for CheckOptions {
    fn default() -> Self {
        CheckOptions {
            gap: Duration::from_millis(500),
            decode_audio: true,
            video_decoder: None,
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
        video_decoder: args.decode.then(decoder::program),
        ..CheckOptions::default()
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
            let written = crate::output::create_output(&path)
                .and_then(|mut f| std::io::Write::write_all(&mut f, timeline::svg(r).as_bytes()));
            if let Err(e) = written {
                eprintln!("check: cannot write {}: {e}", path.display());
                status = Status::Unreadable;
            }
        }
    }
    status.exit_code()
}

/// Every .webm/.mkv regular file under `dir`, sorted. Symlinks to files count; symlinks to
/// directories are not followed (no loops), and FIFOs, sockets and devices are skipped (opening
/// a FIFO blocks).
fn find_recordings(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let mut entries: Vec<std::fs::DirEntry> = entries.flatten().collect();
    entries.sort_by_key(std::fs::DirEntry::path);
    for entry in entries {
        let path = entry.path();
        // DirEntry::file_type does not follow symlinks; metadata does, for links to files.
        let Ok(kind) = entry.file_type() else {
            continue;
        };
        if kind.is_dir() {
            find_recordings(&path, out);
        } else if (kind.is_file()
            || kind.is_symlink() && path.metadata().is_ok_and(|m| m.is_file()))
            && path
                .extension()
                .is_some_and(|e| e.eq_ignore_ascii_case("webm") || e.eq_ignore_ascii_case("mkv"))
        {
            out.push(path);
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;
    use std::sync::mpsc;

    fn fifo(path: &Path) {
        let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0, "mkfifo");
    }

    /// Runs `f` on a thread; fails the test if it takes more than 10 s (a hang).
    fn within_10s<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(f());
        });
        rx.recv_timeout(Duration::from_secs(10)).expect("it hangs")
    }

    /// Directories: regular files only (no FIFO, which would block the open), and symlinked
    /// directories not followed (a loop would list the same files again and again).
    #[test]
    fn the_walk_takes_regular_files_and_follows_no_directory_links() {
        let dir = std::env::temp_dir().join(format!("jr-check-walk-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("sub")).unwrap();
        std::fs::write(dir.join("a.webm"), b"x").unwrap();
        std::fs::write(dir.join("sub/b.MKV"), b"x").unwrap();
        std::fs::write(dir.join("notes.txt"), b"x").unwrap();
        symlink(&dir, dir.join("sub/loop")).unwrap();
        symlink(dir.join("a.webm"), dir.join("link.webm")).unwrap();
        fifo(&dir.join("pipe.webm"));
        let walked = dir.clone();
        let found = within_10s(move || {
            let mut found = Vec::new();
            find_recordings(&walked, &mut found);
            found
        });
        assert_eq!(
            found,
            [
                dir.join("a.webm"),
                dir.join("link.webm"),
                dir.join("sub/b.MKV")
            ]
        );
        // A FIFO named on the command line is refused, not opened.
        let pipe = dir.join("pipe.webm");
        let r = within_10s(move || check_file(&pipe, &CheckOptions::default()));
        assert_eq!(r.status, Status::Unreadable);
        assert!(
            r.problems[0].message.contains("not a regular file"),
            "{r:?}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
