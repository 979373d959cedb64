//! The room watcher: one task per configured room. A watcher handle joins the room without
//! publishing, learns the publishers from `joined`, follows `publishers`, `unpublished`,
//! `leaving`, `kicked` and `destroyed`, and runs one [`feed`](mod@crate::feed) task per publisher.
//! A room that cannot be joined (no such room, wrong pin) is retried; other rooms go on.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::oneshot;
use tokio::task::{Id, JoinSet};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::config::RoomConfig;
use crate::events::EventKind;
use crate::feed::relay::RelayTarget;
use crate::feed::{self, EndReason, FeedSettings, FeedSpec};
use crate::health::RoomState;
use crate::ids::FeedId;
use crate::janus::messages::{Incoming, Publisher, VideoRoomEvent};
use crate::janus::videoroom::Request;
use crate::janus::{Handle, JanusError, Session};
use crate::manifest::RoomManifest;
use crate::publish::OwnFeed;

/// How long to wait before trying a refused or vanished room again.
pub const ROOM_RETRY: Duration = Duration::from_secs(30);
/// The display name of our watcher participant.
pub const WATCHER_DISPLAY: &str = "janus-recorder";

/// How one stint of watching a room ended.
#[derive(Debug)]
enum RoomEnd {
    Shutdown,
    ConnectionLost,
    /// Could not join, or was thrown out: try again later.
    Retry(WatchError),
}

