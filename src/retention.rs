//! `[output] keep_days`: deletes finished recordings older than that, with their sidecars.
//!
//! A recording is finished when its sidecar says so (`ended_at` set: the daemon writes it only
//! once the file is finalized); a sidecar without `ended_at` is an open recording, or one a
//! crash left, and is never touched. Both the media file and the sidecar must also be
//! untouched for `keep_days` (by mtime), so nothing written recently goes, whatever its sidecar
//! says. Room manifests (`*.room.json`) with `ended_at` go by the same rule. Media files with
//! no sidecar are not ours to judge and stay. Only `<dir>/<room>/` is scanned, and symlinks
//! are never followed.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

/// How often the output directory is swept (and once at start).
pub const SWEEP_EVERY: Duration = Duration::from_secs(3600);

/// The media extensions a sidecar may describe.
const MEDIA: [&str; 2] = ["webm", "mkv"];

/// No time before this (2026-01-01T00:00:00Z, before this software existed) is trusted: a
/// file dated earlier was written while the clock was not set yet (1970 at boot, before
/// time-sync), and is not deleted by its age; while the clock itself reads earlier, nothing
/// is swept at all. A file dated in the future is never older than a cutoff either.
pub fn time_floor() -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(1_767_225_600)
}

/// Deletes what is older than `keep` at `now` under `dir`; returns the paths deleted. Each
/// deletion (and each failure) is logged. Crash leftovers (the hidden `.tmp` files of an
/// atomic write cut short) go by the same age.
pub fn sweep(dir: &Path, keep: Duration, now: SystemTime) -> Vec<PathBuf> {
    let mut deleted = Vec::new();
    if now < time_floor() {
        tracing::warn!("retention: the clock is not set yet; not sweeping");
        return deleted;
    }
    let cutoff = now.checked_sub(keep).unwrap_or(SystemTime::UNIX_EPOCH);
    let Ok(rooms) = fs::read_dir(dir) else {
        return deleted;
    };
    for room in rooms.flatten() {
        if !room.file_type().is_ok_and(|t| t.is_dir()) {
            continue;
        }
        let Ok(entries) = fs::read_dir(room.path()) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if !entry.file_type().is_ok_and(|t| t.is_file()) {
                continue;
            }
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if name.starts_with('.') && name.ends_with(".tmp") {
                if older(&path, cutoff) {
                    match fs::remove_file(&path) {
                        Ok(()) => {
                            tracing::info!(path = %path.display(), "retention: deleted a crash leftover");
                            deleted.push(path);
                        }
                        Err(e) => {
                            tracing::warn!(path = %path.display(), error = %e, "retention: cannot delete")
                        }
                    }
                }
                continue;
            }
            if path.extension().is_none_or(|e| e != "json") {
                continue;
            }
            for gone in sweep_one(&path, cutoff) {
                deleted.push(gone);
            }
        }
    }
    deleted
}

/// The files of one sidecar (or room manifest) that are due, deleted.
fn sweep_one(json: &Path, cutoff: SystemTime) -> Vec<PathBuf> {
    if !ended(json) || !older(json, cutoff) {
        return Vec::new();
    }
    let media: Vec<PathBuf> = MEDIA
        .iter()
        .map(|ext| json.with_extension(ext))
        .filter(|m| m.symlink_metadata().is_ok_and(|md| md.is_file()))
        .collect();
    if media.iter().any(|m| !older(m, cutoff)) {
        return Vec::new();
    }
    let mut deleted = Vec::new();
    // The media first: a sidecar left alone still describes it, never the other way round.
    for path in media.into_iter().chain([json.to_owned()]) {
        match fs::remove_file(&path) {
            Ok(()) => {
                tracing::info!(path = %path.display(), "retention: deleted (older than keep_days)");
                deleted.push(path);
            }
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "retention: cannot delete");
                break;
            }
        }
    }
    deleted
}

/// Whether the JSON file says its recording (or room) has ended.
fn ended(json: &Path) -> bool {
    let Ok(text) = fs::read_to_string(json) else {
        return false;
    };
    serde_json::from_str::<serde_json::Value>(&text)
        .ok()
        .and_then(|v| v.get("ended_at").map(|e| e.is_string()))
        .unwrap_or(false)
}

