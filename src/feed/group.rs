//! Many feeds over one subscription: one Janus subscriber handle and one str0m session
//! (one PeerConnection, one ICE and DTLS) carrying the streams of up to
//! `[janus] feeds_per_subscription` publishers of a room. Per feed, Janus spends a third of
//! what a subscription of its own costs it (the README's "What a subscription costs Janus").
//!
//! Each feed keeps its own task, state machine and file ([`super`]); only the subscription is
//! shared. A [`Group`] task owns the handle and the session:
//! - a feed joining is a `join` (the group's first) or a `subscribe` with its streams, a feed
//!   leaving an `unsubscribe`; each is answered by a new SDP offer from Janus, which the
//!   session accepts between two turns of the media loop ([`RtcSession::renegotiate`]), so
//!   the feeds already flowing go on. Janus also renegotiates by itself when a publisher
//!   goes (its `autoupdate`), and postpones a change while an offer waits for our answer
//!   (`updating`): every offer, asked for or not, is answered in turn.
//! - the session's events go to the feeds by mid, in one batch per feed and loop batch;
//!   session-wide ones (connected, ICE down, failed) and Janus's hangup go to every feed.
//! - a failure of the session or the handle ends every feed of the group with it; the room
//!   subscribes each again (`Resume`) into another group, as it does after any failure.
//!
//! [`Groups`] (one per watched room) seats each new feed in a group with a free seat, or
//! starts a group.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use foldhash::{HashMap, HashMapExt};
use futures_util::future::BoxFuture;
use serde_json::Value;
use str0m::media::Mid;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tracing::Instrument;

use super::{EndReason, SubscribeError, streams_to_record, tracks_for};
use crate::ids::{FeedId, RoomId};
use crate::janus::messages::{
    Incoming, Jsep, Publisher, StreamKind, SubscribedStream, VideoRoomEvent,
};
use crate::janus::videoroom::{Request, SubscribeStream, TopLayers};
use crate::janus::{Handle, JanusError, Session};
use crate::media::Codec;
use crate::rtc::{MediaLoop, RtcEvent, RtcSession};
use crate::secret::Secret;

/// Janus's error code for a feed (or a feed's mid) that is not publishing.
pub(super) const NO_SUCH_FEED: i64 = 428;
/// Batches a feed's task may have waiting before the group drops its frames (5 s of the
/// shortest batches, as the media loop's own limit per session).
const MEMBER_BATCHES: usize = 256;
/// The longest Janus's offer waits for feeds whose streams it takes away to leave: their
/// end (at most a second after they are told, `recording::END_WAIT_MAX`) after the room
/// watcher hears of their publishers late (half a second after the others at 100 feeds).
const OFFER_HOLD_MAX: Duration = Duration::from_secs(2);

/// What the room's feeds subscribe through: its groups, and what a new one needs.
#[derive(Clone)]
pub struct Groups {
    inner: Arc<GroupsInner>,
}

impl std::fmt::Debug for Groups {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Groups")
            .field("room", &self.inner.access.room)
            .field("size", &self.inner.size)
            .finish()
    }
}

struct GroupsInner {
    session: Session,
    access: Arc<RoomAccess>,
    /// Feeds per group.
    size: usize,
    groups: Mutex<Vec<GroupRef>>,
    next: std::sync::atomic::AtomicU32,
}

/// A running group, as [`Groups`] sees it.
struct GroupRef {
    seats: Arc<Mutex<Seats>>,
    commands: mpsc::UnboundedSender<Command>,
}

/// A group's seats: taken by its feeds and the feeds joining it. A group closes (takes no
/// one) when it fails, while its ICE is down, and once its last feed left; seats are taken
/// and the group closed under one lock, so no feed joins a group that is ending.
#[derive(Debug)]
struct Seats {
    taken: usize,
    open: bool,
    /// The group's task has ended (its commands go nowhere).
    ended: bool,
}

/// What every subscription of a room needs: the room, how to join it, the media loop.
pub struct RoomAccess {
    pub room: RoomId,
    pub pin: Option<Secret>,
    /// The room watcher's private id (rooms with `require_pvtid` need it).
    pub private_id: Option<u64>,
    pub media: MediaLoop,
}

impl Groups {
    /// The groups of one watched room, `size` feeds each.
    pub fn new(session: Session, access: RoomAccess, size: usize) -> Groups {
        Groups {
            inner: Arc::new(GroupsInner {
                session,
                access: Arc::new(access),
                size: size.max(1),
                groups: Mutex::new(Vec::new()),
                next: std::sync::atomic::AtomicU32::new(1),
            }),
        }
    }

    /// Subscribes to `publisher`'s recorded streams in a group with a free seat (or a new
    /// one): its place in the group and the tracks to record.
    pub async fn join(&self, publisher: &Publisher) -> Result<Joined, SubscribeError> {
        // A group that ended before it asked Janus for this feed's streams (its last feed left,
        // or it failed for the others') is no fault of this feed: it takes a seat elsewhere.
        for _ in 0..3 {
            let commands = self.seat();
            let (reply, answer) = oneshot::channel();
            let join = Command::Join {
                publisher: publisher.clone(),
                reply,
            };
            if commands.send(join).is_err() {
                continue;
            }
            match answer.await {
                Ok(Err(SubscribeError::GroupEnded)) | Err(_) => continue,
                Ok(joined) => return joined,
            }
        }
        Err(SubscribeError::GroupEnded)
    }

