//! The recordings on disk, as the API lists them: every sidecar under `<dir>/<room>/`, live
//! ones with their duration and bytes so far. Each has an id, `<room directory>~<file stem>`
//! (both parts are sanitized names, so an id never names a path outside the output
//! directory; `~` never occurs in them).
//!
//! The index is read again at most once per [`REFRESH_EVERY`], and then only the sidecars
//! that changed are parsed: a client asking many times a second costs a directory listing a
//! second, not a parse of every sidecar per request.

use std::collections::HashMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use serde::Serialize;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::check::{FileReport, Status};
use crate::output::Sidecar;

/// How stale the index may be.
pub const REFRESH_EVERY: Duration = Duration::from_secs(1);
/// The largest sidecar read: ours are a few KiB; anything far larger is not ours.
pub const MAX_SIDECAR_BYTES: u64 = 1 << 20;
/// A sidecar without `ended_at` whose media file was not written for this long belongs to
/// a recording a crash interrupted (a live file is flushed every second).
pub const LIVE_SILENCE: Duration = Duration::from_secs(30);
/// The most recordings one page lists.
pub const MAX_LIMIT: usize = 1000;

/// The id of the recording whose media file is `media`.
pub fn recording_id(media: &Path) -> String {
    let stem = media
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let room = media
        .parent()
        .and_then(Path::file_name)
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    format!("{room}~{stem}")
}

/// Splits an id into its room directory and file stem, if it is one of ours: both parts
/// non-empty and made only of what [`crate::output::sanitize_component`] keeps, with no
/// leading dot.
pub fn parse_id(id: &str) -> Option<(&str, &str)> {
    let (room, stem) = id.split_once('~')?;
    let ok = |s: &str| {
        !s.is_empty()
            && s.len() <= 255
            && !s.starts_with('.')
            && !s.contains("..")
            && s.chars()
                .all(|c| c.is_alphanumeric() || c == '-' || c == '_' || c == '.')
    };
    (ok(room) && ok(stem)).then_some((room, stem))
}

/// Where a recording is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum RecState {
    /// Being written now.
    Recording,
    /// Finished and finalized.
    Finished,
    /// Ended by an error (it still plays up to where it stopped).
    Failed,
    /// Never finished: the daemon stopped without finalizing it (a crash, SIGKILL). It plays
    /// up to its last flush.
    Interrupted,
}

impl RecState {
    /// Parses the API's `state=` value.
    pub fn parse(s: &str) -> Option<RecState> {
        match s {
            "recording" => Some(RecState::Recording),
            "finished" => Some(RecState::Finished),
            "failed" => Some(RecState::Failed),
            "interrupted" => Some(RecState::Interrupted),
            _ => None,
        }
    }
}

/// The check tool's verdict, in short.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Verdict {
    /// `ok`, `problems` or `unreadable`.
    pub status: String,
    pub playable: bool,
    pub finalized: bool,
    pub duration_ms: Option<u64>,
    pub playable_ms: Option<u64>,
    /// Each problem in one line.
    pub problems: Vec<String>,
}

impl Verdict {
    /// A verdict not computed (where only the layout of a meeting is wanted).
    pub fn unchecked() -> Verdict {
        Verdict {
            status: "unchecked".into(),
            playable: false,
            finalized: false,
            duration_ms: None,
            playable_ms: None,
            problems: Vec::new(),
        }
    }

    pub fn of(r: &FileReport) -> Verdict {
        Verdict {
            status: match r.status {
                Status::Ok => "ok",
                Status::Problems => "problems",
                Status::Unreadable => "unreadable",
            }
            .into(),
            playable: r.playable,
            finalized: r.finalized,
            duration_ms: r.duration_ms,
            playable_ms: r.playable_ms,
            problems: r.problems.iter().map(|p| p.message.clone()).collect(),
        }
    }
}

/// One recording as the API shows it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct RecordingInfo {
    pub id: String,
    pub state: RecState,
    /// Bytes of the media file now.
    pub bytes: u64,
    /// Whether the media file is on this host's disk (else only in object storage, whence
    /// the API serves it).
    pub local: bool,
    /// Whether the media file is in object storage, uploaded and verified.
    pub uploaded: bool,
    /// Its length: the sidecar's once finished, the time since it started while live.
    pub duration_ms: Option<u64>,
    /// The media file's name (beside its sidecar in the room's directory).
    pub file: String,
    #[schema(value_type = Object)]
    pub sidecar: Sidecar,
    /// `started_at` in nanoseconds since 1970, for ordering.
    #[serde(skip)]
    pub start_ns: i128,
    /// The media file.
    #[serde(skip)]
    pub media: PathBuf,
}

