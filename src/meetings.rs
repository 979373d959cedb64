//! Meetings, as the recordings page lists them: one per room watch, read from the room
//! manifests (`<dir>/<room>/<start>.room.json`, see [`crate::manifest`]), each recording as
//! its sidecar says now (through the recordings [`Index`]), placed on the room clock: its
//! offset is its `started_at` minus the meeting's zero, the earliest recording's start.
//!
//! A meeting's id is `<room directory>~<manifest stem>`, checked like a recording's id
//! ([`crate::recordings::parse_id`]), so it never names a path outside the output directory.

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::ids::RoomId;
use crate::output::Sidecar;
use crate::recordings::{Index, LIVE_SILENCE, MAX_SIDECAR_BYTES, RecState, Verdict, parse_id};

/// The largest manifest read (a watch of thousands of recordings is far below it).
pub const MAX_MANIFEST_BYTES: u64 = 16 << 20;

/// What a manifest file holds (the fields the page uses).
#[derive(Debug, Clone, Deserialize)]
struct ManifestFile {
    room: RoomId,
    started_at: String,
    ended_at: Option<String>,
    end_reason: Option<String>,
    recordings: Vec<Sidecar>,
}

/// Where a meeting is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum MeetingState {
    /// The room is being watched now.
    Recording,
    /// The watch ended and every recording finished.
    Finished,
    /// Finished, and every recording's file is in object storage, uploaded and verified.
    Uploaded,
    /// A recording ended by an error.
    Failed,
    /// The watch never ended and nothing was written for a while (the daemon was stopped
    /// without finishing it: a crash, SIGKILL).
    Interrupted,
}

impl MeetingState {
    /// Parses the API's `state=` value.
    pub fn parse(s: &str) -> Option<MeetingState> {
        match s {
            "recording" => Some(MeetingState::Recording),
            "finished" => Some(MeetingState::Finished),
            "uploaded" => Some(MeetingState::Uploaded),
            "failed" => Some(MeetingState::Failed),
            "interrupted" => Some(MeetingState::Interrupted),
            _ => None,
        }
    }
}

/// Why a browser cannot play a recording, if it cannot.
pub fn browser_problem(video_codec: Option<&str>) -> Option<&'static str> {
    match video_codec.map(str::to_ascii_lowercase).as_deref() {
        Some("h265" | "hevc") => Some(
            "H.265 video: Chromium and Firefox cannot play it; download the file and play it \
             with VLC or mpv",
        ),
        _ => None,
    }
}

/// One recording of a meeting, placed on its room clock.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct MeetingRecording {
    /// The recording's id (for `/api/v1/recordings/{id}` and its file).
    pub id: String,
    /// The publisher's display name as given (text, never markup).
    pub display: Option<String>,
    /// The publisher's feed id.
    pub feed: String,
    /// Where it starts on the meeting's clock, in milliseconds from its zero.
    pub offset_ms: i64,
    /// Its length (so far, while live).
    pub duration_ms: Option<u64>,
    pub state: RecState,
    pub bytes: u64,
    /// Whether the file is on the recorder's disk (else played from object storage).
    pub local: bool,
    /// Whether the file is in object storage, uploaded and verified.
    pub uploaded: bool,
    pub video_codec: Option<String>,
    pub audio_codec: Option<String>,
    /// `webm` or `matroska`.
    pub container: String,
    /// Why browsers cannot play it (H.265); absent when they can.
    pub unplayable: Option<String>,
    /// The part number, and the parts before and after (split or resumed recordings).
    pub part: u32,
    pub previous_part: Option<String>,
    pub next_part: Option<String>,
    pub end_reason: Option<String>,
}

/// The check tool's verdict over a meeting's files.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct MeetingVerdict {
    /// `ok` (every file), `problems` or `unreadable` (the worst file's).
    pub status: String,
    /// How many files have problems or cannot be read.
    pub files_with_problems: usize,
}