    /// A seat in an open group with room, or in a new group.
    fn seat(&self) -> mpsc::UnboundedSender<Command> {
        let inner = &self.inner;
        let mut groups = inner.groups.lock().expect("groups lock");
        groups.retain(|g| !g.seats.lock().expect("seats lock").ended);
        for g in groups.iter() {
            let mut seats = g.seats.lock().expect("seats lock");
            if seats.open && seats.taken < inner.size {
                seats.taken += 1;
                return g.commands.clone();
            }
        }
        let seats = Arc::new(Mutex::new(Seats {
            taken: 1,
            open: true,
            ended: false,
        }));
        let (commands, rx) = mpsc::unbounded_channel();
        let n = inner
            .next
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let group = Group {
            access: inner.access.clone(),
            seats: seats.clone(),
            commands: rx,
            handle: None,
            rtc: None,
            connected: false,
            members: HashMap::new(),
            by_mid: HashMap::new(),
            joining: Vec::new(),
            leaving: Vec::new(),
            streams: Vec::new(),
            offer: None,
            in_flight: None,
            subscribed: false,
            janus_up: false,
            candidates: Vec::new(),
            batch: None,
            to_self: commands.clone(),
            pending_keyframes: Vec::new(),
            offer_held_until: None,
        };
        // Its own span, not the first feed's: it outlives that feed.
        let span =
            tracing::info_span!(parent: None, "subscription", room = %inner.access.room, group = n);
        tokio::spawn(group.run(inner.session.clone()).instrument(span));
        groups.push(GroupRef {
            seats,
            commands: commands.clone(),
        });
        commands
    }
}

/// A feed's place in a group: what [`Groups::join`] gives.
pub struct Joined {
    pub member: Member,
    pub tracks: Vec<(Mid, Codec)>,
}

/// What a group hands one of its feeds.
enum ToMember {
    /// Session events of this feed's mids, and the session-wide ones.
    Rtc(Vec<RtcEvent>),
    /// A Janus message about the subscription (its hangup, a layer switch on one of the
    /// feed's mids, ...).
    Janus(Incoming),
    /// The subscription is over for everyone.
    End(EndReason),
}

/// What a feed task gets from its group: the next input.
pub enum MemberInput {
    Rtc(RtcEvent),
    Janus(Incoming),
    End(EndReason),
}

/// A feed's handle on its group: its events, and its requests to the shared session.
/// Dropping it leaves the group (its streams are unsubscribed).
pub struct Member {
    feed: FeedId,
    commands: mpsc::UnboundedSender<Command>,
    events: mpsc::Receiver<ToMember>,
    queue: VecDeque<RtcEvent>,
    /// The batch period last asked for.
    batch: Option<Duration>,
}

impl Member {
    /// The next input for the feed. Cancel-safe.
    pub async fn next(&mut self) -> MemberInput {
        loop {
            if let Some(ev) = self.queue.pop_front() {
                return MemberInput::Rtc(ev);
            }
            match self.events.recv().await {
                Some(ToMember::Rtc(batch)) => self.queue.extend(batch),
                Some(ToMember::Janus(msg)) => return MemberInput::Janus(msg),
                Some(ToMember::End(reason)) => return MemberInput::End(reason),
                // The group ended without a word (its task is gone): as a failure.
                None => {
                    return MemberInput::End(EndReason::Failed(super::Failure::Subscribe(
                        "the shared subscription ended".into(),
                    )));
                }
            }
        }
    }

    /// A media event already received and not taken yet; `None` without waiting for one.
    pub fn queued(&mut self) -> Option<RtcEvent> {
        self.queue.pop_front()
    }

    /// Asks the publisher of `mid` (one of this feed's) for a keyframe.
    pub fn request_keyframe(&mut self, mid: Mid) {
        let _ = self.commands.send(Command::Keyframe(mid));
    }

    /// The feed takes its frames every `every`; the session's batches are the shortest any
    /// of its feeds asks for.
    pub fn batch_reads(&mut self, every: Duration) {
        if self.batch != Some(every) {
            self.batch = Some(every);
            let _ = self.commands.send(Command::Batch(self.feed.clone(), every));
        }
    }

    /// What was received but not yet handed out (the feed is ending: its last frames).
    pub async fn take_received(&mut self) -> Vec<RtcEvent> {
        let (tx, rx) = oneshot::channel();
        if self.commands.send(Command::Take(tx)).is_ok() {
            let _ = tokio::time::timeout(Duration::from_secs(1), rx).await;
        }
        while let Ok(msg) = self.events.try_recv() {
            if let ToMember::Rtc(batch) = msg {
                self.queue.extend(batch);
            }
        }
        self.queue.drain(..).collect()
    }
}

impl Drop for Member {
    fn drop(&mut self) {
        let _ = self.commands.send(Command::Leave(self.feed.clone()));
    }
}

