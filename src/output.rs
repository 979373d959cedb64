//! Where recordings go: `<dir>/<room>/<feed>-<display>-<UTC start>.webm` (`.mkv` for
//! H.264/H.265), with a sidecar
//! `.json` beside each. Display names (and string ids) are chosen by strangers, so every path
//! component is sanitized here, and the result is checked to lie inside the output directory.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use serde::Serialize;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::ids::{FeedId, RoomId};
use crate::media::Container;

/// Longest sanitized display name, in bytes (file names are limited to 255 bytes).
const MAX_DISPLAY_BYTES: usize = 64;
/// Longest sanitized id, in bytes.
const MAX_ID_BYTES: usize = 80;

/// Makes `s` safe as one path component: letters and digits of any script, `-`, `_` and `.`
/// are kept; whitespace, separators, control and other characters become `_`; runs of `_`
/// collapse; a dot survives only after a letter, digit or `-` (no hidden files, no `..`); the result is cut to `max_bytes` on
/// a character boundary. Never empty: `fallback` stands in for nothing usable.
pub fn sanitize_component(s: &str, max_bytes: usize, fallback: &str) -> String {
    let mut out = String::with_capacity(s.len().min(max_bytes));
    for c in s.chars() {
        let c = if c.is_alphanumeric() || c == '-' || c == '.' {
            c
        } else {
            '_'
        };
        if c == '_' && out.ends_with('_') {
            continue;
        }
        // A dot only after a letter, digit or '-': no leading dots, no "..".
        if c == '.'
            && !out
                .chars()
                .next_back()
                .is_some_and(|p| p.is_alphanumeric() || p == '-')
        {
            continue;
        }
        if out.len() + c.len_utf8() > max_bytes {
            break;
        }
        out.push(c);
    }
    let trimmed = out.trim_matches('_');
    if trimmed.is_empty() || trimmed.chars().all(|c| c == '.') {
        fallback.to_owned()
    } else {
        trimmed.to_owned()
    }
}

