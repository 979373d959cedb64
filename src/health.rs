//! What the service knows about its own state, shared by every task: how many rooms are
//! watched and feeds recorded, the last error, and a heartbeat per feed loop. It feeds the
//! systemd STATUS line and decides whether the watchdog may be fed.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime};

use crate::ids::RoomId;

/// Shared service state; cheap to update from any task.
#[derive(Debug, Default)]
pub struct Health {
    rooms_configured: AtomicUsize,
    rooms_watched: AtomicUsize,
    feeds_recording: AtomicUsize,
    /// Feeds recording per room (rooms with none are left out).
    room_feeds: Mutex<BTreeMap<String, usize>>,
    /// What each room's watcher is doing now (rooms not watched are left out).
    room_states: Mutex<HashMap<RoomId, RoomState>>,
    /// Rooms discovery found but does not record, and why.
    skipped: Mutex<Vec<(String, String)>>,
    /// In a fleet: the instance holding each room's key, as this one last saw it.
    holders: Mutex<HashMap<RoomId, String>>,
    last_error: Mutex<Option<(String, SystemTime)>>,
    next_loop: AtomicU64,
    /// The last time each running feed loop went round.
    beats: Mutex<HashMap<u64, Instant>>,
}

/// What a room's watcher is doing, for the API and `status`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
#[serde(tag = "state", content = "reason", rename_all = "lowercase")]
pub enum RoomState {
    /// Joining the room on Janus.
    Joining,
    /// Joined: its publishers are recorded.
    Watching,
    /// Could not join (no such room, a wrong PIN...), or was thrown out: tried again later.
    Retrying(String),
}

/// A feed loop's registration; beats until dropped.
pub struct Heartbeat<'a> {
    health: &'a Health,
    id: u64,
}

impl Heartbeat<'_> {
    /// Says the loop is still going round.
    pub fn beat(&self) {
        if let Ok(mut beats) = self.health.beats.lock() {
            beats.insert(self.id, Instant::now());
        }
    }
}

impl Drop for Heartbeat<'_> {
    fn drop(&mut self) {
        if let Ok(mut beats) = self.health.beats.lock() {
            beats.remove(&self.id);
        }
    }
}

