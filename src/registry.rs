//! Which rooms should be recorded, from every source in one place: the config's `[[rooms]]`,
//! rooms started through the HTTP API (kept in the state directory, so a restart records
//! them again), and rooms found by `[janus] rooms = "all"`. The service reconciles the room
//! watchers with [`Registry::wanted`] whenever [`Registry::changed`] fires, the way a reload
//! of the config always has: rooms no longer wanted stop, new ones start, the others go on.
//!
//! A room is wanted once: the config wins over the API, the API over discovery (a listed
//! room keeps its pin and relay when discovery also finds it).

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::config::{RelayConfig, RoomConfig};
use crate::ids::RoomId;
use crate::output::{rfc3339, write_json_atomically};
use crate::secret::Secret;

/// Where a wanted room comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    /// A `[[rooms]]` table of the config.
    Config,
    /// Started through the HTTP API.
    Api,
    /// Found on Janus by `rooms = "all"`.
    Discovered,
}

/// One room to record, and why.
#[derive(Debug, Clone, PartialEq)]
pub struct Wanted {
    pub config: RoomConfig,
    pub source: Source,
    /// Rooms started through the API with an end: when they stop by themselves.
    pub until: Option<SystemTime>,
}

/// A room the API asked to record.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiRoom {
    pub config: RoomConfig,
    /// Stop by itself at this time.
    pub until: Option<SystemTime>,
    pub started_at: SystemTime,
}

/// A room found by discovery but not recorded, and why (a PIN we do not have, say).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skipped {
    pub room: RoomId,
    pub why: String,
}

/// Why the API cannot start or stop a room.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RegistryError {
    #[error("room {room} is already recorded (from {from:?})")]
    AlreadyRecorded { room: RoomId, from: Source },
    #[error("room {0} is not recorded")]
    NotRecorded(RoomId),
    #[error("room {room} is recorded because of the {from:?} source; stop it there")]
    NotFromApi { room: RoomId, from: Source },
    #[error("cannot save the rooms started through the API: {0}")]
    Save(String),
}

#[derive(Debug, Default)]
struct State {
    config: Vec<RoomConfig>,
    api: Vec<ApiRoom>,
    discovered: Vec<RoomConfig>,
    skipped: Vec<Skipped>,
}

/// The wanted rooms; cheap to clone, shared by the service, discovery and the API.
#[derive(Debug, Clone)]
pub struct Registry {
    state: Arc<Mutex<State>>,
    /// Where the API's rooms are kept (`None`: not kept, in tests).
    file: Option<Arc<PathBuf>>,
    changed: Arc<tokio::sync::watch::Sender<u64>>,
}