/// What feeds ask of their group.
enum Command {
    Join {
        publisher: Publisher,
        reply: oneshot::Sender<Result<Joined, SubscribeError>>,
    },
    Leave(FeedId),
    Keyframe(Mid),
    Batch(FeedId, Duration),
    Take(oneshot::Sender<()>),
}

/// A feed waiting for its streams to be subscribed.
struct Joiner {
    publisher: Publisher,
    reply: oneshot::Sender<Result<Joined, SubscribeError>>,
    /// Its streams were asked for (waiting for the offer that has them).
    asked: bool,
    /// A request with others failed: it is asked for on its own, so one publisher gone
    /// does not fail the others.
    alone: bool,
}

/// A feed of the group.
struct Seat {
    to: mpsc::Sender<ToMember>,
    /// Its m-lines (routed to it unless a newer feed took one over).
    mids: Vec<Mid>,
    batch: Option<Duration>,
}

/// The Janus request under way (one at a time: Janus answers a change with an offer, which
/// is answered before the next change is asked for).
enum Asked {
    /// `join` or `subscribe` for these feeds.
    Subscribe(Vec<FeedId>),
    Unsubscribe(Vec<FeedId>),
    /// `start` with our answer to an offer.
    Answer,
    /// The group's first answer: the session set up and started.
    Setup,
}

/// The outcome of the request under way.
enum Outcome {
    Message(Result<(Value, Option<Jsep>), JanusError>),
    Setup(Result<RtcSession, SubscribeError>),
}

struct InFlight {
    asked: Asked,
    future: BoxFuture<'static, Outcome>,
}

/// One subscription shared by several feeds.
struct Group {
    access: Arc<RoomAccess>,
    seats: Arc<Mutex<Seats>>,
    commands: mpsc::UnboundedReceiver<Command>,
    handle: Option<Arc<Handle>>,
    rtc: Option<RtcSession>,
    connected: bool,
    members: HashMap<FeedId, Seat>,
    by_mid: HashMap<Mid, FeedId>,
    joining: Vec<Joiner>,
    /// Feeds that left, to unsubscribe.
    leaving: Vec<FeedId>,
    /// The subscription's streams, as Janus last told them.
    streams: Vec<SubscribedStream>,
    /// Janus's offer waiting for our answer.
    offer: Option<String>,
    in_flight: Option<InFlight>,
    /// `join` succeeded: later feeds are added with `subscribe`.
    subscribed: bool,
    /// Janus said `webrtcup`: its side of the PeerConnection is set up. Until then no
    /// `subscribe` goes (see [`Group::next_request`]).
    janus_up: bool,
    /// Candidates Janus trickled before the session was set up.
    candidates: Vec<String>,
    /// The session's batch period now.
    batch: Option<Duration>,
    /// The group's own command channel, for its members.
    to_self: mpsc::UnboundedSender<Command>,
    /// Mids whose publishers are to be asked for a keyframe once the session can take it.
    pending_keyframes: Vec<Mid>,
    /// Janus's offer waits for feeds whose streams it takes away to leave, until then at the
    /// latest (see [`Group::holds_offer`]).
    offer_held_until: Option<Instant>,
}

/// Why the group ends.
enum GroupEnd {
    /// Its last feed left.
    Empty,
    /// The subscription failed: every feed ends with this.
    Failed(EndReason),
}

/// The next request's outcome; never, without one.
async fn in_flight(f: &mut Option<InFlight>) -> Outcome {
    match f {
        Some(f) => (&mut f.future).await,
        None => std::future::pending().await,
    }
}

/// When a held offer is due; never, without one.
async fn hold_ends(until: Option<Instant>) {
    match until {
        Some(t) => tokio::time::sleep_until(t).await,
        None => std::future::pending().await,
    }
}

/// The session's next events; never, without a session.
async fn session_events(rtc: &mut Option<RtcSession>) -> Vec<RtcEvent> {
    match rtc {
        Some(r) => r.next_events().await,
        None => std::future::pending().await,
    }
}

impl Group {
    async fn run(mut self, session: Session) {
        let end = match session.attach_videoroom().await {
            Ok(mut handle) => {
                let events = handle.take_events();
                self.handle = Some(Arc::new(handle));
                self.serve(events).await
            }
            Err(e) => GroupEnd::Failed(EndReason::Failed(super::Failure::Subscribe(format!(
                "attaching to the VideoRoom plugin: {e}"
            )))),
        };
        self.close(end).await;
    }