/// One room watch.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Meeting {
    /// `<room directory>~<manifest stem>`.
    pub id: String,
    /// The room's id as written.
    pub room: String,
    /// The room directory (what a room share link names).
    pub room_dir: String,
    /// When the watch began and ended (RFC 3339).
    pub started_at: String,
    pub ended_at: Option<String>,
    pub end_reason: Option<String>,
    pub state: MeetingState,
    /// The room clock's zero: the earliest recording's start (the watch's start without
    /// recordings).
    pub zero_at: String,
    /// From the zero to the last recording's end (to now while live).
    pub duration_ms: u64,
    /// The bytes of every file.
    pub bytes: u64,
    /// The display names, in the order they first published, each once.
    pub participants: Vec<String>,
    /// Over the files, once none is being written (the room may still be watched).
    pub verdict: Option<MeetingVerdict>,
    pub recordings: Vec<MeetingRecording>,
}

/// The filters of the meetings list.
#[derive(Debug, Clone, Default)]
pub struct MeetingQuery {
    /// The room id as written, or its directory's name.
    pub room: Option<String>,
    /// A participant's display name contains this (case-insensitive).
    pub participant: Option<String>,
    /// Started at or after.
    pub since: Option<SystemTime>,
    /// Started before.
    pub until: Option<SystemTime>,
    pub state: Option<MeetingState>,
}

fn parse_time(s: &str) -> Option<OffsetDateTime> {
    OffsetDateTime::parse(s, &Rfc3339).ok()
}

fn ms_between(a: OffsetDateTime, b: OffsetDateTime) -> i64 {
    i64::try_from((b - a).whole_milliseconds()).unwrap_or(i64::MAX)
}

/// Every manifest under `dir` (`<dir>/<room>/*.room.json`, no hidden files or symlinks).
fn manifests(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(rooms) = std::fs::read_dir(dir) else {
        return out;
    };
    for room in rooms.flatten() {
        if room.file_name().to_string_lossy().starts_with('.')
            || !room.file_type().is_ok_and(|t| t.is_dir())
        {
            continue;
        }
        let Ok(entries) = std::fs::read_dir(room.path()) else {
            continue;
        };
        out.extend(entries.flatten().filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            (!name.starts_with('.')
                && name.ends_with(".room.json")
                && e.file_type().is_ok_and(|t| t.is_file()))
            .then(|| e.path())
        }));
    }
    out
}

fn read_manifest(path: &Path) -> Option<ManifestFile> {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    let file = std::fs::File::options()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)
        .ok()?;
    let mut text = Vec::new();
    file.take(MAX_MANIFEST_BYTES).read_to_end(&mut text).ok()?;
    serde_json::from_slice(&text).ok()
}

/// The meeting id of the manifest at `path`.
fn meeting_id(path: &Path) -> Option<String> {
    let name = path.file_name()?.to_str()?;
    let stem = name.strip_suffix(".room.json")?;
    let room = path.parent()?.file_name()?.to_str()?;
    let id = format!("{room}~{stem}");
    parse_id(&id).is_some().then_some(id)
}

/// Reads meetings from the manifests; `verdict` gives the check tool's verdict on a file
/// (cached by the caller).
pub struct Meetings<'a> {
    pub index: &'a Index,
    pub verdict: &'a dyn Fn(&Path) -> Verdict,
}