/// Why a room is not being watched; the watcher tries again after [`ROOM_RETRY`].
#[derive(Debug, thiserror::Error)]
pub enum WatchError {
    /// No VideoRoom handle could be attached.
    #[error(transparent)]
    Attach(JanusError),
    /// The join request failed (no such room, a wrong pin...).
    #[error("cannot join: {0}")]
    Join(#[source] JanusError),
    /// Janus answered the join with something other than `joined`.
    #[error("join answered {0:?}")]
    JoinAnswer(Box<VideoRoomEvent>),
    /// Our watcher participant was kicked, or made to leave.
    #[error("our watcher was removed from the room")]
    Removed,
    #[error("the room was destroyed")]
    Destroyed,
}

/// How a room watcher is told to stop, and why.
#[derive(Debug, Clone)]
pub struct RoomStop {
    /// The whole service is stopping.
    pub service: CancellationToken,
    /// This room is to stop: a child of `service`, also cancelled alone when the room is no
    /// longer wanted (a reload removed it, the API stopped it, it is gone from Janus).
    pub room: CancellationToken,
    /// Why `room` was cancelled alone, set before it is.
    pub why: Arc<std::sync::OnceLock<EndReason>>,
}

impl RoomStop {
    /// The end reason for this room's recordings once `room` is cancelled.
    pub fn reason(&self) -> EndReason {
        if self.service.is_cancelled() {
            EndReason::Shutdown
        } else {
            self.why.get().cloned().unwrap_or(EndReason::Reconfigured)
        }
    }
}

/// Watches `room` on `session` until told to stop or until the connection is lost.
pub async fn watch(
    session: Session,
    settings: Arc<FeedSettings>,
    room: RoomConfig,
    stop: RoomStop,
) {
    let shutdown = &stop.room;
    let health = &settings.health;
    loop {
        health.set_room_state(&room.room, RoomState::Joining);
        match watch_once(&session, &settings, &room, &stop).await {
            RoomEnd::Shutdown | RoomEnd::ConnectionLost => break,
            RoomEnd::Retry(why) => {
                tracing::error!(reason = %why, "room not recorded; retrying in {ROOM_RETRY:?}");
                health.error(format!("room {}: {why}", room.room));
                health.set_room_state(&room.room, RoomState::Retrying(why.to_string()));
                tokio::select! {
                    _ = tokio::time::sleep(ROOM_RETRY) => {}
                    _ = shutdown.cancelled() => break,
                    _ = session.closed() => break,
                }
            }
        }
    }
    health.clear_room_state(&room.room);
}

async fn watch_once(
    session: &Session,
    settings: &Arc<FeedSettings>,
    room: &RoomConfig,
    stop: &RoomStop,
) -> RoomEnd {
    let (mut handle, private_id, publishers) = match join(session, room).await {
        Ok(v) => v,
        Err(_) if session.is_closed() => return RoomEnd::ConnectionLost,
        Err(e) => return RoomEnd::Retry(e),
    };
    tracing::info!(publishers = publishers.len(), "watching room");
    let _watched = count_as_watched(settings);
    settings
        .health
        .set_room_state(&room.room, RoomState::Watching);
    settings.events.emit(
        EventKind::RoomStarted,
        serde_json::json!({
            "server": &*settings.server,
            "room": room.room,
            "publishers": publishers.len(),
        }),
    );
    let manifest = room.record.then(|| {
        match RoomManifest::create(&settings.out_dir, &room.room, session.url()) {
            Ok(m) => Some(Arc::new(m)),
            Err(e) => {
                tracing::warn!(error = %e, "cannot write the room manifest; recording without it");
                None
            }
        }
    });
    let mut feeds = Feeds {
        session: session.clone(),
        settings: settings.clone(),
        room: room.clone(),
        private_id,
        running: HashMap::new(),
        tasks: JoinSet::new(),
        task_feed: HashMap::new(),
        relay: room.relay.as_ref().map(RelayTarget::new),
        manifest: manifest.flatten(),
    };
    for p in publishers {
        feeds.start(p);
    }
    let end = loop {
        tokio::select! {
            _ = stop.room.cancelled() => break (stop.reason(), RoomEnd::Shutdown),
            msg = handle.next_event() => {
                let Some(msg) = msg else {
                    break (EndReason::ConnectionLost, RoomEnd::ConnectionLost);
                };
                if let Some(end) = feeds.on_message(msg) {
                    break end;
                }
            }
            Some(done) = feeds.tasks.join_next_with_id() => feeds.reap(done),
        }
    };
    let reason = end.0.to_string();
    feeds.stop_all(end.0).await;
    if let Some(m) = &feeds.manifest {
        m.close(&reason);
    }
    settings.events.emit(
        EventKind::RoomEnded,
        serde_json::json!({
            "server": &*settings.server,
            "room": room.room,
            "reason": reason,
            "manifest": feeds.manifest.as_ref().map(|m| m.path().display().to_string()),
        }),
    );
    if matches!(end.1, RoomEnd::Shutdown) {
        let leave = handle.message(Request::Leave.body(), None);
        let _ = tokio::time::timeout(Duration::from_secs(1), leave).await;
    }
    end.1
}

/// Attaches and joins as a non-publishing participant.
async fn join(
    session: &Session,
    room: &RoomConfig,
) -> Result<(Handle, Option<u64>, Vec<Publisher>), WatchError> {
    let handle = session
        .attach_videoroom()
        .await
        .map_err(WatchError::Attach)?;
    let body = Request::join_publisher(&room.room, WATCHER_DISPLAY, room.pin.as_ref()).body();
    let (data, _) = handle.message(body, None).await.map_err(WatchError::Join)?;
    match VideoRoomEvent::parse(&data) {
        VideoRoomEvent::Joined {
            private_id,
            publishers,
            ..
        } => Ok((handle, private_id, publishers)),
        other => Err(WatchError::JoinAnswer(Box::new(other))),
    }
}

/// A feed task that is still wanted.
struct Running {
    stop: oneshot::Sender<EndReason>,
    display: Option<String>,
}

/// The feed tasks of one room.
struct Feeds {
    session: Session,
    settings: Arc<FeedSettings>,
    room: RoomConfig,
    private_id: Option<u64>,
    running: HashMap<FeedId, Running>,
    tasks: JoinSet<EndReason>,
    task_feed: HashMap<Id, FeedId>,
    /// Where this room's feeds are relayed, shared by its feeds.
    relay: Option<Arc<RelayTarget>>,
    /// This watch's room manifest (recorded rooms), shared by its feeds.
    manifest: Option<Arc<RoomManifest>>,
}

impl Feeds {
    /// Starts recording `p` unless it is already being recorded, or is one of our own
    /// relayed publishers (which would loop).
    fn start(&mut self, p: Publisher) {
        let own = OwnFeed {
            server: self.session.url().clone(),
            room: self.room.room.clone(),
            feed: p.id.clone(),
        };
        if self.settings.own.contains(&own) {
            tracing::info!(feed = %p.id, display = ?p.display, "our own relayed publisher; not recorded or relayed");
            return;
        }
        if self.running.contains_key(&p.id) {
            tracing::debug!(feed = %p.id, "already recording");
            return;
        }
        let span = tracing::info_span!("feed", feed = %p.id, display = ?p.display.as_deref().unwrap_or(""));
        let Some(slot) = self.settings.slots.take() else {
            span.in_scope(|| {
                tracing::warn!(
                    max_feeds = self.settings.slots.max(),
                    "publisher refused: [limits] max_feeds reached; not recorded"
                )
            });
            crate::metrics::feed_refused();
            return;
        };
        span.in_scope(|| tracing::info!("publisher announced; subscribing"));
        let (stop, stop_rx) = oneshot::channel();
        self.running.insert(
            p.id.clone(),
            Running {
                stop,
                display: p.display.clone(),
            },
        );
        let id = p.id.clone();
        let spec = FeedSpec {
            room: self.room.room.clone(),
            pin: self.room.pin.clone(),
            private_id: self.private_id,
            publisher: p,
            announced: Instant::now(),
            record: self.room.record,
            relay: self.relay.clone(),
            manifest: self.manifest.clone(),
            split_after: self.room.split_after.or(self.settings.split_after),
        };
        let run = feed::run(self.session.clone(), self.settings.clone(), spec, stop_rx);
        let task = async move {
            let _slot = slot;
            run.await
        };
        let handle = self.tasks.spawn(task.instrument(span));
        self.task_feed.insert(handle.id(), id);
    }