/// The compact UTC stamp used in file names: `20261125T101500Z`.
pub fn file_stamp(t: SystemTime) -> String {
    let t = OffsetDateTime::from(t);
    format!(
        "{:04}{:02}{:02}T{:02}{:02}{:02}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

/// RFC 3339 UTC time for the sidecar.
pub fn rfc3339(t: SystemTime) -> String {
    OffsetDateTime::from(t)
        .format(&Rfc3339)
        .unwrap_or_else(|_| "unknown".into())
}

/// The two files of one recording.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordingPaths {
    /// The `.webm` or `.mkv` file.
    pub media: PathBuf,
    pub sidecar: PathBuf,
}

/// Picks the paths for a new recording and creates the room directory. Never reuses an
/// existing name (a `-2`, `-3`, ... suffix is added), and refuses any path that would not be
/// inside `dir` (e.g. a symlinked room directory pointing elsewhere).
pub fn recording_paths(
    dir: &Path,
    room: &RoomId,
    feed: &FeedId,
    display: Option<&str>,
    start: SystemTime,
    container: Container,
) -> std::io::Result<RecordingPaths> {
    let room_dir = dir.join(sanitize_component(&room.to_string(), MAX_ID_BYTES, "room"));
    std::fs::create_dir_all(&room_dir)?;
    let base = dir.canonicalize()?;
    let canonical_room = room_dir.canonicalize()?;
    if canonical_room.parent() != Some(base.as_path()) {
        return Err(std::io::Error::other(format!(
            "{} is not a directory inside {}",
            room_dir.display(),
            base.display()
        )));
    }
    let stem = format!(
        "{}-{}-{}",
        sanitize_component(&feed.to_string(), MAX_ID_BYTES, "feed"),
        sanitize_component(display.unwrap_or(""), MAX_DISPLAY_BYTES, "anonymous"),
        file_stamp(start)
    );
    for n in 1u32.. {
        let name = if n == 1 {
            stem.clone()
        } else {
            format!("{stem}-{n}")
        };
        let media = canonical_room.join(format!("{name}.{}", container.extension()));
        let sidecar = canonical_room.join(format!("{name}.json"));
        if !media.exists() && !sidecar.exists() {
            return Ok(RecordingPaths { media, sidecar });
        }
    }
    unreachable!("u32 ran out of suffixes")
}

/// The sidecar `.json` written beside each recording: at start (no `ended_at` yet) and again
/// when the recording ends.
#[derive(Debug, Clone, Serialize)]
pub struct Sidecar {
    pub room: RoomId,
    pub feed: FeedId,
    /// The display name exactly as the publisher gave it.
    pub display: Option<String>,
    pub file: String,
    pub started_at: String,
    pub ended_at: Option<String>,
    pub audio_codec: Option<String>,
    pub video_codec: Option<String>,
    /// `webm` or `matroska`.
    pub container: String,
    /// Why the recording ended (`unpublished`, `leaving`, `kicked`, `destroyed`, `hangup`,
    /// `ice-failed`, `shutdown`, `reconfigured`, `connection-lost`, `split` (the next part
    /// goes on), `error: ...`).
    pub end_reason: Option<String>,
    pub duration_ms: Option<u64>,
    pub audio_frames: Option<u64>,
    pub video_frames: Option<u64>,
    pub bytes: Option<u64>,
    /// Milliseconds from the publisher being announced to its first video keyframe written.
    pub first_keyframe_ms: Option<u64>,
    /// With `split_after`: this file's number among the parts of one publication (from 1),
    /// and the file names of the parts before and after it.
    pub part: u32,
    pub previous_part: Option<String>,
    pub next_part: Option<String>,
    /// Which clock placed each track: `capture-time`, `sender-report` or `arrival`.
    pub audio_clock: Option<String>,
    pub video_clock: Option<String>,
}

impl Sidecar {
    /// Writes the sidecar atomically (temporary file, then rename), so a reader never sees
    /// half a JSON document.
    pub fn write(&self, path: &Path) -> std::io::Result<()> {
        let tmp = path.with_extension("json.tmp");
        {
            let mut f = std::fs::File::create(&tmp)?;
            serde_json::to_writer_pretty(&mut f, self).map_err(std::io::Error::other)?;
            f.write_all(b"\n")?;
            f.sync_data()?;
        }
        std::fs::rename(&tmp, path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostile_names_are_tamed() {
        let s = |x: &str| sanitize_component(x, MAX_DISPLAY_BYTES, "anonymous");
        assert_eq!(s("Alice Smith"), "Alice_Smith");
        assert_eq!(s("../../etc/passwd"), "etc_passwd");
        assert_eq!(s(".."), "anonymous");
        assert_eq!(s("..."), "anonymous");
        assert_eq!(s(""), "anonymous");
        assert_eq!(s("/"), "anonymous");
        assert_eq!(s("a\0b\nc\u{7f}d\u{202e}e"), "a_b_c_d_e");
        assert_eq!(s("Zoë 李雷"), "Zoë_李雷");
        assert_eq!(s(".hidden"), "hidden");
        assert_eq!(s("v1.2..3"), "v1.2.3");
        assert_eq!(s("C:\\windows"), "C_windows");
        let long = s(&"é".repeat(200));
        assert!(long.len() <= MAX_DISPLAY_BYTES && long.chars().all(|c| c == 'é'));
    }

    #[test]
    fn stamp_is_utc_compact() {
        let t = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_764_065_700);
        assert_eq!(file_stamp(t), "20251125T101500Z");
        assert_eq!(rfc3339(t), "2025-11-25T10:15:00Z");
    }

    #[test]
    fn paths_stay_inside_dir_and_never_collide() {
        let dir = std::env::temp_dir().join(format!("jr-output-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let base = dir.canonicalize().unwrap();
        let t = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_764_065_700);
        let room = RoomId::from("../../tmp");
        let feed = FeedId::from(42);
        let webm = Container::Webm;
        let p = recording_paths(&dir, &room, &feed, Some("../../../x/y"), t, webm).unwrap();
        assert!(p.media.starts_with(&base), "{p:?}");
        assert_eq!(
            p.media.file_name().unwrap().to_str().unwrap(),
            "42-x_y-20251125T101500Z.webm"
        );
        assert_eq!(p.media.parent().unwrap().file_name().unwrap(), "tmp");
        std::fs::write(&p.media, b"x").unwrap();
        let p2 = recording_paths(&dir, &room, &feed, Some("../../../x/y"), t, webm).unwrap();
        assert!(
            p2.media.ends_with("42-x_y-20251125T101500Z-2.webm"),
            "{p2:?}"
        );
        std::fs::write(&p.sidecar, b"{}").unwrap();
        let mkv = Container::Matroska;
        let p3 = recording_paths(&dir, &room, &feed, Some("../../../x/y"), t, mkv).unwrap();
        assert!(
            p3.media.ends_with("42-x_y-20251125T101500Z-2.mkv"),
            "the sidecar name is taken: {p3:?}"
        );

        // A room directory that is a symlink to elsewhere is refused.
        std::os::unix::fs::symlink("/tmp", dir.join("evil")).unwrap();
        let e = recording_paths(&dir, &RoomId::from("evil"), &feed, None, t, webm).unwrap_err();
        assert!(e.to_string().contains("not a directory inside"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
