//! `[output] keep_days`: deletes finished recordings older than that, with their sidecars.
//!
//! A recording is finished when its sidecar says so (`ended_at` set: the daemon writes it only
//! once the file is finalized); a sidecar without `ended_at` is an open recording, or one a
//! crash left, and is never touched. Both the media file and the sidecar must also be
//! untouched for `keep_days` (by mtime), so nothing written recently goes, whatever its sidecar
//! says. Room manifests (`*.room.json`) with `ended_at` go by the same rule, and so do the
//! hidden `.*.tmp` files a crash can leave beside them (a sidecar or manifest being written).
//! Media files with no sidecar are not ours to judge and stay.
//!
//! Ages are only believed between [`DATE_FLOOR`] and now: a file dated before this version
//! existed was written while the clock was wrong (a board without a battery-backed clock
//! boots in 1970), and one dated in the future likewise; neither is deleted by age.
//!
//! Only `<dir>/<room>/` is scanned. Every room directory is opened once (without following a
//! symlink) and everything in it is looked at and deleted relative to that open directory
//! (`openat`, `fstatat`, `unlinkat`): a room directory swapped for a symlink between the
//! listing and the deletion deletes nothing elsewhere, and no symlink is ever followed.

use std::ffi::OsStr;
use std::fs::File;
use std::io::Read;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use rustix::fs::{AtFlags, Dir, FileType, Mode, OFlags};

use crate::recordings::MAX_SIDECAR_BYTES;

/// How often the output directory is swept (and once at start).
pub const SWEEP_EVERY: Duration = Duration::from_secs(3600);

/// The earliest date believed, since the Unix epoch (2026-11-01 UTC, before this version was
/// made): a file dated earlier was written while the clock was wrong, and its age says
/// nothing. Raise it now and then; it only has to be before the first recording a version can
/// see.
pub const DATE_FLOOR: Duration = Duration::from_secs(1_793_491_200);

/// The media extensions a sidecar may describe, and its audio levels (`crate::levels`).
const MEDIA: [&str; 3] = ["webm", "mkv", "levels"];

/// How a file's mtime stands against the sweep.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Age {
    /// Older than `keep`: it may go.
    Due,
    /// Written within `keep`.
    Recent,
    /// Dated before [`DATE_FLOOR`] or after now: written with a wrong clock, never due.
    Implausible,
}

/// The times a sweep judges by.
#[derive(Debug, Clone, Copy)]
struct Window {
    cutoff: SystemTime,
    now: SystemTime,
}

impl Window {
    fn age(&self, mtime: SystemTime) -> Age {
        if mtime < SystemTime::UNIX_EPOCH + DATE_FLOOR || mtime > self.now {
            Age::Implausible
        } else if mtime < self.cutoff {
            Age::Due
        } else {
            Age::Recent
        }
    }
}

/// One room directory, open: everything is read and deleted relative to it.
struct Room {
    fd: OwnedFd,
    path: PathBuf,
}

/// Deletes what is older than `keep` at `now` under `dir`; returns the paths deleted. Each
/// deletion (and each failure) is logged. A recording (or manifest) goes only if
/// `may_delete` allows each of its files (with `[storage]`: each is uploaded).
pub fn sweep(
    dir: &Path,
    keep: Duration,
    now: SystemTime,
    may_delete: &dyn Fn(&Path) -> bool,
) -> Vec<PathBuf> {
    sweep_with(dir, keep, now, may_delete, |_| {})
}