    /// Tells one feed to end (it finalizes its file on its own).
    fn stop(&mut self, feed: &FeedId, reason: EndReason) {
        match self.running.remove(feed) {
            Some(r) => {
                tracing::info!(%feed, display = ?r.display, %reason, "publisher gone");
                let _ = r.stop.send(reason);
            }
            None => tracing::debug!(%feed, %reason, "not a feed we record"),
        }
    }

    /// Ends every feed and waits for all of them to finalize.
    async fn stop_all(&mut self, reason: EndReason) {
        for (_, r) in self.running.drain() {
            let _ = r.stop.send(reason.clone());
        }
        while let Some(done) = self.tasks.join_next_with_id().await {
            self.reap(done);
        }
    }

    /// Logs how a feed task ended; a panic ends only that feed.
    fn reap(&mut self, done: Result<(Id, EndReason), tokio::task::JoinError>) {
        let (id, outcome) = match done {
            Ok((id, reason)) => (id, Ok(reason)),
            Err(e) => (e.id(), Err(e)),
        };
        let feed = self.task_feed.remove(&id);
        match outcome {
            Ok(reason) => {
                tracing::debug!(feed = ?feed.as_ref().map(ToString::to_string), %reason, "feed task ended")
            }
            Err(e) => {
                tracing::error!(feed = ?feed.as_ref().map(ToString::to_string), error = %e, "feed task crashed")
            }
        }
        // A feed that ended by itself (hangup, ICE failure) may be announced again later.
        if let Some(feed) = feed
            && self.running.get(&feed).is_some_and(|r| r.stop.is_closed())
        {
            self.running.remove(&feed);
        }
    }

    /// Handles one message for the watcher handle; returns how the room ends, if it does.
    fn on_message(&mut self, msg: Incoming) -> Option<(EndReason, RoomEnd)> {
        let Incoming::Event { data, .. } = msg else {
            tracing::debug!(?msg, "watcher handle message");
            return None;
        };
        match VideoRoomEvent::parse(&data) {
            VideoRoomEvent::Publishers { publishers, .. } => {
                for p in publishers {
                    self.start(p);
                }
            }
            VideoRoomEvent::Unpublished { feed: Some(f) } => self.stop(&f, EndReason::Unpublished),
            VideoRoomEvent::Leaving { feed: Some(f) } => self.stop(&f, EndReason::Leaving),
            VideoRoomEvent::Kicked { feed: Some(f) } => self.stop(&f, EndReason::Kicked),
            VideoRoomEvent::Kicked { feed: None } | VideoRoomEvent::Leaving { feed: None } => {
                return Some((EndReason::Kicked, RoomEnd::Retry(WatchError::Removed)));
            }
            VideoRoomEvent::Destroyed { .. } => {
                return Some((
                    EndReason::RoomDestroyed,
                    RoomEnd::Retry(WatchError::Destroyed),
                ));
            }
            VideoRoomEvent::Talking { feed, talking } => {
                let who = feed
                    .as_ref()
                    .and_then(|f| self.running.get(f))
                    .and_then(|r| r.display.clone());
                tracing::info!(feed = ?feed.map(|f| f.to_string()), display = ?who, talking, "talking");
            }
            VideoRoomEvent::Error { code, message } => {
                tracing::warn!(code, message = %crate::text::Escaped(&message), "VideoRoom error event")
            }
            other => tracing::info!(event = ?other, "room event not acted on"),
        }
        None
    }
}

/// Counts the room as watched (for the status line) until the returned guard is dropped.
fn count_as_watched(settings: &Arc<FeedSettings>) -> impl Drop + use<> {
    settings.health.room_joined();
    struct Left(Arc<FeedSettings>);
    impl Drop for Left {
        fn drop(&mut self) {
            self.0.health.room_left();
        }
    }
    Left(settings.clone())
}