impl Registry {
    /// A registry of the config's rooms, with the API's rooms kept in `file` (read now; a
    /// room whose `until` has passed is dropped). A file that cannot be read is logged and
    /// moved aside, never fatal: recording the config's rooms matters more.
    pub fn open(config: Vec<RoomConfig>, file: Option<PathBuf>) -> Registry {
        let api = file.as_deref().map(load).unwrap_or_default();
        let now = SystemTime::now();
        let api = api
            .into_iter()
            .filter(|r| r.until.is_none_or(|u| u > now))
            .collect();
        Registry {
            state: Arc::new(Mutex::new(State {
                config,
                api,
                ..State::default()
            })),
            file: file.map(Arc::new),
            changed: Arc::new(tokio::sync::watch::channel(0).0),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn notify(&self) {
        self.changed.send_modify(|n| *n += 1);
    }

    /// Fires after every change of the wanted rooms.
    pub fn changed(&self) -> tokio::sync::watch::Receiver<u64> {
        self.changed.subscribe()
    }

    /// Every wanted room: the config's, then the API's, then the discovered ones, each room
    /// once.
    pub fn wanted(&self) -> Vec<Wanted> {
        let st = self.lock();
        let mut out: Vec<Wanted> = st
            .config
            .iter()
            .map(|c| Wanted {
                config: c.clone(),
                source: Source::Config,
                until: None,
            })
            .collect();
        for a in &st.api {
            if !out.iter().any(|w| w.config.room == a.config.room) {
                out.push(Wanted {
                    config: a.config.clone(),
                    source: Source::Api,
                    until: a.until,
                });
            }
        }
        for d in &st.discovered {
            if !out.iter().any(|w| w.config.room == d.room) {
                out.push(Wanted {
                    config: d.clone(),
                    source: Source::Discovered,
                    until: None,
                });
            }
        }
        out
    }

    /// The config's `[[rooms]]` (at start and after a reload).
    pub fn set_config(&self, rooms: Vec<RoomConfig>) {
        let mut st = self.lock();
        if st.config != rooms {
            st.config = rooms;
            drop(st);
            self.notify();
        }
    }

    /// The config's `[[rooms]]` table for `room`, if any (discovery takes its pin from it).
    pub fn configured(&self, room: &RoomId) -> Option<RoomConfig> {
        self.lock().config.iter().find(|c| c.room == *room).cloned()
    }

    /// What discovery found: the rooms to record and the ones it skips.
    pub fn set_discovered(&self, rooms: Vec<RoomConfig>, skipped: Vec<Skipped>) {
        let mut st = self.lock();
        if st.discovered != rooms || st.skipped != skipped {
            st.discovered = rooms;
            st.skipped = skipped;
            drop(st);
            self.notify();
        }
    }

    /// The rooms discovery skips.
    pub fn skipped(&self) -> Vec<Skipped> {
        self.lock().skipped.clone()
    }

    /// Starts recording a room for the API; kept in the state file. 409-worthy if the room
    /// is already wanted from any source.
    pub fn start_api(&self, room: ApiRoom) -> Result<(), RegistryError> {
        if let Some(w) = self
            .wanted()
            .into_iter()
            .find(|w| w.config.room == room.config.room)
        {
            return Err(RegistryError::AlreadyRecorded {
                room: w.config.room,
                from: w.source,
            });
        }
        let mut st = self.lock();
        st.api.push(room);
        if let Err(e) = self.save(&st.api) {
            st.api.pop();
            return Err(e);
        }
        drop(st);
        self.notify();
        Ok(())
    }

    /// Stops a room the API started (its files are finalized, ending `stopped`).
    pub fn stop_api(&self, room: &RoomId) -> Result<(), RegistryError> {
        let source = self
            .wanted()
            .into_iter()
            .find(|w| w.config.room == *room)
            .map(|w| w.source);
        match source {
            None => return Err(RegistryError::NotRecorded(room.clone())),
            Some(Source::Api) => {}
            Some(source) => {
                return Err(RegistryError::NotFromApi {
                    room: room.clone(),
                    from: source,
                });
            }
        }
        let mut st = self.lock();
        let before = st.api.clone();
        st.api.retain(|a| a.config.room != *room);
        if let Err(e) = self.save(&st.api) {
            st.api = before;
            return Err(e);
        }
        drop(st);
        self.notify();
        Ok(())
    }

    /// Drops the API's rooms whose `until` is past at `now`; returns them.
    pub fn expire(&self, now: SystemTime) -> Vec<RoomId> {
        let mut st = self.lock();
        let gone: Vec<RoomId> = st
            .api
            .iter()
            .filter(|a| a.until.is_some_and(|u| u <= now))
            .map(|a| a.config.room.clone())
            .collect();
        if gone.is_empty() {
            return gone;
        }
        st.api.retain(|a| a.until.is_none_or(|u| u > now));
        if let Err(e) = self.save(&st.api) {
            tracing::error!(error = %e, "cannot save the rooms started through the API");
        }
        drop(st);
        self.notify();
        gone
    }

    /// How long until the next `until` (none: nothing expires).
    pub fn next_expiry(&self, now: SystemTime) -> Option<Duration> {
        self.lock()
            .api
            .iter()
            .filter_map(|a| a.until)
            .min()
            .map(|u| u.duration_since(now).unwrap_or_default())
    }

    fn save(&self, api: &[ApiRoom]) -> Result<(), RegistryError> {
        let Some(file) = &self.file else {
            return Ok(());
        };
        let stored: Vec<Stored> = api.iter().map(Stored::from).collect();
        if let Some(dir) = file.parent() {
            crate::output::create_private_dir(dir)
                .map_err(|e| RegistryError::Save(e.to_string()))?;
        }
        write_json_atomically(file, &StoredFile { rooms: stored })
            .map_err(|e| RegistryError::Save(format!("{}: {e}", file.display())))
    }
}

/// The state file: `{"rooms": [...]}`.
#[derive(Debug, Serialize, Deserialize)]
struct StoredFile {
    rooms: Vec<Stored>,
}

/// One API room as kept on disk. The file is the daemon's own (0640 in a 0750 directory),
/// so the PIN is kept as given: the room must be joined again after a restart.
#[derive(Debug, Serialize, Deserialize)]
struct Stored {
    room: RoomId,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pin: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    relay: Option<StoredRelay>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    split_after_s: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    until: Option<String>,
    started_at: String,
}

#[derive(Debug, Serialize, Deserialize)]
struct StoredRelay {
    room: RoomId,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pin: Option<String>,
    #[serde(default)]
    display_suffix: String,
}

impl From<&ApiRoom> for Stored {
    fn from(a: &ApiRoom) -> Stored {
        let c = &a.config;
        Stored {
            room: c.room.clone(),
            pin: c.pin.as_ref().map(|p| p.expose().to_owned()),
            relay: c.relay.as_ref().map(|r| StoredRelay {
                room: r.room.clone(),
                url: r.url.clone(),
                pin: r.pin.as_ref().map(|p| p.expose().to_owned()),
                display_suffix: r.display_suffix.clone(),
            }),
            split_after_s: c.split_after.map(|d| d.as_secs()),
            until: a.until.map(rfc3339),
            started_at: rfc3339(a.started_at),
        }
    }
}

impl Stored {
    fn into_api(self) -> Option<ApiRoom> {
        let time = |s: &str| {
            OffsetDateTime::parse(s, &Rfc3339)
                .ok()
                .map(SystemTime::from)
        };
        Some(ApiRoom {
            config: RoomConfig {
                room: self.room,
                pin: self.pin.map(Secret::new),
                secret: None,
                record: true,
                relay: self.relay.map(|r| {
                    RelayConfig::without_credentials(
                        r.room,
                        r.url,
                        r.pin.map(Secret::new),
                        r.display_suffix,
                    )
                }),
                split_after: self.split_after_s.map(Duration::from_secs),
            },
            until: match self.until {
                Some(u) => Some(time(&u)?),
                None => None,
            },
            started_at: time(&self.started_at).unwrap_or_else(SystemTime::now),
        })
    }
}

/// Reads the API's rooms; a broken file is logged and moved aside (`.broken`).
fn load(file: &Path) -> Vec<ApiRoom> {
    let text = match std::fs::read_to_string(file) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Vec::new(),
        Err(e) => {
            tracing::error!(path = %file.display(), error = %e, "cannot read the rooms started through the API");
            return Vec::new();
        }
    };
    match serde_json::from_str::<StoredFile>(&text) {
        Ok(f) => f.rooms.into_iter().filter_map(Stored::into_api).collect(),
        Err(e) => {
            let aside = file.with_extension("json.broken");
            tracing::error!(path = %file.display(), error = %e, moved_to = %aside.display(), "the rooms started through the API cannot be read; starting without them");
            let _ = std::fs::rename(file, &aside);
            Vec::new()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn api(room: u64, until: Option<SystemTime>) -> ApiRoom {
        ApiRoom {
            config: RoomConfig {
                pin: Some(Secret::new("1234")),
                split_after: Some(Duration::from_secs(3600)),
                ..RoomConfig::recorded(RoomId::from(room))
            },
            until,
            started_at: SystemTime::now(),
        }
    }

    #[test]
    fn sources_are_merged_once_and_api_rooms_survive_a_restart() {
        let dir = std::env::temp_dir().join(format!("jr-registry-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let file = dir.join("state").join("api-rooms.json");
        let r = Registry::open(
            vec![RoomConfig::recorded(RoomId::from(1))],
            Some(file.clone()),
        );
        let mut changed = r.changed();
        r.start_api(api(2, None)).unwrap();
        assert!(changed.has_changed().unwrap());
        changed.mark_unchanged();
        assert_eq!(
            r.start_api(api(1, None)),
            Err(RegistryError::AlreadyRecorded {
                room: RoomId::from(1),
                from: Source::Config
            })
        );
        assert!(
            !changed.has_changed().unwrap(),
            "a refused start changes nothing"
        );
        r.set_discovered(
            vec![
                RoomConfig::recorded(RoomId::from(2)),
                RoomConfig::recorded(RoomId::from(3)),
            ],
            vec![],
        );
        let wanted: Vec<(String, Source)> = r
            .wanted()
            .iter()
            .map(|w| (w.config.room.to_string(), w.source))
            .collect();
        assert_eq!(
            wanted,
            [
                ("1".into(), Source::Config),
                ("2".into(), Source::Api),
                ("3".into(), Source::Discovered)
            ]
        );
        assert!(matches!(
            r.stop_api(&RoomId::from(3)),
            Err(RegistryError::NotFromApi { .. })
        ));
        assert!(matches!(
            r.stop_api(&RoomId::from(9)),
            Err(RegistryError::NotRecorded(_))
        ));

        // A restart: the API's room comes back, with its pin and split_after.
        let again = Registry::open(vec![], Some(file.clone()));
        let w = again.wanted();
        assert_eq!(w.len(), 1);
        assert_eq!(w[0].config.pin.as_ref().unwrap().expose(), "1234");
        assert_eq!(w[0].config.split_after, Some(Duration::from_secs(3600)));
        again.stop_api(&RoomId::from(2)).unwrap();
        assert!(
            Registry::open(vec![], Some(file.clone()))
                .wanted()
                .is_empty()
        );

        // A broken file is moved aside, not fatal.
        std::fs::write(&file, "{not json").unwrap();
        assert!(
            Registry::open(vec![], Some(file.clone()))
                .wanted()
                .is_empty()
        );
        assert!(file.with_extension("json.broken").exists());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn rooms_with_an_end_expire() {
        let r = Registry::open(vec![], None);
        let now = SystemTime::now();
        r.start_api(api(5, Some(now + Duration::from_secs(60))))
            .unwrap();
        r.start_api(api(6, None)).unwrap();
        assert_eq!(r.next_expiry(now), Some(Duration::from_secs(60)));
        assert!(r.expire(now).is_empty());
        assert_eq!(
            r.expire(now + Duration::from_secs(61)),
            vec![RoomId::from(5)]
        );
        assert_eq!(r.wanted().len(), 1);
        assert_eq!(r.next_expiry(now), None);
    }
}