    /// The group's loop, until its last feed left or the subscription failed.
    async fn serve(&mut self, mut janus: mpsc::Receiver<Incoming>) -> GroupEnd {
        loop {
            if self.in_flight.is_none()
                && let Err(end) = self.next_request().await
            {
                return end;
            }
            if self.members.is_empty() && self.joining.is_empty() && self.in_flight.is_none() {
                let mut seats = self.seats.lock().expect("seats lock");
                if seats.taken == 0 {
                    seats.open = false;
                    return GroupEnd::Empty;
                }
            }
            tokio::select! {
                outcome = in_flight(&mut self.in_flight) => {
                    let asked = self.in_flight.take().expect("a request was under way").asked;
                    if let Err(end) = self.on_outcome(asked, outcome) {
                        return end;
                    }
                    self.send_keyframe_requests();
                }
                events = session_events(&mut self.rtc) => {
                    if let Err(end) = self.on_session(events) {
                        return end;
                    }
                    self.send_keyframe_requests();
                }
                msg = janus.recv() => match msg {
                    Some(msg) => {
                        if let Err(end) = self.on_janus(msg) {
                            return end;
                        }
                    }
                    None => return GroupEnd::Failed(EndReason::ConnectionLost),
                },
                Some(c) = self.commands.recv() => {
                    if let Err(end) = self.on_command(c).await {
                        return end;
                    }
                }
                // The loop's next turn answers the held offer.
                () = hold_ends(self.offer_held_until) => {}
            }
        }
    }

    /// Starts the next request, if one is due: an offer to answer first, then feeds to add,
    /// then feeds to remove.
    async fn next_request(&mut self) -> Result<(), GroupEnd> {
        let handle = self.handle.clone().expect("attached");
        if self.offer.is_some() && self.rtc.is_some() && self.holds_offer() {
            // Nothing else either: Janus takes no change before our answer.
            return Ok(());
        }
        if let Some(sdp) = self.offer.take() {
            let Some(rtc) = self.rtc.as_mut() else {
                let media = self.access.media.clone();
                self.in_flight = Some(InFlight {
                    asked: Asked::Setup,
                    future: Box::pin(async move {
                        Outcome::Setup(super::answer_offer(&handle, &media, &sdp).await)
                    }),
                });
                return Ok(());
            };
            let answer = rtc.renegotiate(&sdp).await.map_err(|e| {
                tracing::error!(error = %e, "cannot accept Janus's new offer");
                failed(format!("renegotiating: {e}"))
            })?;
            // Routes for the new layout before its media comes.
            self.seat_joiners();
            let jsep = Jsep {
                kind: "answer".into(),
                sdp: answer,
            };
            self.in_flight = Some(InFlight {
                asked: Asked::Answer,
                future: Box::pin(async move {
                    Outcome::Message(handle.message(Request::Start.body(), Some(&jsep)).await)
                }),
            });
            return Ok(());
        }
        let to_ask: Vec<usize> = {
            let waiting: Vec<usize> = (0..self.joining.len())
                .filter(|&i| !self.joining[i].asked)
                .collect();
            match waiting.iter().find(|&&i| self.joining[i].alone) {
                Some(&i) => vec![i],
                None => waiting,
            }
        };
        // Feeds are added once Janus's side of the PeerConnection is up. As it comes up,
        // Janus asks the publisher of every video stream the subscription has for a keyframe
        // ("New subscriber available"), also of streams added by a `subscribe` whose answer
        // has not reached it: those publishers' first frames, and that keyframe, went
        // nowhere (Janus relays a new stream only once it has our answer). A publisher that
        // starts on a keyframe request (our synthetic one in `--hold`) lost its first 40 ms;
        // a camera, one keyframe. Joiners wait the DTLS handshake at most.
        if !to_ask.is_empty() && (!self.subscribed || self.janus_up) {
            let mut streams: Vec<(bool, SubscribeStream)> = Vec::new();
            let mut feeds = Vec::new();
            for &i in &to_ask {
                let p = &self.joining[i].publisher;
                feeds.push(p.id.clone());
                streams.extend(streams_to_record(p).into_iter().map(|s| {
                    let video = s.kind == StreamKind::Video;
                    let stream = SubscribeStream {
                        feed: &p.id,
                        mid: Some(s.mid.as_str()),
                        layers: video.then_some(TopLayers::TOP),
                    };
                    (video, stream)
                }));
            }
            // Video first: Janus files RTCP it cannot place by SSRC under the first m-line,
            // which must not be audio (see `super::subscribe`).
            streams.sort_by_key(|(video, _)| !video);
            let streams: Vec<SubscribeStream> = streams.into_iter().map(|(_, s)| s).collect();
            let body = if self.subscribed {
                serde_json::json!({"request": "subscribe", "streams": streams})
            } else {
                let a = &self.access;
                Request::join_subscriber(&a.room, streams, a.private_id, a.pin.as_ref()).body()
            };
            for &i in &to_ask {
                self.joining[i].asked = true;
            }
            tracing::debug!(feeds = ?feeds.iter().map(ToString::to_string).collect::<Vec<_>>(), "subscribing");
            self.in_flight = Some(InFlight {
                asked: Asked::Subscribe(feeds),
                future: Box::pin(async move { Outcome::Message(handle.message(body, None).await) }),
            });
            return Ok(());
        }
        if !self.leaving.is_empty() && self.subscribed {
            let feeds = std::mem::take(&mut self.leaving);
            let streams: Vec<Value> = feeds
                .iter()
                .map(|f| serde_json::json!({ "feed": f }))
                .collect();
            let body = serde_json::json!({"request": "unsubscribe", "streams": streams});
            tracing::debug!(feeds = ?feeds.iter().map(ToString::to_string).collect::<Vec<_>>(), "unsubscribing");
            self.in_flight = Some(InFlight {
                asked: Asked::Unsubscribe(feeds),
                future: Box::pin(async move { Outcome::Message(handle.message(body, None).await) }),
            });
        }
        Ok(())
    }