impl Health {
    /// Registers a loop whose progress the watchdog depends on.
    pub fn heartbeat(&self) -> Heartbeat<'_> {
        let id = self.next_loop.fetch_add(1, Ordering::Relaxed);
        let hb = Heartbeat { health: self, id };
        hb.beat();
        hb
    }

    /// The loops that have not gone round for `limit`, if any (the watchdog is then withheld).
    pub fn stuck_loops(&self, limit: Duration) -> usize {
        let now = Instant::now();
        self.beats.lock().map_or(0, |b| {
            b.values()
                .filter(|t| now.duration_since(**t) > limit)
                .count()
        })
    }

    /// How many rooms are to be recorded (config, API and discovery; it changes).
    pub fn set_rooms_configured(&self, n: usize) {
        self.rooms_configured.store(n, Ordering::Relaxed);
    }

    pub fn room_joined(&self) {
        self.rooms_watched.fetch_add(1, Ordering::Relaxed);
    }

    pub fn room_left(&self) {
        self.rooms_watched.fetch_sub(1, Ordering::Relaxed);
    }

    /// Says what `room`'s watcher does now.
    pub fn set_room_state(&self, room: &RoomId, state: RoomState) {
        if let Ok(mut m) = self.room_states.lock() {
            m.insert(room.clone(), state);
        }
    }

    /// The room is no longer watched.
    pub fn clear_room_state(&self, room: &RoomId) {
        if let Ok(mut m) = self.room_states.lock() {
            m.remove(room);
        }
    }

    /// What `room`'s watcher does, if it runs.
    pub fn room_state(&self, room: &RoomId) -> Option<RoomState> {
        self.room_states.lock().ok()?.get(room).cloned()
    }

    /// The rooms discovery skips, and why (for `status` and the metrics).
    pub fn set_skipped(&self, skipped: Vec<(String, String)>) {
        if let Ok(mut s) = self.skipped.lock() {
            *s = skipped;
        }
    }

    /// In a fleet: every room's holder, as the fleet last saw them.
    pub fn set_room_holders(&self, holders: HashMap<RoomId, String>) {
        if let Ok(mut h) = self.holders.lock() {
            *h = holders;
        }
    }

    /// In a fleet: the instance holding `room`'s key (none: nobody, or not a fleet).
    pub fn room_holder(&self, room: &RoomId) -> Option<String> {
        self.holders.lock().ok()?.get(room).cloned()
    }

    /// Feeds of `room` being written now.
    pub fn room_feeds(&self, room: &RoomId) -> usize {
        self.room_feeds
            .lock()
            .ok()
            .and_then(|r| r.get(&room.to_string()).copied())
            .unwrap_or(0)
    }

    pub fn recording_started(&self, room: &RoomId) {
        self.feeds_recording.fetch_add(1, Ordering::Relaxed);
        if let Ok(mut rooms) = self.room_feeds.lock() {
            *rooms.entry(room.to_string()).or_default() += 1;
        }
        self.publish_metrics();
    }

    pub fn recording_ended(&self, room: &RoomId) {
        self.feeds_recording.fetch_sub(1, Ordering::Relaxed);
        if let Ok(mut rooms) = self.room_feeds.lock()
            && let Some(n) = rooms.get_mut(&room.to_string())
        {
            *n -= 1;
            if *n == 0 {
                rooms.remove(&room.to_string());
            }
        }
        self.publish_metrics();
    }

    /// Sets the gauges `janus-recorder status` reads. Called on every change and every few
    /// seconds (gauges not set for a minute leave the metrics output).
    pub fn publish_metrics(&self) {
        let room_feeds: Vec<(String, usize)> = self
            .room_feeds
            .lock()
            .map(|r| r.iter().map(|(k, v)| (k.clone(), *v)).collect())
            .unwrap_or_default();
        let last_error = self.last_error.lock().ok().and_then(|e| e.clone());
        let skipped = self.skipped.lock().map(|s| s.clone()).unwrap_or_default();
        crate::metrics::feeds_recording(self.feeds_recording());
        crate::metrics::publish_status(
            self.rooms_configured.load(Ordering::Relaxed),
            self.rooms_watched.load(Ordering::Relaxed),
            &room_feeds,
            &skipped,
            last_error.as_ref().map(|(m, t)| (m.as_str(), *t)),
        );
    }

    pub fn feeds_recording(&self) -> usize {
        self.feeds_recording.load(Ordering::Relaxed)
    }

    /// Remembers an error for the status line.
    pub fn error(&self, message: impl Into<String>) {
        if let Ok(mut e) = self.last_error.lock() {
            *e = Some((message.into(), SystemTime::now()));
        }
    }

    /// The systemd STATUS line.
    pub fn status_line(&self) -> String {
        let mut s = format!(
            "recording {} feeds; watching {}/{} rooms",
            self.feeds_recording(),
            self.rooms_watched.load(Ordering::Relaxed),
            self.rooms_configured.load(Ordering::Relaxed)
        );
        if let Ok(e) = self.last_error.lock()
            && let Some((e, _)) = e.as_ref()
        {
            s.push_str("; last error: ");
            s.push_str(e);
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_and_stuck_loops() {
        let h = Health::default();
        h.set_rooms_configured(2);
        h.room_joined();
        h.recording_started(&RoomId::from(1234));
        h.error("room 9: No such room");
        assert_eq!(
            h.status_line(),
            "recording 1 feeds; watching 1/2 rooms; last error: room 9: No such room"
        );
        let hb = h.heartbeat();
        assert_eq!(h.stuck_loops(Duration::from_secs(1)), 0);
        std::thread::sleep(Duration::from_millis(30));
        assert_eq!(h.stuck_loops(Duration::from_millis(10)), 1);
        hb.beat();
        assert_eq!(h.stuck_loops(Duration::from_millis(10)), 0);
        drop(hb);
        std::thread::sleep(Duration::from_millis(30));
        assert_eq!(h.stuck_loops(Duration::from_millis(10)), 0);
    }
}
