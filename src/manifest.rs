//! The room manifest: `<dir>/<room>/<UTC start>.room.json`, one per room per watch (from
//! when the daemon starts watching the room until it stops, or the connection to Janus is
//! lost and the room is watched again). It lists every recording of that watch with what its
//! sidecar says (file, feed, display, `started_at` on the room clock, `ended_at`, codecs,
//! end reason, clocks), and is rewritten atomically as recordings start and end, so it is
//! valid JSON at every moment, also after a SIGKILL.
//!
//! Rewrites are at most one per [`SAVE_EVERY`]: a change within that time of the last
//! rewrite is saved once that time is up, together with any others that came meanwhile.
//! Rewriting the whole list for every change made a room's start cost the square of its
//! feeds (at 50 feeds starting together, 8% of the daemon's CPU in the benchmark). A crash
//! loses at most the last [`SAVE_EVERY`] of changes, which each recording's sidecar still
//! has; the end of the watch is saved at once.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use serde::Serialize;

use crate::ids::RoomId;
use crate::output::{Sidecar, file_stamp, rfc3339, room_dir, write_json_atomically};

/// What the manifest file holds.
#[derive(Debug, Clone, Serialize)]
struct Contents {
    room: RoomId,
    /// The Janus server's URL.
    janus: String,
    /// In a fleet: the instance that watched the room, and its claim's fencing token.
    #[serde(skip_serializing_if = "Option::is_none")]
    instance: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    fencing_token: Option<i64>,
    /// In a fleet, a takeover: the instance that held the room before.
    #[serde(skip_serializing_if = "Option::is_none")]
    taken_over_from: Option<String>,
    started_at: String,
    ended_at: Option<String>,
    /// Why the watch ended (`shutdown`, `connection-lost`, `reconfigured`, ...).
    end_reason: Option<String>,
    /// The recordings in the order they started; each as its sidecar says now.
    recordings: Vec<Sidecar>,
}

/// The shortest time between two rewrites of a manifest.
pub const SAVE_EVERY: Duration = Duration::from_secs(1);

/// One watch's manifest; shared by the room watcher and its feeds.
#[derive(Debug)]
pub struct RoomManifest {
    path: PathBuf,
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    contents: Contents,
    /// When the file was last rewritten.
    saved_at: Instant,
    /// A rewrite is scheduled (the contents changed since the last one).
    scheduled: bool,
}

impl RoomManifest {
    /// Starts the manifest of a watch of `room` on the Janus at `janus`, now (under `claim`,
    /// in a fleet).
    pub fn create(
        dir: &Path,
        room: &RoomId,
        janus: &str,
        claim: Option<&crate::fleet::Claim>,
    ) -> std::io::Result<RoomManifest> {
        let now = SystemTime::now();
        let room_dir = room_dir(dir, room)?;
        let stem = file_stamp(now);
        let path = (1u32..)
            .map(|n| match n {
                1 => room_dir.join(format!("{stem}.room.json")),
                n => room_dir.join(format!("{stem}-{n}.room.json")),
            })
            .find(|p| !p.exists())
            .expect("a free name");
        let contents = Contents {
            room: room.clone(),
            janus: janus.to_owned(),
            instance: claim.map(|c| c.instance.to_string()),
            fencing_token: claim.map(|c| c.revision),
            taken_over_from: claim.and_then(|c| c.after.as_ref().map(|h| h.instance.clone())),
            started_at: rfc3339(now),
            ended_at: None,
            end_reason: None,
            recordings: Vec::new(),
        };
        write_json_atomically(&path, &contents)?;
        Ok(RoomManifest {
            path,
            state: Mutex::new(State {
                contents,
                saved_at: Instant::now(),
                scheduled: false,
            }),
        })
    }