/// A filter and a page of `GET /recordings`.
#[derive(Debug, Clone, Default)]
pub struct Query {
    /// The room id as written (`1234`, `hearing-7`).
    pub room: Option<String>,
    /// Started at or after.
    pub since: Option<SystemTime>,
    /// Started before.
    pub until: Option<SystemTime>,
    pub state: Option<RecState>,
    pub limit: usize,
    /// Continue after this cursor (from the previous page's `next_cursor`).
    pub cursor: Option<Cursor>,
}

/// Where a page ended: the last recording's start and id (recordings are listed by start,
/// then id).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cursor {
    pub start_ns: i128,
    pub id: String,
}

impl Cursor {
    /// `<start ns>.<id>`: opaque to clients.
    pub fn encode(&self) -> String {
        format!("{}.{}", self.start_ns, self.id)
    }

    pub fn decode(s: &str) -> Option<Cursor> {
        let (ns, id) = s.split_once('.')?;
        parse_id(id)?;
        Some(Cursor {
            start_ns: ns.parse().ok()?,
            id: id.to_owned(),
        })
    }
}

/// One page of recordings.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Page {
    pub recordings: Vec<RecordingInfo>,
    /// Pass as `cursor` for the next page; absent on the last.
    pub next_cursor: Option<String>,
}

/// A parsed sidecar and what it was parsed from.
#[derive(Debug, Clone)]
struct Cached {
    mtime_ns: i128,
    size: u64,
    sidecar: Sidecar,
    start_ns: i128,
}

#[derive(Debug, Default)]
struct IndexState {
    read_at: Option<Instant>,
    /// By sidecar path.
    sidecars: HashMap<PathBuf, Cached>,
}

/// Whether a media file is in object storage, uploaded and verified (see
/// [`crate::storage::Uploads::is_uploaded`]).
pub type IsUploaded = Arc<dyn Fn(&Path) -> bool + Send + Sync>;

/// The recordings under one output directory.
pub struct Index {
    dir: PathBuf,
    state: Mutex<IndexState>,
    /// With `[storage]`: a recording whose media file is gone from the disk is still listed
    /// (served from the bucket) when its upload was verified.
    uploaded: Option<IsUploaded>,
}

impl std::fmt::Debug for Index {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Index").field("dir", &self.dir).finish()
    }
}

impl Index {
    pub fn new(dir: PathBuf) -> Index {
        Index {
            dir,
            state: Mutex::new(IndexState::default()),
            uploaded: None,
        }
    }

    /// Also lists finished recordings whose local media file is gone but uploaded.
    pub fn with_uploads(mut self, uploaded: IsUploaded) -> Index {
        self.uploaded = Some(uploaded);
        self
    }

    /// The output directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// A page of recordings matching `q`, ordered by start.
    pub fn list(&self, q: &Query, now: SystemTime) -> Page {
        let mut all: Vec<RecordingInfo> = self.snapshot(now);
        all.retain(|r| {
            q.room
                .as_ref()
                .is_none_or(|room| r.sidecar.room.to_string() == *room)
                && q.since.is_none_or(|t| r.start_ns >= ns(t))
                && q.until.is_none_or(|t| r.start_ns < ns(t))
                && q.state.is_none_or(|s| r.state == s)
                && q.cursor
                    .as_ref()
                    .is_none_or(|c| (r.start_ns, &r.id) > (c.start_ns, &c.id))
        });
        all.sort_by(|a, b| (a.start_ns, &a.id).cmp(&(b.start_ns, &b.id)));
        let limit = q.limit.clamp(1, MAX_LIMIT);
        let next_cursor = (all.len() > limit).then(|| {
            let last = &all[limit - 1];
            Cursor {
                start_ns: last.start_ns,
                id: last.id.clone(),
            }
            .encode()
        });
        all.truncate(limit);
        Page {
            recordings: all,
            next_cursor,
        }
    }

    /// The recording with this id, read fresh from its sidecar.
    pub fn get(&self, id: &str, now: SystemTime) -> Option<RecordingInfo> {
        let (room, stem) = parse_id(id)?;
        let sidecar_path = self.dir.join(room).join(format!("{stem}.json"));
        let cached = read_sidecar(&sidecar_path)?;
        self.info(&sidecar_path, &cached, now)
    }

    /// Every recording, the index brought up to date if it is older than [`REFRESH_EVERY`].
    fn snapshot(&self, now: SystemTime) -> Vec<RecordingInfo> {
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if st.read_at.is_none_or(|t| t.elapsed() >= REFRESH_EVERY) {
            refresh(&self.dir, &mut st.sidecars);
            st.read_at = Some(Instant::now());
        }
        st.sidecars
            .iter()
            .filter_map(|(path, c)| self.info(path, c, now))
            .collect()
    }
}

fn ns(t: SystemTime) -> i128 {
    OffsetDateTime::from(t).unix_timestamp_nanos()
}