impl Meetings<'_> {
    /// The meetings matching `q`, newest first.
    pub fn list(&self, q: &MeetingQuery, now: SystemTime) -> Vec<Meeting> {
        let mut all: Vec<Meeting> = manifests(self.index.dir())
            .iter()
            .filter_map(|p| self.read(p, now))
            .filter(|m| {
                let start = parse_time(&m.started_at).map(SystemTime::from);
                q.room
                    .as_ref()
                    .is_none_or(|r| *r == m.room || *r == m.room_dir)
                    && q.state.is_none_or(|s| s == m.state)
                    && q.since.is_none_or(|t| start.is_some_and(|s| s >= t))
                    && q.until.is_none_or(|t| start.is_some_and(|s| s < t))
                    && q.participant.as_ref().is_none_or(|p| {
                        let p = p.to_lowercase();
                        m.participants.iter().any(|n| n.to_lowercase().contains(&p))
                    })
            })
            .collect();
        all.sort_by(|a, b| b.started_at.cmp(&a.started_at).then(b.id.cmp(&a.id)));
        all
    }

    /// The meeting with this id.
    pub fn get(&self, id: &str, now: SystemTime) -> Option<Meeting> {
        let (room, stem) = parse_id(id)?;
        self.read(
            &self
                .index
                .dir()
                .join(room)
                .join(format!("{stem}.room.json")),
            now,
        )
    }

    fn read(&self, path: &Path, now: SystemTime) -> Option<Meeting> {
        let id = meeting_id(path)?;
        let room_dir = id.split_once('~')?.0.to_owned();
        let m = read_manifest(path)?;
        let watch_start = parse_time(&m.started_at)?;
        let zero = m
            .recordings
            .iter()
            .filter_map(|r| parse_time(&r.started_at))
            .min()
            .unwrap_or(watch_start);
        let mut recordings = Vec::new();
        let mut verdicts = Vec::new();
        let mut participants: Vec<String> = Vec::new();
        for s in &m.recordings {
            let stem = s.file.rsplit_once('.').map_or(s.file.as_str(), |(a, _)| a);
            let rec_id = format!("{room_dir}~{stem}");
            // The sidecar now (the manifest may be a second behind); as listed if it is gone.
            let fresh = self.index.get(&rec_id, now);
            let Some(start) = parse_time(&s.started_at) else {
                continue;
            };
            let (sidecar, state, bytes, duration_ms) = match &fresh {
                Some(r) => (&r.sidecar, r.state, r.bytes, r.duration_ms),
                None => (s, RecState::Interrupted, 0, s.duration_ms),
            };
            // Only files on this disk are checked (an uploaded copy is the same bytes,
            // verified by checksum when it went).
            if let Some(r) = &fresh
                && r.state != RecState::Recording
                && r.local
            {
                verdicts.push((self.verdict)(&r.media));
            }
            let name = sidecar
                .display
                .clone()
                .unwrap_or_else(|| format!("feed {}", sidecar.feed));
            if !participants.contains(&name) {
                participants.push(name);
            }
            recordings.push(MeetingRecording {
                id: rec_id,
                display: sidecar.display.clone(),
                feed: sidecar.feed.to_string(),
                offset_ms: ms_between(zero, start),
                duration_ms,
                state,
                bytes,
                local: fresh.as_ref().is_some_and(|r| r.local),
                uploaded: fresh.as_ref().is_some_and(|r| r.uploaded),
                video_codec: sidecar.video_codec.clone(),
                audio_codec: sidecar.audio_codec.clone(),
                container: sidecar.container.clone(),
                unplayable: browser_problem(sidecar.video_codec.as_deref()).map(Into::into),
                part: sidecar.part,
                previous_part: sidecar.previous_part.clone(),
                next_part: sidecar.next_part.clone(),
                end_reason: sidecar.end_reason.clone(),
            });
        }
        let live = m.ended_at.is_none();
        let written = std::fs::metadata(path)
            .and_then(|md| md.modified())
            .unwrap_or(SystemTime::UNIX_EPOCH);
        let state = if recordings.iter().any(|r| r.state == RecState::Failed) {
            MeetingState::Failed
        } else if recordings.iter().any(|r| r.state == RecState::Recording) {
            MeetingState::Recording
        } else if live {
            // A watch with nobody publishing rewrites nothing; a stale one was cut short.
            if now.duration_since(written).unwrap_or_default() > LIVE_SILENCE
                && recordings.iter().any(|r| r.state == RecState::Interrupted)
            {
                MeetingState::Interrupted
            } else {
                MeetingState::Recording
            }
        } else if !recordings.is_empty() && recordings.iter().all(|r| r.uploaded) {
            MeetingState::Uploaded
        } else {
            MeetingState::Finished
        };
        let last_end = recordings
            .iter()
            .map(|r| {
                r.offset_ms
                    .saturating_add(r.duration_ms.unwrap_or(0) as i64)
            })
            .max()
            .unwrap_or(0);
        let duration_ms = if state == MeetingState::Recording {
            ms_between(zero, OffsetDateTime::from(now)).max(last_end)
        } else {
            last_end
        };
        let writing = recordings.iter().any(|r| r.state == RecState::Recording);
        let verdict = (!writing && !verdicts.is_empty()).then(|| {
            let bad = verdicts.iter().filter(|v| v.status != "ok").count();
            let status = if verdicts.iter().any(|v| v.status == "unreadable") {
                "unreadable"
            } else if bad > 0 {
                "problems"
            } else {
                "ok"
            };
            MeetingVerdict {
                status: status.into(),
                files_with_problems: bad,
            }
        });
        Some(Meeting {
            id,
            room: m.room.to_string(),
            room_dir,
            started_at: m.started_at,
            ended_at: m.ended_at,
            end_reason: m.end_reason,
            state,
            zero_at: crate::output::rfc3339(zero.into()),
            duration_ms: u64::try_from(duration_ms).unwrap_or(0),
            bytes: recordings.iter().map(|r| r.bytes).sum(),
            participants,
            verdict,
            recordings,
        })
    }
}