/// [`sweep`], calling `listed` with each room directory's path once its entries are listed
/// and before anything in it is deleted (where a test swaps the directory for a symlink).
fn sweep_with(
    dir: &Path,
    keep: Duration,
    now: SystemTime,
    may_delete: &dyn Fn(&Path) -> bool,
    mut listed: impl FnMut(&Path),
) -> Vec<PathBuf> {
    let window = Window {
        cutoff: now.checked_sub(keep).unwrap_or(SystemTime::UNIX_EPOCH),
        now,
    };
    let mut deleted = Vec::new();
    let mut implausible: Vec<PathBuf> = Vec::new();
    // The output directory itself is the configured path: followed if it is a link.
    let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC;
    let Ok(top) = rustix::fs::open(dir, flags, Mode::empty()) else {
        return deleted;
    };
    for name in names(&top) {
        let Ok(fd) = rustix::fs::openat(&top, &name, flags | OFlags::NOFOLLOW, Mode::empty())
        else {
            continue; // not a directory, or a symlink
        };
        let room = Room {
            fd,
            path: dir.join(&name),
        };
        let entries = names(&room.fd);
        listed(&room.path);
        for name in entries {
            let Some((FileType::RegularFile, _)) = room.stat(&name) else {
                continue;
            };
            let bytes = name.as_bytes();
            if bytes.ends_with(b".json") {
                room.sweep_json(&name, window, may_delete, &mut deleted, &mut implausible);
            } else if bytes.starts_with(b".") && bytes.ends_with(b".tmp") {
                // A crash's leftover: a sidecar or manifest that was being written.
                match room.age(&name, window) {
                    Some(Age::Due) => room.delete(&name, &mut deleted),
                    Some(Age::Implausible) => implausible.push(room.path.join(&name)),
                    _ => {}
                }
            }
        }
    }
    if let Some(first) = implausible.first() {
        tracing::warn!(
            files = implausible.len(),
            first = %first.display(),
            "retention: files dated before this version existed or in the future (a clock was \
             wrong when they were written) are not deleted by age"
        );
    }
    deleted
}

/// The names in a directory, without `.` and `..`.
fn names(dir: &impl AsFd) -> Vec<std::ffi::OsString> {
    let Ok(entries) = Dir::read_from(dir) else {
        return Vec::new();
    };
    entries
        .filter_map(Result::ok)
        .map(|e| OsStr::from_bytes(e.file_name().to_bytes()).to_owned())
        .filter(|n| n != "." && n != "..")
        .collect()
}

impl Room {
    /// The type and mtime of `name` in the room (a symlink is a symlink, not followed).
    fn stat(&self, name: &OsStr) -> Option<(FileType, SystemTime)> {
        let st = rustix::fs::statat(&self.fd, name, AtFlags::SYMLINK_NOFOLLOW).ok()?;
        let kind = FileType::from_raw_mode(st.st_mode);
        // Before 1970 is as implausible as 1970 itself: both fall below DATE_FLOOR.
        let secs = u64::try_from(st.st_mtime).unwrap_or(0);
        let nanos = u32::try_from(st.st_mtime_nsec).unwrap_or(0);
        let mtime = SystemTime::UNIX_EPOCH.checked_add(Duration::new(secs, nanos))?;
        Some((kind, mtime))
    }

    /// The age of the regular file `name`; `None` if there is none.
    fn age(&self, name: &OsStr, window: Window) -> Option<Age> {
        match self.stat(name)? {
            (FileType::RegularFile, mtime) => Some(window.age(mtime)),
            _ => None,
        }
    }

    /// The files of one sidecar (or room manifest) that are due, deleted.
    fn sweep_json(
        &self,
        json: &OsStr,
        window: Window,
        may_delete: &dyn Fn(&Path) -> bool,
        deleted: &mut Vec<PathBuf>,
        implausible: &mut Vec<PathBuf>,
    ) {
        let media: Vec<std::ffi::OsString> = MEDIA
            .iter()
            .map(|ext| Path::new(json).with_extension(ext).into_os_string())
            .filter(|m| self.age(m, window).is_some())
            .collect();
        let ages: Vec<(Age, &OsStr)> = std::iter::once(json)
            .chain(media.iter().map(|m| m.as_os_str()))
            .filter_map(|n| Some((self.age(n, window)?, n)))
            .collect();
        if let Some((_, n)) = ages.iter().find(|(a, _)| *a == Age::Implausible) {
            implausible.push(self.path.join(n));
            return;
        }
        if ages.iter().any(|(a, _)| *a != Age::Due) || !self.ended(json) {
            return;
        }
        if let Some((_, n)) = ages.iter().find(|(_, n)| !may_delete(&self.path.join(n))) {
            tracing::info!(path = %self.path.join(n).display(), "retention: kept past keep_days (not uploaded to [storage] yet)");
            return;
        }
        // The media first: a sidecar left alone still describes it, never the other way round.
        let before = deleted.len();
        for name in media.iter().map(|m| m.as_os_str()).chain([json]) {
            self.delete(name, deleted);
            if deleted.len() == before {
                break;
            }
        }
    }