/// Lists `<dir>/<room>/*.json` (not room manifests, not hidden files, no symlinks) and
/// parses the sidecars that are new or changed.
fn refresh(dir: &Path, cache: &mut HashMap<PathBuf, Cached>) {
    let mut seen: Vec<PathBuf> = Vec::new();
    let Ok(rooms) = std::fs::read_dir(dir) else {
        cache.clear();
        return;
    };
    for room in rooms.flatten() {
        let name = room.file_name();
        if name.to_string_lossy().starts_with('.') || !room.file_type().is_ok_and(|t| t.is_dir()) {
            continue;
        }
        let Ok(entries) = std::fs::read_dir(room.path()) else {
            continue;
        };
        for e in entries.flatten() {
            let file = e.file_name();
            let file = file.to_string_lossy();
            if file.starts_with('.')
                || !file.ends_with(".json")
                || file.ends_with(".room.json")
                || !e.file_type().is_ok_and(|t| t.is_file())
            {
                continue;
            }
            let path = e.path();
            let Ok(md) = e.metadata() else { continue };
            let mtime_ns = i128::from(md.mtime()) * 1_000_000_000 + i128::from(md.mtime_nsec());
            let fresh = cache
                .get(&path)
                .is_some_and(|c| c.mtime_ns == mtime_ns && c.size == md.len());
            if !fresh {
                match read_sidecar(&path) {
                    Some(c) => {
                        cache.insert(path.clone(), c);
                    }
                    None => {
                        cache.remove(&path);
                        continue;
                    }
                }
            }
            seen.push(path);
        }
    }
    let seen: std::collections::HashSet<PathBuf> = seen.into_iter().collect();
    cache.retain(|p, _| seen.contains(p));
}

/// Reads and parses one sidecar (at most [`MAX_SIDECAR_BYTES`]; symlinks not followed).
fn read_sidecar(path: &Path) -> Option<Cached> {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    let file = std::fs::File::options()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)
        .ok()?;
    let md = file.metadata().ok()?;
    if !md.is_file() || md.len() > MAX_SIDECAR_BYTES {
        return None;
    }
    let mut text = Vec::with_capacity(md.len() as usize);
    file.take(MAX_SIDECAR_BYTES).read_to_end(&mut text).ok()?;
    let sidecar: Sidecar = serde_json::from_slice(&text).ok()?;
    let start_ns = OffsetDateTime::parse(&sidecar.started_at, &Rfc3339)
        .ok()?
        .unix_timestamp_nanos();
    Some(Cached {
        mtime_ns: i128::from(md.mtime()) * 1_000_000_000 + i128::from(md.mtime_nsec()),
        size: md.len(),
        sidecar,
        start_ns,
    })
}

