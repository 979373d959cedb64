//! The room watcher: one task per configured room. A watcher handle joins the room without
//! publishing, learns the publishers from `joined`, follows `publishers`, `unpublished`,
//! `leaving`, `kicked` and `destroyed`, and runs one [`feed`](mod@crate::feed) task per publisher.
//! A room that cannot be joined (no such room, wrong pin) is retried; other rooms go on.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::oneshot;
use tokio::task::{Id, JoinSet};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::config::RoomConfig;
use crate::events::EventKind;
use crate::feed::relay::RelayTarget;
use crate::feed::{self, EndReason, FeedEnd, FeedSettings, FeedSpec, Resume};
use crate::fleet::Claim;
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

/// Watches `room` on `session` until told to stop or until the connection is lost; in a
/// fleet, under this instance's `claim` on it.
pub async fn watch(
    session: Session,
    settings: Arc<FeedSettings>,
    room: RoomConfig,
    claim: Option<Arc<Claim>>,
    stop: RoomStop,
) {
    let shutdown = &stop.room;
    let health = &settings.health;
    loop {
        health.set_room_state(&room.room, RoomState::Joining);
        match watch_once(&session, &settings, &room, claim.as_ref(), &stop).await {
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
    claim: Option<&Arc<Claim>>,
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
        let janus = crate::janus::redacted(session.url());
        match RoomManifest::create(&settings.out_dir, &room.room, &janus, claim.map(|c| &**c)) {
            Ok(m) => Some(Arc::new(m)),
            Err(e) => {
                tracing::warn!(error = %e, "cannot write the room manifest; recording without it");
                None
            }
        }
    });
    // Forwarded feeds share nothing but the receiver's socket.
    let groups = (settings.feeds_per_subscription > 1 && settings.forward.is_none()).then(|| {
        let access = feed::group::RoomAccess {
            room: room.room.clone(),
            pin: room.pin.clone(),
            private_id,
            media: settings.media.clone(),
        };
        feed::group::Groups::new(session.clone(), access, settings.feeds_per_subscription)
    });
    let mut feeds = Feeds {
        groups,
        session: session.clone(),
        settings: settings.clone(),
        room: room.clone(),
        private_id,
        running: HashMap::new(),
        tasks: JoinSet::new(),
        task_feed: HashMap::new(),
        relay: room.relay.as_ref().map(RelayTarget::new),
        manifest: manifest.flatten(),
        waiting: VecDeque::new(),
        retries: Vec::new(),
        claim: claim.cloned(),
        taken_over: HashMap::new(),
    };
    // A takeover: each feed still publishing goes on from the previous holder's last part.
    if let Some(claim) = claim {
        let from = claim.after.as_ref().map(|h| h.instance.clone());
        for (feed, last) in claim.take_links() {
            let why = format!(
                "taken over from instance {}",
                from.as_deref().unwrap_or("?")
            );
            let resume = Resume {
                previous: Some(last),
                why,
                attempt: 0,
            };
            feeds.taken_over.insert(feed, resume);
        }
    }
    for p in publishers {
        feeds.start(p, None);
    }
    let mut freed = settings.slots.freed();
    let end = loop {
        let next_retry = feeds.retries.iter().map(|r| r.due).min();
        tokio::select! {
            _ = stop.room.cancelled() => break (stop.reason(), RoomEnd::Shutdown),
            Ok(()) = freed.changed(), if !feeds.waiting.is_empty() => feeds.take_waiting(),
            _ = sleep_until_some(next_retry) => feeds.retry_due(),
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
        settings
            .uploads
            .manifest(m.path(), &room.room, &m.started_at());
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

/// A feed task that is still wanted: its publisher publishes (as far as we know).
struct Running {
    stop: oneshot::Sender<EndReason>,
    display: Option<String>,
    /// The publisher, to subscribe again after a failure.
    publisher: Publisher,
    /// The subscription this task made again, if it is one.
    resume: Option<Resume>,
}

/// A subscription to make again once `due`.
struct Retry {
    due: Instant,
    publisher: Publisher,
    resume: Resume,
}

/// The first wait before subscribing again after a failure; it doubles with each failure
/// in a row, up to [`RESUBSCRIBE_MAX`].
pub const RESUBSCRIBE_FIRST: Duration = Duration::from_secs(1);
/// The longest wait between two tries to subscribe again.
pub const RESUBSCRIBE_MAX: Duration = Duration::from_secs(30);

/// The wait before the `attempt`-th try in a row (from 1).
fn resubscribe_after(attempt: u32) -> Duration {
    RESUBSCRIBE_FIRST
        .saturating_mul(1 << attempt.saturating_sub(1).min(16))
        .min(RESUBSCRIBE_MAX)
}

/// Sleeps until `at`; never, without it.
async fn sleep_until_some(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at.into()).await,
        None => std::future::pending().await,
    }
}

/// The feed tasks of one room.
struct Feeds {
    /// The room's shared subscriptions (none: a subscription per feed).
    groups: Option<feed::group::Groups>,
    session: Session,
    settings: Arc<FeedSettings>,
    room: RoomConfig,
    private_id: Option<u64>,
    running: HashMap<FeedId, Running>,
    tasks: JoinSet<FeedEnd>,
    task_feed: HashMap<Id, FeedId>,
    /// Publishers refused at `max_feeds`, oldest first: taken when a slot frees.
    waiting: VecDeque<Publisher>,
    /// Feeds whose subscription failed while their publisher stays: subscribed again.
    retries: Vec<Retry>,
    /// Where this room's feeds are relayed, shared by its feeds.
    relay: Option<Arc<RelayTarget>>,
    /// This watch's room manifest (recorded rooms), shared by its feeds.
    manifest: Option<Arc<RoomManifest>>,
    /// In a fleet: this instance's claim on the room.
    claim: Option<Arc<Claim>>,
    /// A takeover: the feeds the previous holder recorded, each going on from its last part
    /// (taken when the feed is first subscribed).
    taken_over: HashMap<FeedId, Resume>,
}

impl Feeds {
    /// Starts recording `p` unless it is already being recorded, or is one of our own
    /// relayed publishers (which would loop); `resume` when it is subscribed again after a
    /// failure. Past `max_feeds` it waits for a slot.
    fn start(&mut self, p: Publisher, resume: Option<Resume>) {
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
            if !self.waiting.iter().any(|w| w.id == p.id) {
                span.in_scope(|| {
                    tracing::warn!(
                        max_feeds = self.settings.slots.max(),
                        "publisher refused: [limits] max_feeds reached; recorded once a slot frees"
                    )
                });
                crate::metrics::feed_refused();
                self.waiting.push_back(p);
            }
            return;
        };
        if resume.is_none() {
            // A new publication: a retry still due for the old one has no business.
            self.retries.retain(|r| r.publisher.id != p.id);
        }
        let resume = resume.or_else(|| self.taken_over.remove(&p.id));
        match &resume {
            None => span.in_scope(|| tracing::info!("publisher announced; subscribing")),
            Some(r) => span.in_scope(
                || tracing::info!(after = %r.why, attempt = r.attempt, "subscribing again"),
            ),
        }
        let (stop, stop_rx) = oneshot::channel();
        self.running.insert(
            p.id.clone(),
            Running {
                stop,
                display: p.display.clone(),
                publisher: p.clone(),
                resume: resume.clone(),
            },
        );
        let id = p.id.clone();
        let spec = FeedSpec {
            room: self.room.room.clone(),
            pin: self.room.pin.clone(),
            secret: self.room.secret.clone(),
            private_id: self.private_id,
            publisher: p,
            announced: Instant::now(),
            record: self.room.record,
            relay: self.relay.clone(),
            manifest: self.manifest.clone(),
            split_after: self.room.split_after.or(self.settings.split_after),
            resume,
            claim: self.claim.clone(),
            groups: self.groups.clone(),
        };
        let run = feed::run(self.session.clone(), self.settings.clone(), spec, stop_rx);
        let task = async move {
            let _slot = slot;
            run.await
        };
        let handle = self.tasks.spawn(task.instrument(span));
        self.task_feed.insert(handle.id(), id);
    }

    /// Publishers that waited for a slot, oldest first, while slots are free.
    fn take_waiting(&mut self) {
        // Is a slot free? (Probed and given back at once: nothing else runs before `start`
        // takes it, there is no await between.) A publisher is refused and counted once.
        while !self.waiting.is_empty() && self.settings.slots.take().is_some() {
            if let Some(p) = self.waiting.pop_front() {
                self.start(p, None);
            }
        }
    }

    /// Subscribes again to the feeds whose wait is over, if their publisher still
    /// publishes (as far as the room's events tell; the feed checks with Janus too).
    fn retry_due(&mut self) {
        let now = Instant::now();
        let (due, later): (Vec<Retry>, Vec<Retry>) =
            self.retries.drain(..).partition(|r| r.due <= now);
        self.retries = later;
        for r in due {
            self.start(r.publisher, Some(r.resume));
        }
    }

    /// Tells one feed to end (it finalizes its file on its own).
    fn stop(&mut self, feed: &FeedId, reason: EndReason) {
        self.waiting.retain(|w| w.id != *feed);
        self.retries.retain(|r| r.publisher.id != *feed);
        match self.running.remove(feed) {
            Some(r) => {
                tracing::info!(%feed, display = ?r.display, %reason, "publisher gone");
                if let Some(parts) = &self.settings.fleet {
                    parts.ended(&self.room.room, feed);
                }
                let _ = r.stop.send(reason);
            }
            None => tracing::debug!(%feed, %reason, "not a feed we record"),
        }
    }

    /// Ends every feed and waits for all of them to finalize.
    async fn stop_all(&mut self, reason: EndReason) {
        self.waiting.clear();
        self.retries.clear();
        for (_, r) in self.running.drain() {
            let _ = r.stop.send(reason.clone());
        }
        while let Some(done) = self.tasks.join_next_with_id().await {
            self.reap(done);
        }
    }

    /// Deals with a feed task's end: a failure that may heal while the publisher stays is
    /// subscribed again after a backoff, the new file linked to the last one; a panic ends
    /// only that feed.
    fn reap(&mut self, done: Result<(Id, FeedEnd), tokio::task::JoinError>) {
        let (id, outcome) = match done {
            Ok((id, end)) => (id, Ok(end)),
            Err(e) => (e.id(), Err(e)),
        };
        let feed = self.task_feed.remove(&id);
        let end = match outcome {
            Ok(end) => {
                tracing::debug!(feed = ?feed.as_ref().map(ToString::to_string), reason = %end.reason, "feed task ended");
                Some(end)
            }
            Err(e) => {
                tracing::error!(feed = ?feed.as_ref().map(ToString::to_string), error = %e, "feed task crashed");
                None
            }
        };
        // Still wanted (no `unpublished`, `leaving`... took it away) and ended by itself.
        let Some(feed) = feed else { return };
        if !self.running.get(&feed).is_some_and(|r| r.stop.is_closed()) {
            return;
        }
        let Some(r) = self.running.remove(&feed) else {
            return;
        };
        let Some(end) = end.filter(|e| e.may_heal) else {
            // It may be announced again later.
            return;
        };
        let attempt = r.resume.as_ref().map_or(1, |x| x.attempt + 1);
        // Nothing written this time: the link goes to the last file before.
        let previous = end
            .last
            .or_else(|| r.resume.as_ref().and_then(|x| x.previous.clone()));
        let wait = resubscribe_after(attempt);
        tracing::warn!(%feed, display = ?r.display, reason = %end.reason, attempt, "the subscription failed while the publisher stays; subscribing again in {wait:?}");
        self.retries.push(Retry {
            due: Instant::now() + wait,
            publisher: r.publisher,
            resume: Resume {
                previous,
                why: end.reason.to_string(),
                attempt,
            },
        });
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
                    self.start(p, None);
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
                // Often (every change of speaker): at debug level, the name escaped (`?`).
                tracing::debug!(feed = ?feed.map(|f| f.to_string()), display = ?who, talking, "talking");
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
