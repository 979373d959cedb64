//! `[janus] rooms = "all"`: every room of the Janus is recorded without listing it. The
//! VideoRoom's rooms are listed every `discover_every` (with `admin_key`, private ones too);
//! the rooms chosen (`include`, `exclude`, `description`) go to the [`Registry`], which
//! starts their watchers; a room gone from the list is no longer wanted (its watcher has
//! already finalized its files on Janus's `destroyed`). A room that needs a PIN we do not
//! have is reported as skipped (log, API), once, not retried in a loop.

use std::collections::HashSet;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::config::{JanusConfig, RoomConfig};
use crate::ids::RoomId;
use crate::janus::messages::{ListedRoom, parse_room_list};
use crate::janus::videoroom::Request;
use crate::janus::{Handle, Session};
use crate::registry::{Registry, Skipped};
use crate::secret::Secret;

/// Which listed rooms are recorded.
#[derive(Debug, Clone)]
pub struct Choice {
    include: Vec<RoomId>,
    exclude: Vec<RoomId>,
    description: Option<regex::Regex>,
}

impl Choice {
    /// From `[janus]` (its regex was checked when the config was loaded).
    pub fn new(janus: &JanusConfig) -> Choice {
        Choice {
            include: janus.include.clone(),
            exclude: janus.exclude.clone(),
            description: janus
                .description
                .as_deref()
                .and_then(|re| regex::Regex::new(re).ok()),
        }
    }

    /// Whether `room` is to be recorded.
    pub fn takes(&self, room: &ListedRoom) -> bool {
        (self.include.is_empty() || self.include.contains(&room.room))
            && !self.exclude.contains(&room.room)
            && self
                .description
                .as_ref()
                .is_none_or(|re| room.description.as_deref().is_some_and(|d| re.is_match(d)))
    }
}

/// Splits the listed rooms into those to record (with the config's pin, relay and
/// `split_after` for a room it also lists) and those skipped.
pub fn choose(
    listed: &[ListedRoom],
    choice: &Choice,
    configured: impl Fn(&RoomId) -> Option<RoomConfig>,
) -> (Vec<RoomConfig>, Vec<Skipped>) {
    let mut rooms = Vec::new();
    let mut skipped = Vec::new();
    for l in listed.iter().filter(|l| choice.takes(l)) {
        let config = configured(&l.room).unwrap_or_else(|| RoomConfig::recorded(l.room.clone()));
        if l.pin_required && config.pin.is_none() {
            skipped.push(Skipped {
                room: l.room.clone(),
                why: "the room needs a PIN: give it in a [[rooms]] table".into(),
            });
        } else {
            rooms.push(config);
        }
    }
    (rooms, skipped)
}

/// Lists the rooms every `janus.discover_every` until `stop` or the session ends. A failed
/// listing keeps what was found before (a hiccup must not stop recordings).
pub async fn run(
    session: Session,
    janus: JanusConfig,
    registry: Registry,
    stop: CancellationToken,
) {
    let choice = Choice::new(&janus);
    let mut handle: Option<Handle> = None;
    let mut told: HashSet<RoomId> = HashSet::new();
    let mut tick = tokio::time::interval(janus.discover_every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.cancelled() => break,
            _ = session.closed() => break,
        }
        match list(&session, &mut handle, janus.admin_key.as_ref()).await {
            Ok(listed) => {
                let (rooms, skipped) = choose(&listed, &choice, |r| registry.configured(r));
                for s in &skipped {
                    if told.insert(s.room.clone()) {
                        tracing::warn!(room = %s.room, reason = %s.why, "room not recorded");
                    }
                }
                told.retain(|r| skipped.iter().any(|s| s.room == *r));
                registry.set_discovered(rooms, skipped);
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot list the rooms; keeping the ones found before");
                // A fresh handle next time: this one may be gone.
                if let Some(h) = handle.take() {
                    tokio::spawn(h.detach());
                }
            }
        }
    }
    if let Some(h) = handle {
        let _ = tokio::time::timeout(Duration::from_secs(1), h.detach()).await;
    }
}

/// One `list` request on a VideoRoom handle of our own (attached on first use).
async fn list(
    session: &Session,
    handle: &mut Option<Handle>,
    admin_key: Option<&Secret>,
) -> Result<Vec<ListedRoom>, crate::janus::JanusError> {
    if handle.is_none() {
        *handle = Some(session.attach_videoroom().await?);
    }
    let h = handle.as_ref().expect("attached above");
    let body = serde_json::to_value(Request::List {
        admin_key: admin_key.map(Secret::expose),
    })
    .map_err(|e| crate::janus::JanusError::Protocol(e.to_string()))?;
    let (data, _) = h.message(body, None).await?;
    parse_room_list(&data).ok_or_else(|| {
        crate::janus::JanusError::Protocol(format!(
            "list answered {}",
            crate::text::Escaped(&data.to_string())
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn listed(room: u64, description: &str, pin_required: bool) -> ListedRoom {
        ListedRoom {
            room: RoomId::from(room),
            description: Some(description.into()),
            pin_required,
        }
    }

    #[test]
    fn rooms_are_chosen_and_pinned_rooms_without_a_pin_skipped() {
        let janus: JanusConfig = toml::from_str(
            r#"url = "ws://j"
               rooms = "all"
               exclude = [3]
               description = "^class-""#,
        )
        .unwrap();
        let choice = Choice::new(&janus);
        let rooms = [
            listed(1, "class-7a", false),
            listed(2, "hearing", false),
            listed(3, "class-8", false),
            listed(4, "class-9", true),
            listed(5, "class-10", true),
        ];
        let configured = |r: &RoomId| {
            (*r == RoomId::from(5)).then(|| RoomConfig {
                pin: Some(Secret::new("55")),
                ..RoomConfig::recorded(r.clone())
            })
        };
        let (take, skipped) = choose(&rooms, &choice, configured);
        let ids: Vec<String> = take.iter().map(|r| r.room.to_string()).collect();
        assert_eq!(ids, ["1", "5"]);
        assert_eq!(take[1].pin.as_ref().unwrap().expose(), "55");
        assert_eq!(skipped.len(), 1);
        assert_eq!(skipped[0].room, RoomId::from(4));
        assert!(skipped[0].why.contains("PIN"));
    }

    #[test]
    fn the_list_answer_is_parsed() {
        let data = serde_json::json!({
            "videoroom": "success",
            "list": [
                {"room": 1234, "description": "Demo Room", "pin_required": false, "max_publishers": 6},
                {"room": "hearing-7", "pin_required": true},
                {"description": "no id"},
                {"room": 1.5}
            ]
        });
        let rooms = parse_room_list(&data).unwrap();
        assert_eq!(rooms.len(), 2);
        assert_eq!(rooms[0].description.as_deref(), Some("Demo Room"));
        assert!(rooms[1].pin_required);
        assert!(parse_room_list(&serde_json::json!({"videoroom": "event"})).is_none());
    }
}