impl Index {
    /// The API's view of one sidecar; `None` if its media file is not beside it (nor, once
    /// finished, in object storage), or the sidecar names a file of another stem: a sidecar is
    /// never trusted to point elsewhere.
    fn info(&self, sidecar_path: &Path, c: &Cached, now: SystemTime) -> Option<RecordingInfo> {
        let stem = sidecar_path.file_stem()?.to_string_lossy().into_owned();
        let file = &c.sidecar.file;
        let ext = file.strip_prefix(&stem)?.strip_prefix('.')?;
        if ext != "webm" && ext != "mkv" {
            return None;
        }
        let media = sidecar_path.with_file_name(file);
        let s = &c.sidecar;
        let ended = s.ended_at.is_some();
        let uploaded = self.uploaded.as_ref().is_some_and(|f| f(&media));
        let (bytes, written) = match std::fs::symlink_metadata(&media) {
            Ok(md) if md.is_file() && media.starts_with(&self.dir) => (
                Some(md.len()),
                md.modified().unwrap_or(SystemTime::UNIX_EPOCH),
            ),
            Ok(_) => return None,
            Err(_) if ended && uploaded => (None, SystemTime::UNIX_EPOCH),
            Err(_) => return None,
        };
        let state = match &s.end_reason {
            _ if !ended => {
                if now.duration_since(written).unwrap_or_default() > LIVE_SILENCE {
                    RecState::Interrupted
                } else {
                    RecState::Recording
                }
            }
            Some(r) if r.starts_with("error") || r.contains("finalize failed") => RecState::Failed,
            _ => RecState::Finished,
        };
        let duration_ms = if ended {
            s.duration_ms
        } else {
            let now_ns = ns(now);
            u64::try_from((now_ns - c.start_ns).max(0) / 1_000_000).ok()
        };
        Some(RecordingInfo {
            id: recording_id(&media),
            state,
            bytes: bytes.or(s.bytes).unwrap_or(0),
            local: bytes.is_some(),
            uploaded,
            duration_ms,
            file: file.clone(),
            sidecar: s.clone(),
            start_ns: c.start_ns,
            media,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::{FeedId, RoomId};

    fn write(dir: &Path, room: &str, stem: &str, started: &str, ended: Option<&str>) {
        let room_dir = dir.join(room);
        std::fs::create_dir_all(&room_dir).unwrap();
        let media = room_dir.join(format!("{stem}.webm"));
        std::fs::write(&media, b"0123456789").unwrap();
        let mut s = Sidecar::begun(
            RoomId::from(room),
            FeedId::from(1),
            Some("A".into()),
            &media,
            started.into(),
            "webm".into(),
        );
        s.ended_at = ended.map(Into::into);
        s.end_reason = ended.map(|_| "leaving".into());
        s.duration_ms = ended.map(|_| 5000);
        s.write(&room_dir.join(format!("{stem}.json"))).unwrap();
    }

    #[test]
    fn ids_never_leave_the_directory() {
        assert_eq!(
            parse_id("1234~1-A-20261201T000000Z"),
            Some(("1234", "1-A-20261201T000000Z"))
        );
        for bad in [
            "..~x", "a~..", "~x", "x~", "a/b~c", "a~b/c", "a~.x", ".a~b", "a~b~c", "a~b\0",
        ] {
            assert_eq!(parse_id(bad), None, "{bad}");
        }
        assert_eq!(
            recording_id(Path::new("/r/1234/1-A-20261201T000000Z.webm")),
            "1234~1-A-20261201T000000Z"
        );
    }

    #[test]
    fn lists_filters_and_pages() {
        let dir = std::env::temp_dir().join(format!("jr-recordings-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        write(
            &dir,
            "1",
            "1-A-1",
            "2026-12-01T00:00:01Z",
            Some("2026-12-01T00:00:06Z"),
        );
        write(&dir, "1", "2-B-2", "2026-12-01T00:00:02Z", None);
        write(
            &dir,
            "2",
            "3-C-3",
            "2026-12-01T00:00:03Z",
            Some("2026-12-01T00:00:09Z"),
        );
        // Not recordings: a manifest, a hidden file, a sidecar pointing elsewhere.
        std::fs::write(dir.join("1/x.room.json"), "{}").unwrap();
        std::fs::write(dir.join("1/.tmp.json"), "{}").unwrap();
        write(&dir, "2", "4-D-4", "2026-12-01T00:00:04Z", None);
        let evil = std::fs::read_to_string(dir.join("2/4-D-4.json"))
            .unwrap()
            .replace("4-D-4.webm", "../1/1-A-1.webm");
        std::fs::write(dir.join("2/4-D-4.json"), evil).unwrap();
        std::fs::create_dir_all(dir.join(".state")).unwrap();

        let index = Index::new(dir.clone());
        let now = SystemTime::now();
        let q = |f: &dyn Fn(&mut Query)| {
            let mut q = Query {
                limit: 100,
                ..Query::default()
            };
            f(&mut q);
            index.list(&q, now)
        };
        let ids = |p: &Page| {
            p.recordings
                .iter()
                .map(|r| r.id.clone())
                .collect::<Vec<_>>()
        };
        assert_eq!(ids(&q(&|_| {})), ["1~1-A-1", "1~2-B-2", "2~3-C-3"]);
        assert_eq!(ids(&q(&|q| q.room = Some("2".into()))), ["2~3-C-3"]);
        assert_eq!(
            ids(&q(&|q| q.state = Some(RecState::Recording))),
            ["1~2-B-2"]
        );
        let since =
            SystemTime::from(OffsetDateTime::parse("2026-12-01T00:00:02Z", &Rfc3339).unwrap());
        assert_eq!(ids(&q(&|q| q.since = Some(since))), ["1~2-B-2", "2~3-C-3"]);
        assert_eq!(ids(&q(&|q| q.until = Some(since))), ["1~1-A-1"]);
        let first = q(&|q| q.limit = 2);
        assert_eq!(ids(&first), ["1~1-A-1", "1~2-B-2"]);
        let cursor = Cursor::decode(first.next_cursor.as_deref().unwrap()).unwrap();
        let second = q(&|q| {
            q.limit = 2;
            q.cursor = Some(cursor.clone());
        });
        assert_eq!(ids(&second), ["2~3-C-3"]);
        assert_eq!(second.next_cursor, None);
        let live = index.get("1~2-B-2", now).unwrap();
        assert_eq!((live.state, live.bytes), (RecState::Recording, 10));
        assert!(live.duration_ms.unwrap() > 1000);
        assert!(index.get("2~4-D-4", now).is_none());
        assert!(index.get("../etc~passwd", now).is_none());
        // A live file not written for a long while was interrupted.
        let later = now + LIVE_SILENCE + Duration::from_secs(1);
        assert_eq!(
            index.get("1~2-B-2", later).unwrap().state,
            RecState::Interrupted
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
