//! Where recordings go: `<dir>/<room>/<feed>-<display>-<UTC start>.webm` (`.mkv` for
//! H.264/H.265), with a sidecar
//! `.json` beside each. Display names (and string ids) are chosen by strangers, so every path
//! component is sanitized here, and the result is checked to lie inside the output directory.
//!
//! Recordings are `0640` and their directories `0750` (owner writes, group reads, others
//! nothing), set explicitly so the result does not hang on the umask of whoever started us:
//! meetings are private even when the daemon runs outside the systemd unit.

use std::fs::{File, Permissions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
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

/// Mode of recordings and sidecars.
pub const FILE_MODE: u32 = 0o640;
/// Mode of the directories we create for recordings.
pub const DIR_MODE: u32 = 0o750;

/// Creates a new file for writing with [`FILE_MODE`]. Fails if anything exists at `path`,
/// a symlink included (`O_EXCL`, and `O_NOFOLLOW` besides), so nothing planted there is
/// followed or overwritten.
pub fn create_private(path: &Path) -> std::io::Result<File> {
    let file = File::options()
        .write(true)
        .create_new(true)
        .mode(FILE_MODE)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)?;
    file.set_permissions(Permissions::from_mode(FILE_MODE))?;
    Ok(file)
}

/// Creates (or replaces) an output the operator named (`room --out`, `--grid`, `check
/// --timeline`) with [`FILE_MODE`], whatever the umask: it holds a meeting as much as the
/// recordings it comes from. An existing file keeps its inode and is truncated; its mode is
/// set to [`FILE_MODE`].
pub fn create_output(path: &Path) -> std::io::Result<File> {
    let file = File::options()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(FILE_MODE)
        .custom_flags(libc::O_CLOEXEC)
        .open(path)?;
    file.set_permissions(Permissions::from_mode(FILE_MODE))?;
    Ok(file)
}

/// Creates `dir` and its missing parents with [`DIR_MODE`]; a directory that already exists
/// keeps the mode it has (an administrator's choice).
pub fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(DIR_MODE)
        .create(dir)?;
    std::fs::set_permissions(dir, Permissions::from_mode(DIR_MODE))
}

/// Whether [`create_private_dir`] could make `dir` and files be created in it, without
/// creating anything: the nearest existing path up from `dir` must be a directory this
/// process may write to (a read-only mount counts as not writable).
pub fn check_writable_dir(dir: &Path) -> std::io::Result<()> {
    let existing = dir
        .ancestors()
        .find(|p| p.as_os_str().is_empty() || p.exists())
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    if !existing.is_dir() {
        return Err(std::io::Error::other(format!(
            "{} is not a directory",
            existing.display()
        )));
    }
    let c = std::ffi::CString::new(existing.as_os_str().as_encoded_bytes())
        .map_err(std::io::Error::other)?;
    // SAFETY: `c` is a valid NUL-terminated path for the duration of the call.
    if unsafe { libc::access(c.as_ptr(), libc::W_OK | libc::X_OK) } != 0 {
        let e = std::io::Error::last_os_error();
        return Err(std::io::Error::new(
            e.kind(),
            format!("{} is not writable: {e}", existing.display()),
        ));
    }
    Ok(())
}

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
    let canonical_room = room_dir(dir, room)?;
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

/// The room's directory under `dir` (created), canonical, and checked to lie inside `dir`
/// (a room directory that is a symlink to elsewhere is refused).
pub fn room_dir(dir: &Path, room: &RoomId) -> std::io::Result<PathBuf> {
    let room_dir = dir.join(sanitize_component(&room.to_string(), MAX_ID_BYTES, "room"));
    create_private_dir(&room_dir)?;
    let base = dir.canonicalize()?;
    let canonical_room = room_dir.canonicalize()?;
    if canonical_room.parent() != Some(base.as_path()) {
        return Err(std::io::Error::other(format!(
            "{} is not a directory inside {}",
            room_dir.display(),
            base.display()
        )));
    }
    Ok(canonical_room)
}