    /// The manifest file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Adds a recording, or updates it (same file name), with what its sidecar says now. The
    /// file is rewritten now, or [`SAVE_EVERY`] after its last rewrite (on a blocking thread
    /// of the current tokio runtime, since the rewrite waits for the disk; without a
    /// runtime, now).
    pub fn recording(self: &Arc<Self>, sidecar: &Sidecar) {
        let mut st = self.lock();
        let c = &mut st.contents;
        match c.recordings.iter_mut().find(|r| r.file == sidecar.file) {
            Some(r) => *r = sidecar.clone(),
            None => c.recordings.push(sidecar.clone()),
        }
        if st.scheduled {
            return; // the scheduled rewrite will carry this change too
        }
        let due = st.saved_at + SAVE_EVERY;
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) if Instant::now() < due => {
                st.scheduled = true;
                let manifest = Arc::clone(self);
                drop(runtime.spawn(async move {
                    tokio::time::sleep_until(due.into()).await;
                    let save = move || {
                        let mut st = manifest.lock();
                        manifest.save(&mut st);
                    };
                    let _ = tokio::task::spawn_blocking(save).await;
                }));
            }
            _ => self.save(&mut st),
        }
    }

    /// When the watch began (RFC 3339).
    pub fn started_at(&self) -> String {
        self.lock().contents.started_at.clone()
    }

    /// Ends the watch; saved at once.
    pub fn close(&self, reason: &str) {
        let mut st = self.lock();
        st.contents.ended_at = Some(rfc3339(SystemTime::now()));
        st.contents.end_reason = Some(reason.to_owned());
        self.save(&mut st);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Rewrites the file with the contents as they are now (a failure is logged).
    fn save(&self, st: &mut State) {
        st.scheduled = false;
        st.saved_at = Instant::now();
        if let Err(e) = write_json_atomically(&self.path, &st.contents) {
            tracing::warn!(path = %self.path.display(), error = %e, "cannot write the room manifest");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::FeedId;

    #[test]
    fn recordings_are_added_updated_and_the_watch_closed() {
        let dir = std::env::temp_dir().join(format!("jr-manifest-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let room = RoomId::from(42);
        let m = Arc::new(RoomManifest::create(&dir, &room, "ws://janus:8188", None).unwrap());
        let read = || -> serde_json::Value {
            serde_json::from_str(&std::fs::read_to_string(m.path()).unwrap()).unwrap()
        };
        assert!(m.path().starts_with(dir.canonicalize().unwrap().join("42")));
        assert!(m.path().to_string_lossy().ends_with(".room.json"));
        assert_eq!(read()["recordings"], serde_json::json!([]));
        let mut s = Sidecar::begun(
            room.clone(),
            FeedId::from(7),
            Some("Alice".into()),
            Path::new("/x/7-Alice-20261201T000000Z.webm"),
            "2026-12-01T00:00:00.123Z".into(),
            "webm".into(),
        );
        m.recording(&s);
        s.ended_at = Some("2026-12-01T00:01:00Z".into());
        s.end_reason = Some("leaving".into());
        m.recording(&s);
        let v = read();
        assert_eq!(v["recordings"].as_array().unwrap().len(), 1, "{v:#}");
        assert_eq!(v["recordings"][0]["end_reason"], "leaving");
        assert_eq!(v["janus"], "ws://janus:8188");
        assert!(v["ended_at"].is_null());
        m.close("shutdown");
        assert_eq!(read()["end_reason"], "shutdown");
        // A second watch begun in the same second gets its own file.
        let again = RoomManifest::create(&dir, &room, "ws://janus:8188", None).unwrap();
        assert_ne!(again.path(), m.path());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// Changes within SAVE_EVERY of the last rewrite wait for it, all in one rewrite; the end
    /// of the watch is written at once.
    #[tokio::test]
    async fn rewrites_are_spaced_and_carry_every_change() {
        let dir = std::env::temp_dir().join(format!("jr-manifest-spaced-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let room = RoomId::from(43);
        let m = Arc::new(RoomManifest::create(&dir, &room, "ws://janus:8188", None).unwrap());
        let listed = || -> usize {
            let v: serde_json::Value =
                serde_json::from_str(&std::fs::read_to_string(m.path()).unwrap()).unwrap();
            v["recordings"].as_array().unwrap().len()
        };
        for feed in 1..=3u64 {
            let file = format!("/x/{feed}-F-20261201T000000Z.webm");
            m.recording(&Sidecar::begun(
                room.clone(),
                FeedId::from(feed),
                None,
                Path::new(&file),
                "2026-12-01T00:00:00Z".into(),
                "webm".into(),
            ));
        }
        assert_eq!(listed(), 0, "just written at creation: the changes wait");
        tokio::time::sleep(SAVE_EVERY + Duration::from_millis(300)).await;
        assert_eq!(listed(), 3, "one rewrite carries all three");
        m.close("shutdown");
        let v: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(m.path()).unwrap()).unwrap();
        assert_eq!(v["end_reason"], "shutdown");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