    /// Whether the JSON file says its recording (or room) has ended. Read without following
    /// a symlink, and only if it is no larger than a sidecar can be.
    fn ended(&self, json: &OsStr) -> bool {
        let flags = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        let Ok(fd) = rustix::fs::openat(&self.fd, json, flags, Mode::empty()) else {
            return false;
        };
        let mut text = Vec::new();
        let file = File::from(fd);
        if file.metadata().is_ok_and(|m| m.len() > MAX_SIDECAR_BYTES)
            || file.take(MAX_SIDECAR_BYTES).read_to_end(&mut text).is_err()
        {
            return false;
        }
        serde_json::from_slice::<serde_json::Value>(&text)
            .ok()
            .and_then(|v| v.get("ended_at").map(|e| e.is_string()))
            .unwrap_or(false)
    }

    /// Deletes `name` from this room directory (whatever its path now leads to).
    fn delete(&self, name: &OsStr, deleted: &mut Vec<PathBuf>) {
        let path = self.path.join(name);
        match rustix::fs::unlinkat(&self.fd, name, AtFlags::empty()) {
            Ok(()) => {
                tracing::info!(path = %path.display(), "retention: deleted (older than keep_days)");
                deleted.push(path);
            }
            Err(e) => {
                let e = std::io::Error::from(e);
                tracing::warn!(path = %path.display(), error = %e, "retention: cannot delete");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    const DAY: Duration = Duration::from_secs(86400);

    fn file(path: &Path, text: &str, age: Duration) {
        fs::write(path, text).unwrap();
        let f = fs::File::options().write(true).open(path).unwrap();
        f.set_modified(SystemTime::now() - age).unwrap();
    }

    /// A scratch directory with an output directory (`out`) holding one room, removed when
    /// dropped.
    struct Scratch {
        dir: PathBuf,
    }

    impl Scratch {
        fn new(tag: &str) -> Scratch {
            let dir = std::env::temp_dir().join(format!("jr-{tag}-{}", std::process::id()));
            let _ = fs::remove_dir_all(&dir);
            fs::create_dir_all(dir.join("out/1234")).unwrap();
            Scratch { dir }
        }

        fn out(&self) -> PathBuf {
            self.dir.join("out")
        }

        fn room(&self) -> PathBuf {
            self.out().join("1234")
        }
    }

    impl Drop for Scratch {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.dir);
        }
    }

    /// A file dated at `mtime` exactly.
    fn dated(path: &Path, text: &str, mtime: SystemTime) {
        fs::write(path, text).unwrap();
        let f = fs::File::options().write(true).open(path).unwrap();
        f.set_modified(mtime).unwrap();
    }

    fn listing(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    const ENDED: &str = r#"{"ended_at": "2026-01-01T00:00:00Z"}"#;

    /// Files dated in 1970 (a clock without a battery, before time sync) or in the future are
    /// not deleted by age, nor is a recording one of whose files is; a plausible old one is.
    #[test]
    fn implausible_dates_are_not_deleted_by_age() {
        let s = Scratch::new("retention-dates");
        let room = s.room();
        let epoch = SystemTime::UNIX_EPOCH + Duration::from_secs(1);
        let future = SystemTime::now() + 365 * DAY;
        let old = SystemTime::now() - 10 * DAY;
        for (name, at) in [("1970", epoch), ("future", future), ("old", old)] {
            dated(&room.join(format!("{name}.webm")), "media", at);
            dated(&room.join(format!("{name}.json")), ENDED, at);
        }
        // A sidecar of plausible age whose media is dated 1970.
        dated(&room.join("mixed.webm"), "media", epoch);
        dated(&room.join("mixed.json"), ENDED, old);
        dated(&room.join(".x.json.0123456789abcdef.tmp"), "{", epoch);
        let deleted = sweep(&s.out(), 7 * DAY, SystemTime::now(), &|_| true);
        assert_eq!(deleted, [room.join("old.webm"), room.join("old.json")]);
        assert_eq!(
            listing(&room),
            [
                ".x.json.0123456789abcdef.tmp",
                "1970.json",
                "1970.webm",
                "future.json",
                "future.webm",
                "mixed.json",
                "mixed.webm"
            ]
        );
    }

    /// A room directory swapped for a symlink to another directory between the listing and
    /// the deletions: the files deleted are the listed directory's (opened before the swap),
    /// and nothing of the same names where the symlink leads.
    #[test]
    fn a_room_swapped_for_a_symlink_deletes_nothing_elsewhere() {
        let s = Scratch::new("retention-swap");
        let room = s.room();
        let elsewhere = s.dir.join("elsewhere");
        fs::create_dir_all(&elsewhere).unwrap();
        let old = SystemTime::now() - 10 * DAY;
        for dir in [&room, &elsewhere] {
            dated(&dir.join("gone.webm"), "media", old);
            dated(&dir.join("gone.json"), ENDED, old);
        }
        let moved = s.dir.join("moved");
        let deleted = sweep_with(&s.out(), 7 * DAY, SystemTime::now(), &|_| true, |listed| {
            if listed == room {
                fs::rename(&room, &moved).unwrap();
                std::os::unix::fs::symlink(&elsewhere, &room).unwrap();
            }
        });
        assert_eq!(deleted, [room.join("gone.webm"), room.join("gone.json")]);
        assert_eq!(listing(&elsewhere), ["gone.json", "gone.webm"]);
        assert!(listing(&moved).is_empty());
    }

    /// With `[storage]`, a recording goes only once each of its files is uploaded.
    #[test]
    fn files_not_uploaded_are_kept_past_keep_days() {
        let s = Scratch::new("retention-uploads");
        let room = s.room();
        let old = SystemTime::now() - 10 * DAY;
        for name in ["up", "half", "none"] {
            dated(&room.join(format!("{name}.webm")), "media", old);
            dated(&room.join(format!("{name}.json")), ENDED, old);
        }
        let uploaded = |p: &Path| {
            let name = p.file_name().unwrap().to_string_lossy();
            name.starts_with("up.") || name == "half.webm"
        };
        let deleted = sweep(&s.out(), 7 * DAY, SystemTime::now(), &uploaded);
        assert_eq!(deleted, [room.join("up.webm"), room.join("up.json")]);
        assert_eq!(
            listing(&room),
            ["half.json", "half.webm", "none.json", "none.webm"]
        );
    }

    /// Hidden `.tmp` files (a sidecar or manifest a crash left half-written) go after
    /// keep_days; recent ones, and `.tmp` files that are not hidden (not ours), stay.
    #[test]
    fn crash_leftovers_go_after_keep_days() {
        let s = Scratch::new("retention-tmp");
        let room = s.room();
        let old = SystemTime::now() - 10 * DAY;
        dated(&room.join(".a.json.0123456789abcdef.tmp"), "{", old);
        dated(
            &room.join(".b.json.fedcba9876543210.tmp"),
            "{",
            SystemTime::now(),
        );
        dated(&room.join("notes.tmp"), "mine", old);
        let deleted = sweep(&s.out(), 7 * DAY, SystemTime::now(), &|_| true);
        assert_eq!(deleted, [room.join(".a.json.0123456789abcdef.tmp")]);
        assert_eq!(
            listing(&room),
            [".b.json.fedcba9876543210.tmp", "notes.tmp"]
        );
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

        assert!(sweep(&dir, 7 * DAY, SystemTime::UNIX_EPOCH + DAY, &|_| true).is_empty());
        let deleted = sweep(&dir, 7 * DAY, SystemTime::now(), &|_| true);
        assert_eq!(deleted, [room.join("gone.webm"), room.join("gone.json")]);
        assert_eq!(
            listing(&room),
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