/// Writes `value` as JSON to `path` atomically (temporary file, then rename), so a reader,
/// or what is left after a crash, never holds half a document. The temporary file has an
/// unpredictable name and is created new, so nothing planted in the directory (a symlink to
/// another file) is written through.
pub fn write_json_atomically(path: &Path, value: &impl Serialize) -> std::io::Result<()> {
    let tmp = temporary_beside(path);
    let written = (|| {
        // Serialised first, then one write: serde_json writes token by token, which straight
        // into the file was a system call per token (thousands for a manifest of 100
        // recordings, 10% of the daemon's CPU while a room of 50 started).
        let mut json = serde_json::to_vec_pretty(value).map_err(std::io::Error::other)?;
        json.push(b'\n');
        let mut f = create_private(&tmp)?;
        f.write_all(&json)?;
        f.sync_data()?;
        std::fs::rename(&tmp, path)?;
        // The rename is durable only once the directory is.
        path.parent().map_or(Ok(()), sync_dir)
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written
}

/// Makes `dir`'s entries durable (a file created or renamed in it): fsync on the directory.
pub fn sync_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}

/// The sidecar `.json` written beside each recording: at start (no `ended_at` yet) and again
/// when the recording ends.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
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
    /// The first file of a subscription made again after a failure (ICE, DTLS, a subscribe
    /// timeout, a write error) while the publisher stayed: why the last one ended. Its
    /// `previous_part` is the last file before the failure.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resumed_after: Option<String>,
    /// In a fleet (`[cluster]`): the instance that recorded this file, and its claim's
    /// fencing token (the etcd revision of the room key: larger for each new claim).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recorded_by: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fencing_token: Option<i64>,
    /// Which clock placed each track: `capture-time`, `sender-report` or `arrival`.
    pub audio_clock: Option<String>,
    pub video_clock: Option<String>,
}

impl Sidecar {
    /// The sidecar of a recording just begun at `started_at` into `media`: nothing known yet
    /// but who, where and when (and it is the first part).
    pub fn begun(
        room: RoomId,
        feed: FeedId,
        display: Option<String>,
        media: &Path,
        started_at: String,
        container: String,
    ) -> Sidecar {
        Sidecar {
            room,
            feed,
            display,
            file: media
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
            started_at,
            ended_at: None,
            audio_codec: None,
            video_codec: None,
            container,
            end_reason: None,
            duration_ms: None,
            audio_frames: None,
            video_frames: None,
            bytes: None,
            first_keyframe_ms: None,
            part: 1,
            previous_part: None,
            next_part: None,
            resumed_after: None,
            recorded_by: None,
            fencing_token: None,
            audio_clock: None,
            video_clock: None,
        }
    }

    /// Writes the sidecar atomically ([`write_json_atomically`]).
    pub fn write(&self, path: &Path) -> std::io::Result<()> {
        write_json_atomically(path, self)
    }
}

/// A hidden name beside `path` with 64 unpredictable bits: `std`'s `RandomState` is keyed
/// from the OS's randomness once per process and stepped for each new instance.
fn temporary_beside(path: &Path) -> PathBuf {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    let name = path
        .file_name()
        .map_or_else(|| "sidecar".into(), |n| n.to_string_lossy().into_owned());
    path.with_file_name(format!(".{name}.{:016x}.tmp", h.finish()))
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

    fn scratch(tag: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("jr-output-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn mode(p: &Path) -> u32 {
        std::fs::symlink_metadata(p).unwrap().permissions().mode() & 0o7777
    }

    fn sidecar() -> Sidecar {
        Sidecar::begun(
            RoomId::from(1234),
            FeedId::from(42),
            Some("Alice".into()),
            Path::new("x.webm"),
            "2026-12-01T00:00:00Z".into(),
            "webm".into(),
        )
    }

    #[test]
    fn a_symlink_planted_for_the_sidecar_is_not_followed() {
        let dir = scratch("symlink");
        let victim = dir.join("victim");
        std::fs::write(&victim, b"precious").unwrap();
        let path = dir.join("42-Alice.json");
        // Every name a predictable scheme would use.
        for planted in ["42-Alice.json.tmp", ".42-Alice.json.tmp", "42-Alice.tmp"] {
            std::os::unix::fs::symlink(&victim, dir.join(planted)).unwrap();
        }
        sidecar().write(&path).unwrap();
        assert_eq!(std::fs::read(&victim).unwrap(), b"precious");
        assert!(std::fs::read_to_string(&path).unwrap().contains("Alice"));
        assert_eq!(mode(&path), FILE_MODE);
        // Nothing left behind but what was there and the sidecar.
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 5);
        // create_private refuses a symlink (dangling or not) and an existing file.
        let dangling = dir.join("dangling");
        std::os::unix::fs::symlink(dir.join("nowhere"), &dangling).unwrap();
        assert!(create_private(&dangling).is_err());
        assert!(!dir.join("nowhere").exists());
        assert!(create_private(&victim).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn recordings_are_0640_in_0750_directories() {
        let dir = scratch("modes");
        let out = dir.join("out");
        create_private_dir(&out).unwrap();
        assert_eq!(mode(&out), DIR_MODE);
        let t = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_764_065_700);
        let p = recording_paths(
            &out,
            &RoomId::from(7),
            &FeedId::from(1),
            None,
            t,
            Container::Webm,
        )
        .unwrap();
        assert_eq!(mode(p.media.parent().unwrap()), DIR_MODE);
        drop(create_private(&p.media).unwrap());
        assert_eq!(mode(&p.media), FILE_MODE);
        sidecar().write(&p.sidecar).unwrap();
        assert_eq!(mode(&p.sidecar), FILE_MODE);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