    /// Whether Janus's layout still has streams of `feed` (none once its publisher left and
    /// Janus said so, or once we unsubscribed it).
    fn has_streams(&self, feed: &FeedId) -> bool {
        self.streams.iter().any(|s| s.feed.as_ref() == Some(feed))
    }

    /// Whether Janus's offer waits, because it takes away the streams of feeds that have not
    /// left yet. Janus's answer to our `unsubscribe` of feeds that ended is an offer of the
    /// whole subscription, in which the streams of every publisher gone by then are inactive,
    /// also of those whose `leaving` has not reached their feeds (with 100 publishers
    /// leaving at once, the last `leaving` came half a second after the first). Once the
    /// session takes that offer, str0m drops what it still holds of those streams: their
    /// feeds lost their last audio and video frame (15 of 100 in the benchmark). The offer
    /// waits until those feeds left, [`OFFER_HOLD_MAX`] at most.
    fn holds_offer(&mut self) -> bool {
        let departing = self.members.keys().any(|f| !self.has_streams(f));
        let first = self.offer_held_until.is_none();
        let held = offer_waits(departing, &mut self.offer_held_until, Instant::now());
        if held && first {
            tracing::debug!("Janus's offer waits for feeds whose streams it takes away to leave");
        }
        if departing && !held {
            tracing::debug!(
                "feeds whose streams Janus took away have not left: answering its offer"
            );
        }
        held
    }

    /// A request's answer.
    fn on_outcome(&mut self, asked: Asked, outcome: Outcome) -> Result<(), GroupEnd> {
        match (asked, outcome) {
            (Asked::Setup, Outcome::Setup(Ok(mut rtc))) => {
                for c in self.candidates.drain(..) {
                    if let Err(e) = rtc.add_remote_candidate(&c) {
                        tracing::warn!(error = %e, "ignoring Janus's candidate");
                    }
                }
                self.rtc = Some(rtc);
                self.seat_joiners();
                Ok(())
            }
            (Asked::Setup, Outcome::Setup(Err(e))) => {
                tracing::error!(error = %e, "cannot set the subscription up");
                Err(failed(e.to_string()))
            }
            (Asked::Answer, Outcome::Message(Ok(_))) => Ok(()),
            (Asked::Answer, Outcome::Message(Err(e))) => {
                tracing::error!(error = %e, "Janus refused our answer");
                Err(failed(format!("starting the subscription: {e}")))
            }
            (Asked::Subscribe(feeds), Outcome::Message(Ok((data, jsep)))) => {
                self.subscribed = true;
                self.on_layout(&data, jsep);
                // Asked for, but nothing of theirs came (Janus found nothing to change).
                if self.offer.is_none()
                    && !matches!(VideoRoomEvent::parse(&data), VideoRoomEvent::Updating)
                {
                    self.seat_joiners();
                    for f in feeds {
                        self.refuse(&f, |p| {
                            SubscribeError::NothingRecordable(
                                p.streams.iter().map(|s| s.codec_name.clone()).collect(),
                            )
                        });
                    }
                }
                Ok(())
            }
            (Asked::Subscribe(feeds), Outcome::Message(Err(e))) => {
                if feeds.len() > 1 {
                    tracing::info!(error = %e, "subscribing to several feeds failed; each on its own");
                    for j in self
                        .joining
                        .iter_mut()
                        .filter(|j| feeds.contains(&j.publisher.id))
                    {
                        j.asked = false;
                        j.alone = true;
                    }
                } else {
                    let gone = matches!(
                        e,
                        JanusError::Plugin {
                            code: NO_SUCH_FEED,
                            ..
                        }
                    );
                    for f in feeds {
                        self.refuse(&f, |_| {
                            if gone {
                                SubscribeError::Gone
                            } else {
                                SubscribeError::Janus {
                                    doing: "subscribing",
                                    source: e.clone(),
                                }
                            }
                        });
                    }
                }
                Ok(())
            }
            (Asked::Unsubscribe(_), Outcome::Message(Ok((data, jsep)))) => {
                self.on_layout(&data, jsep);
                Ok(())
            }
            (Asked::Unsubscribe(feeds), Outcome::Message(Err(e))) => {
                // Most often the publisher had gone already (Janus removed its streams).
                tracing::debug!(error = %e, feeds = feeds.len(), "unsubscribe refused");
                Ok(())
            }
            (_, _) => unreachable!("each request has its own outcome"),
        }
    }

    /// Takes the layout (`attached`, `updated`) and the offer of an answer or event.
    fn on_layout(&mut self, data: &Value, jsep: Option<Jsep>) {
        match VideoRoomEvent::parse(data) {
            VideoRoomEvent::Attached { streams } | VideoRoomEvent::Updated { streams } => {
                if !streams.is_empty() || jsep.is_some() {
                    self.streams = streams;
                }
            }
            VideoRoomEvent::Updating => tracing::debug!("Janus postponed the change"),
            other => tracing::debug!(event = ?other, "subscription answer"),
        }
        if let Some(j) = jsep.filter(|j| j.kind == "offer") {
            self.offer = Some(j.sdp);
        }
    }

