//! The room manifest: `<dir>/<room>/<UTC start>.room.json`, one per room per watch (from
//! when the daemon starts watching the room until it stops, or the connection to Janus is
//! lost and the room is watched again). It lists every recording of that watch with what its
//! sidecar says (file, feed, display, `started_at` on the room clock, `ended_at`, codecs,
//! end reason, clocks), and is rewritten atomically each time a recording starts or ends, so
//! it is valid JSON at every moment, also after a SIGKILL.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::SystemTime;

use serde::Serialize;

use crate::ids::RoomId;
use crate::output::{Sidecar, file_stamp, rfc3339, room_dir, write_json_atomically};

/// What the manifest file holds.
#[derive(Debug, Clone, Serialize)]
struct Contents {
    room: RoomId,
    /// The Janus server's URL.
    janus: String,
    started_at: String,
    ended_at: Option<String>,
    /// Why the watch ended (`shutdown`, `connection-lost`, `reconfigured`, ...).
    end_reason: Option<String>,
    /// The recordings in the order they started; each as its sidecar says now.
    recordings: Vec<Sidecar>,
}

/// One watch's manifest; shared by the room watcher and its feeds.
#[derive(Debug)]
pub struct RoomManifest {
    path: PathBuf,
    contents: Mutex<Contents>,
}

impl RoomManifest {
    /// Starts the manifest of a watch of `room` on the Janus at `janus`, now.
    pub fn create(dir: &Path, room: &RoomId, janus: &str) -> std::io::Result<RoomManifest> {
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
        let manifest = RoomManifest {
            path,
            contents: Mutex::new(Contents {
                room: room.clone(),
                janus: janus.to_owned(),
                started_at: rfc3339(now),
                ended_at: None,
                end_reason: None,
                recordings: Vec::new(),
            }),
        };
        manifest.save(&manifest.contents.lock().unwrap_or_else(|e| e.into_inner()))?;
        Ok(manifest)
    }

    /// The manifest file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Adds a recording, or updates it (same file name), with what its sidecar says now.
    pub fn recording(&self, sidecar: &Sidecar) {
        let mut c = self.contents.lock().unwrap_or_else(|e| e.into_inner());
        match c.recordings.iter_mut().find(|r| r.file == sidecar.file) {
            Some(r) => *r = sidecar.clone(),
            None => c.recordings.push(sidecar.clone()),
        }
        self.save_logged(&c);
    }

    /// Ends the watch.
    pub fn close(&self, reason: &str) {
        let mut c = self.contents.lock().unwrap_or_else(|e| e.into_inner());
        c.ended_at = Some(rfc3339(SystemTime::now()));
        c.end_reason = Some(reason.to_owned());
        self.save_logged(&c);
    }

    fn save(&self, c: &Contents) -> std::io::Result<()> {
        write_json_atomically(&self.path, c)
    }

    fn save_logged(&self, c: &Contents) {
        if let Err(e) = self.save(c) {
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
        let m = RoomManifest::create(&dir, &room, "ws://janus:8188").unwrap();
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
        let again = RoomManifest::create(&dir, &room, "ws://janus:8188").unwrap();
        assert_ne!(again.path(), m.path());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