/// The sidecar of recording `id` as its raw JSON text (the page's download), at most
/// [`MAX_SIDECAR_BYTES`].
pub fn sidecar_path(index: &Index, id: &str) -> Option<PathBuf> {
    let (room, stem) = parse_id(id)?;
    let path = index.dir().join(room).join(format!("{stem}.json"));
    let md = std::fs::symlink_metadata(&path).ok()?;
    (md.is_file() && md.len() <= MAX_SIDECAR_BYTES).then_some(path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::FeedId;
    use crate::manifest::RoomManifest;
    use std::sync::Arc;

    #[test]
    fn a_watch_is_one_meeting_on_its_room_clock() {
        let dir = std::env::temp_dir().join(format!("jr-meetings-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let room = RoomId::from(42);
        let m = Arc::new(RoomManifest::create(&dir, &room, "ws://janus:8188", None).unwrap());
        let room_dir = m.path().parent().unwrap().to_owned();
        for (feed, name, start) in [
            (1u64, "Alice", "2026-12-01T10:00:00.500Z"),
            (2, "<img src=x>", "2026-12-01T10:00:03.750Z"),
        ] {
            let media = room_dir.join(format!("{feed}-x-20261201T100000Z.webm"));
            std::fs::write(&media, b"0123456789").unwrap();
            let mut s = Sidecar::begun(
                room.clone(),
                FeedId::from(feed),
                Some(name.into()),
                &media,
                start.into(),
                "webm".into(),
            );
            s.ended_at = Some("2026-12-01T10:00:20Z".into());
            s.end_reason = Some("unpublished".into());
            s.duration_ms = Some(10_000);
            s.video_codec = Some(if feed == 2 { "h265" } else { "vp8" }.into());
            s.write(&media.with_extension("json")).unwrap();
            m.recording(&s);
        }
        m.close("shutdown");
        let index = Index::new(dir.clone());
        let verdict = |_: &Path| Verdict {
            status: "ok".into(),
            playable: true,
            finalized: true,
            duration_ms: None,
            playable_ms: None,
            problems: vec![],
        };
        let meetings = Meetings {
            index: &index,
            verdict: &verdict,
        };
        let now = SystemTime::now();
        let all = meetings.list(&MeetingQuery::default(), now);
        assert_eq!(all.len(), 1);
        let one = &all[0];
        assert_eq!(one.room, "42");
        assert_eq!(one.state, MeetingState::Finished);
        assert_eq!(one.participants, ["Alice", "<img src=x>"]);
        assert_eq!(one.recordings[0].offset_ms, 0);
        assert_eq!(one.recordings[1].offset_ms, 3250);
        assert_eq!(one.duration_ms, 13_250);
        assert_eq!(one.bytes, 20);
        assert_eq!(one.verdict.as_ref().unwrap().status, "ok");
        assert!(one.recordings[1].unplayable.is_some());
        assert!(one.recordings[0].unplayable.is_none());
        assert_eq!(meetings.get(&one.id, now).unwrap().id, one.id);
        let q = |f: &dyn Fn(&mut MeetingQuery)| {
            let mut q = MeetingQuery::default();
            f(&mut q);
            meetings.list(&q, now).len()
        };
        assert_eq!(q(&|q| q.participant = Some("ALI".into())), 1);
        assert_eq!(q(&|q| q.participant = Some("carol".into())), 0);
        assert_eq!(q(&|q| q.room = Some("43".into())), 0);
        assert_eq!(q(&|q| q.state = Some(MeetingState::Recording)), 0);
        assert!(meetings.get("../x~y", now).is_none());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