    /// Answers a joiner with an error and frees its seat.
    fn refuse(&mut self, feed: &FeedId, error: impl FnOnce(&Publisher) -> SubscribeError) {
        if let Some(i) = self.joining.iter().position(|j| j.publisher.id == *feed) {
            let j = self.joining.swap_remove(i);
            let e = error(&j.publisher);
            let _ = j.reply.send(Err(e));
            self.seats.lock().expect("seats lock").taken -= 1;
        }
    }

    /// Seats the joiners whose streams the layout now has: their mids routed to them, their
    /// tasks answered. Called once the session has the layout's offer.
    fn seat_joiners(&mut self) {
        // A feed's routes stay until it leaves, whatever the layout says: its last packets
        // may come after Janus took its streams away (the publisher left), and belong to
        // its file. A new feed on a reused m-line takes the route over.
        let mut i = 0;
        while i < self.joining.len() {
            let j = &self.joining[i];
            let mine: Vec<SubscribedStream> = self
                .streams
                .iter()
                .filter(|s| s.feed.as_ref() == Some(&j.publisher.id))
                .cloned()
                .collect();
            if !j.asked || mine.is_empty() {
                i += 1;
                continue;
            }
            let j = self.joining.swap_remove(i);
            let feed = j.publisher.id.clone();
            let tracks = tracks_for(&j.publisher, &mine);
            if tracks.is_empty() {
                let names = j
                    .publisher
                    .streams
                    .iter()
                    .map(|s| s.codec_name.clone())
                    .collect();
                let _ = j.reply.send(Err(SubscribeError::NothingRecordable(names)));
                self.free_seat();
                self.leaving.push(feed);
                continue;
            }
            let (to, events) = mpsc::channel(MEMBER_BATCHES);
            let member = Member {
                feed: feed.clone(),
                commands: self.to_self.clone(),
                events,
                queue: VecDeque::new(),
                batch: None,
            };
            let mids: Vec<Mid> = tracks.iter().map(|t| t.0).collect();
            // Its media, said here: str0m says `MediaAdded` only for an m-line it has not
            // seen, and Janus gives a new feed the m-lines of one that left.
            let mut first: Vec<RtcEvent> = tracks
                .iter()
                .map(|&(mid, codec)| RtcEvent::MediaAdded {
                    mid,
                    kind: match codec.kind() {
                        crate::media::MediaKind::Audio => str0m::media::MediaKind::Audio,
                        crate::media::MediaKind::Video => str0m::media::MediaKind::Video,
                    },
                })
                .collect();
            if self.connected {
                // It missed the session's `Connected`: its machine starts from it.
                first.push(RtcEvent::Connected);
            }
            let _ = to.try_send(ToMember::Rtc(first));
            if j.reply.send(Ok(Joined { member, tracks })).is_err() {
                // Its task stopped waiting (its feed was stopped meanwhile): its streams go.
                self.free_seat();
                self.leaving.push(feed);
                continue;
            }
            for m in &mids {
                self.by_mid.insert(*m, feed.clone());
            }
            tracing::info!(%feed, mids = ?mids.iter().map(ToString::to_string).collect::<Vec<_>>(), feeds = self.members.len() + 1, "feed added to the subscription");
            self.members.insert(
                feed,
                Seat {
                    to,
                    mids,
                    batch: None,
                },
            );
        }
    }

    /// A feed left (or never took its seat).
    fn free_seat(&mut self) {
        let mut seats = self.seats.lock().expect("seats lock");
        seats.taken = seats.taken.saturating_sub(1);
    }

    async fn on_command(&mut self, c: Command) -> Result<(), GroupEnd> {
        match c {
            Command::Join { publisher, reply } => self.joining.push(Joiner {
                publisher,
                reply,
                asked: false,
                alone: false,
            }),
            Command::Leave(feed) => {
                if let Some(seat) = self.members.remove(&feed) {
                    for m in &seat.mids {
                        if self.by_mid.get(m) == Some(&feed) {
                            self.by_mid.remove(m);
                        }
                    }
                    // Unless Janus removed its streams already (the publisher went).
                    if self.has_streams(&feed) {
                        self.leaving.push(feed);
                    }
                    self.free_seat();
                    self.batch_reads();
                }
            }
            Command::Keyframe(mid) => self.request_keyframe(mid),
            Command::Batch(feed, every) => {
                if let Some(seat) = self.members.get_mut(&feed) {
                    seat.batch = Some(every);
                    self.batch_reads();
                }
            }
            Command::Take(reply) => {
                if let Some(rtc) = &mut self.rtc {
                    let events = rtc.take_received().await;
                    self.on_session(events)?;
                }
                let _ = reply.send(());
            }
        }
        Ok(())
    }