/// Whether `path` (not followed if a symlink) was last modified before `cutoff`, at a time
/// that can be trusted (not before [`time_floor`]).
fn older(path: &Path, cutoff: SystemTime) -> bool {
    path.symlink_metadata()
        .and_then(|m| m.modified())
        .is_ok_and(|t| t >= time_floor() && t < cutoff)
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: Duration = Duration::from_secs(86400);

    fn file(path: &Path, text: &str, age: Duration) {
        fs::write(path, text).unwrap();
        let f = fs::File::options().write(true).open(path).unwrap();
        f.set_modified(SystemTime::now() - age).unwrap();
    }

    /// A file dated before the time floor (written while the clock read 1970) or in the
    /// future is not deleted by age (before: the 1970 one went at the first sweep after the
    /// clock was set); a crash's `.tmp` leftover goes once it is as old as a recording would.
    #[test]
    fn untrusted_dates_are_kept_and_crash_leftovers_go() {
        let dir = std::env::temp_dir().join(format!("jr-retention-dates-{}", std::process::id()));
        let room = dir.join("1");
        fs::create_dir_all(&room).unwrap();
        let ended = r#"{"ended_at": "2026-01-01T00:00:00Z"}"#;
        let at = |path: &Path, text: &str, t: SystemTime| {
            fs::write(path, text).unwrap();
            fs::File::options()
                .write(true)
                .open(path)
                .unwrap()
                .set_modified(t)
                .unwrap();
        };
        let epoch = SystemTime::UNIX_EPOCH + DAY;
        at(&room.join("boot.webm"), "media", epoch);
        at(&room.join("boot.json"), ended, epoch);
        let future = SystemTime::now() + 400 * DAY;
        at(&room.join("ahead.webm"), "media", future);
        at(&room.join("ahead.json"), ended, future);
        file(&room.join(".x.json.0123456789abcdef.tmp"), "{", 10 * DAY);
        file(&room.join(".y.json.fedcba9876543210.tmp"), "{", DAY / 2);
        let deleted = sweep(&dir, 7 * DAY, SystemTime::now());
        assert_eq!(deleted, [room.join(".x.json.0123456789abcdef.tmp")]);
        for kept in ["boot.webm", "boot.json", "ahead.webm", "ahead.json"] {
            assert!(room.join(kept).exists(), "{kept}");
        }
        assert!(room.join(".y.json.fedcba9876543210.tmp").exists());
        fs::remove_dir_all(&dir).unwrap();
    }

    /// The cases tests/retention.rs (the daemon at start) does not cover: a finished sidecar
    /// whose media was written lately, a sidecar that is not JSON, a room manifest without
    /// `ended_at`, a symlinked room directory, and a clock before `keep`.
    #[test]
    fn keeps_what_was_written_lately_or_cannot_be_read() {
        let dir = std::env::temp_dir().join(format!("jr-retention-{}", std::process::id()));
        let room = dir.join("1234");
        fs::create_dir_all(&room).unwrap();
        let ended = r#"{"ended_at": "2026-01-01T00:00:00Z"}"#;
        let old = 10 * DAY;
        file(&room.join("gone.webm"), "media", old);
        file(&room.join("gone.json"), ended, old);
        file(&room.join("touched.webm"), "media", DAY / 2);
        file(&room.join("touched.json"), ended, old);
        file(&room.join("broken.json"), "{not json", old);
        file(&room.join("live.room.json"), r#"{"ended_at": null}"#, old);
        let elsewhere =
            std::env::temp_dir().join(format!("jr-retention-elsewhere-{}", std::process::id()));
        fs::create_dir_all(&elsewhere).unwrap();
        file(&elsewhere.join("x.json"), ended, old);
        std::os::unix::fs::symlink(&elsewhere, dir.join("linked")).unwrap();

        assert!(sweep(&dir, 7 * DAY, SystemTime::UNIX_EPOCH + DAY).is_empty());
        assert!(
            sweep(&dir, 7 * DAY, time_floor() - DAY).is_empty(),
            "a clock before the floor sweeps nothing"
        );
        let deleted = sweep(&dir, 7 * DAY, SystemTime::now());
        assert_eq!(deleted, [room.join("gone.webm"), room.join("gone.json")]);
        let mut left: Vec<String> = fs::read_dir(&room)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        assert_eq!(
            left,
            [
                "broken.json",
                "live.room.json",
                "touched.json",
                "touched.webm"
            ]
        );
        assert!(elsewhere.join("x.json").exists(), "a symlink was followed");
        fs::remove_dir_all(&dir).unwrap();
        fs::remove_dir_all(&elsewhere).unwrap();
    }
}