    /// Asks the publisher of `mid` for a keyframe through Janus's API: a `configure` that
    /// (re)starts sending the stream makes Janus send its publisher a PLI ("restoring video
    /// for subscriber"). Not by RTCP: Janus 1.1.2 files a PLI that comes without a report
    /// block under the subscription's first m-line, so in a shared subscription it reached
    /// the first feed's publisher, never the one that needed it. Sent beside the request
    /// under way (it changes nothing to negotiate).
    fn request_keyframe(&mut self, mid: Mid) {
        if !self.pending_keyframes.contains(&mid) {
            self.pending_keyframes.push(mid);
        }
        self.send_keyframe_requests();
    }

    /// Sends the keyframe requests that wait, once the session can receive what they bring:
    /// connected, and no answer of ours on its way to Janus (a stream it adds gets media only
    /// once Janus has it). Sooner, the keyframe came before we could take it (a publisher
    /// that waits for a request to start sending lost its first frames).
    fn send_keyframe_requests(&mut self) {
        let answering = matches!(
            self.in_flight,
            Some(InFlight {
                asked: Asked::Answer | Asked::Setup,
                ..
            })
        );
        if !self.connected || answering || self.offer.is_some() || self.pending_keyframes.is_empty()
        {
            return;
        }
        let Some(handle) = self.handle.clone() else {
            return;
        };
        let mids = std::mem::take(&mut self.pending_keyframes);
        let streams: Vec<Value> = mids
            .iter()
            .map(|m| serde_json::json!({ "mid": m.to_string(), "send": true }))
            .collect();
        let body = serde_json::json!({ "request": "configure", "streams": streams });
        tokio::spawn(
            async move {
                if let Err(e) = handle.message(body, None).await {
                    tracing::debug!(error = %e, ?mids, "keyframe request refused");
                }
            }
            .in_current_span(),
        );
    }

    /// The session's batches: the shortest any feed asks for (a feed that waits for its
    /// first keyframe, or is relayed, asks for short ones).
    fn batch_reads(&mut self) {
        let every = self.members.values().filter_map(|s| s.batch).min();
        if let (Some(every), Some(rtc)) = (every, &mut self.rtc)
            && self.batch != Some(every)
        {
            self.batch = Some(every);
            rtc.batch_reads(every);
        }
    }

    /// Hands the session's events to the feeds: each its mids', every feed the
    /// session-wide ones, in order.
    fn on_session(&mut self, events: Vec<RtcEvent>) -> Result<(), GroupEnd> {
        let mut out: HashMap<FeedId, Vec<RtcEvent>> = HashMap::with_capacity(self.members.len());
        let mut end = None;
        for ev in events {
            let mid = match &ev {
                RtcEvent::Frame(d) => Some(d.mid),
                RtcEvent::MediaAdded { mid, .. } => Some(*mid),
                RtcEvent::Stats(s) => s.mid,
                RtcEvent::KeyframeRequest { .. } => continue,
                RtcEvent::Connected => {
                    self.connected = true;
                    self.seats.lock().expect("seats lock").open = true;
                    None
                }
                RtcEvent::Disconnected => {
                    // No one joins a session that may be failing.
                    self.seats.lock().expect("seats lock").open = false;
                    None
                }
                RtcEvent::Failed(e) => {
                    tracing::error!(error = %e, "the subscription's session failed");
                    end = Some(GroupEnd::Failed(EndReason::Failed(
                        super::Failure::Session(e.clone()),
                    )));
                    None
                }
            };
            match mid {
                Some(mid) => {
                    if let Some(feed) = self.by_mid.get(&mid) {
                        out.entry(feed.clone()).or_default().push(ev);
                    }
                }
                None => {
                    for feed in self.members.keys() {
                        if let Some(copy) = session_wide(&ev) {
                            out.entry(feed.clone()).or_default().push(copy);
                        }
                    }
                }
            }
        }
        for (feed, batch) in out {
            let Some(seat) = self.members.get(&feed) else {
                continue;
            };
            if let Err(mpsc::error::TrySendError::Full(ToMember::Rtc(batch))) =
                seat.to.try_send(ToMember::Rtc(batch))
            {
                let frames = batch
                    .iter()
                    .filter(|e| matches!(e, RtcEvent::Frame(_)))
                    .count();
                tracing::warn!(%feed, frames, "frames dropped: the feed's task did not keep up");
                crate::metrics::frames_dropped(
                    crate::metrics::FrameDrop::TaskBehind,
                    frames as u64,
                );
            }
        }
        match end {
            Some(end) => Err(end),
            None => Ok(()),
        }
    }

    /// A Janus message about the subscription.
    fn on_janus(&mut self, msg: Incoming) -> Result<(), GroupEnd> {
        match &msg {
            Incoming::Event { data, jsep, .. } => match VideoRoomEvent::parse(data) {
                VideoRoomEvent::Updated { .. } | VideoRoomEvent::Updating => {
                    self.on_layout(data, jsep.clone())
                }
                VideoRoomEvent::LayerSwitched { mid: Some(mid), .. } => {
                    self.to_feed_of(&mid.clone(), msg)
                }
                _ => self.to_all(&msg),
            },
            Incoming::Trickle {
                candidate: Some(c), ..
            } => match &mut self.rtc {
                Some(rtc) => {
                    if let Err(e) = rtc.add_remote_candidate(c) {
                        tracing::warn!(error = %e, "ignoring Janus's candidate");
                    }
                }
                None => self.candidates.push(c.clone()),
            },
            Incoming::Trickle {
                candidate: None, ..
            } => {
                tracing::debug!("Janus finished trickling")
            }
            Incoming::HangUp { reason, .. } => {
                tracing::info!(reason = %crate::text::Escaped(reason), "Janus hung up the subscription");
                return Err(GroupEnd::Failed(EndReason::HangUp(reason.clone())));
            }
            Incoming::Detached { .. } => {
                return Err(GroupEnd::Failed(EndReason::HangUp("detached".into())));
            }
            Incoming::WebrtcUp { .. } => {
                tracing::info!("webrtcup");
                self.janus_up = true;
            }
            Incoming::Media { mid: Some(mid), .. } | Incoming::SlowLink { mid: Some(mid), .. } => {
                self.to_feed_of(&mid.clone(), msg)
            }
            _ => self.to_all(&msg),
        }
        Ok(())
    }

    /// A Janus message about one mid, to its feed.
    fn to_feed_of(&self, mid: &str, msg: Incoming) {
        if let Some(seat) = self
            .by_mid
            .get(&Mid::from(mid))
            .and_then(|f| self.members.get(f))
        {
            let _ = seat.to.try_send(ToMember::Janus(msg));
        }
    }

    /// A Janus message about the whole subscription, to every feed (their logs say it).
    fn to_all(&self, msg: &Incoming) {
        for seat in self.members.values() {
            let _ = seat.to.try_send(ToMember::Janus(msg.clone()));
        }
    }

    /// Ends the group: no one joins it any more, its feeds and joiners hear why, the
    /// session is closed and the handle detached.
    async fn close(&mut self, end: GroupEnd) {
        {
            let mut seats = self.seats.lock().expect("seats lock");
            seats.open = false;
            seats.ended = true;
        }
        if let GroupEnd::Failed(reason) = &end {
            tracing::warn!(%reason, feeds = self.members.len(), "the subscription ended; its feeds end with it");
            for seat in self.members.values() {
                let _ = seat.to.try_send(ToMember::End(reason.clone()));
            }
            for j in self.joining.drain(..) {
                // Those not asked for yet go to another group (see `Groups::join`).
                let e = if j.asked {
                    SubscribeError::GroupFailed(reason.to_string())
                } else {
                    SubscribeError::GroupEnded
                };
                let _ = j.reply.send(Err(e));
            }
        }
        self.members.clear();
        if let Some(rtc) = &mut self.rtc {
            rtc.close();
        }
        if let Some(handle) = self.handle.take().and_then(|h| Arc::try_unwrap(h).ok()) {
            let _ = tokio::time::timeout(Duration::from_secs(1), handle.detach()).await;
        }
        tracing::debug!("subscription closed");
    }
}

/// A copy of a session-wide event, for each feed (None: a per-mid event).
fn session_wide(ev: &RtcEvent) -> Option<RtcEvent> {
    match ev {
        RtcEvent::Connected => Some(RtcEvent::Connected),
        RtcEvent::Disconnected => Some(RtcEvent::Disconnected),
        RtcEvent::Failed(e) => Some(RtcEvent::Failed(e.clone())),
        _ => None,
    }
}

/// Whether an offer that takes away the streams of feeds not yet gone (`departing`) waits
/// at `now`: from the first time it is asked, [`OFFER_HOLD_MAX`] at most (`until` keeps
/// that deadline; cleared once the offer may go).
fn offer_waits(departing: bool, until: &mut Option<Instant>, now: Instant) -> bool {
    if !departing {
        *until = None;
        return false;
    }
    let deadline = *until.get_or_insert(now + OFFER_HOLD_MAX);
    if now < deadline {
        return true;
    }
    *until = None;
    false
}

/// The end of every feed of a group whose subscription failed.
fn failed(why: String) -> GroupEnd {
    GroupEnd::Failed(EndReason::Failed(super::Failure::Subscribe(why)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_offer_waits_for_departing_feeds_two_seconds_at_most() {
        let t0 = Instant::now();
        let mut until = None;
        assert!(!offer_waits(false, &mut until, t0), "no one departing");
        assert_eq!(until, None);
        assert!(offer_waits(true, &mut until, t0), "a feed still departing");
        assert!(offer_waits(
            true,
            &mut until,
            t0 + Duration::from_millis(1999)
        ));
        assert!(
            !offer_waits(true, &mut until, t0 + OFFER_HOLD_MAX),
            "no longer than OFFER_HOLD_MAX"
        );
        assert_eq!(until, None, "the next offer waits afresh");
        assert!(offer_waits(true, &mut until, t0 + Duration::from_secs(3)));
        assert!(
            !offer_waits(false, &mut until, t0 + Duration::from_secs(3)),
            "the departing feeds left"
        );
        assert_eq!(until, None);
    }
}
