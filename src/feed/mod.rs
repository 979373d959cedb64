//! The feed subscriber: one task per publisher. It subscribes, in a subscription shared with
//! other feeds of its room ([`group`]) or with its own Janus handle, answering Janus's offer
//! with a str0m session in the process's media loop ([`crate::rtc`]) (see [`link`]), places
//! frames on the room clock ([`clock`]), gates video on keyframes, and writes one WebM file
//! plus its sidecar. It ends when the room says so (`stop`), on `hangup`, on ICE failure, or
//! when the connection to Janus is lost, and always finalizes what it wrote.

pub mod clock;
mod disk;
pub mod forward;
pub mod gate;
pub mod group;
mod link;
pub mod machine;
mod recording;
pub mod relay;

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use str0m::media::{MediaData, Mid};
use tokio::sync::oneshot;

use crate::codec::vp9::SvcJoiner;
use crate::events::EventKind;
use crate::health::Health;
use crate::ids::RoomId;
use crate::janus::messages::{Jsep, Publisher, PublisherStream, StreamKind, VideoRoomEvent};
use crate::janus::videoroom::{Request, SubscribeStream, TopLayers};
use crate::janus::{Handle, JanusError, Session};
use crate::limits::FeedSlots;
use crate::media::{Codec, MediaKind};
use crate::metrics::FrameCounters;
use crate::output::{RecordingPaths, Sidecar, recording_paths, rfc3339};
use crate::publish::OwnFeeds;
use crate::rtc::{MediaLoop, RtcError, RtcEvent, RtcSession};
use crate::secret::Secret;
use crate::webm::writer::{FrameBytes, TrackSetup, WebmWriter, WriteError};
use disk::DiskWriter;
use link::{Link, Next};
use machine::{Action, FeedMachine, Input, Now};
use relay::{Relay, RelayEvent, RelayTarget};

/// Settings shared by every feed of the process.
#[derive(Debug, Clone)]
pub struct FeedSettings {
    pub out_dir: PathBuf,
    /// The media loop every session of the process runs in.
    pub media: MediaLoop,
    /// The service's shared state (status line, watchdog heartbeats).
    pub health: Arc<Health>,
    /// The publishers this process publishes (relays): never recorded or relayed.
    pub own: OwnFeeds,
    /// `[output] split_after`: files this long are continued in a new part.
    pub split_after: Option<Duration>,
    /// The feed limit, shared by every room.
    pub slots: FeedSlots,
    /// Where recordings starting, finishing and failing are told.
    pub events: crate::events::Events,
    /// Where finished files are handed for upload (`[storage]`).
    pub uploads: crate::storage::Uploads,
    /// The Janus server's name in the API and the events (`[janus] name`).
    pub server: Arc<str>,
    /// In a fleet: where each feed's last part is told (a takeover links to it).
    pub fleet: Option<crate::fleet::Parts>,
    /// `[janus] feeds_per_subscription`: 1 is a subscription per feed.
    pub feeds_per_subscription: usize,
    /// `[janus] rtp_forward`: feeds are recorded from RTP forwarders, not subscriptions.
    pub forward: Option<forward::ForwardSettings>,
}

/// What one feed subscribes to.
#[derive(Debug, Clone)]
pub struct FeedSpec {
    pub room: RoomId,
    pub pin: Option<Secret>,
    /// The room's `secret` (`[janus] rtp_forward` needs it for a room that has one).
    pub secret: Option<Secret>,
    /// The room watcher's private id (rooms with `require_pvtid` need it).
    pub private_id: Option<u64>,
    pub publisher: Publisher,
    /// When the room watcher heard of the publisher (for the first-keyframe latency).
    pub announced: Instant,
    /// Write the feed to a file (false: relay only).
    pub record: bool,
    /// Where to relay the feed, if anywhere.
    pub relay: Option<Arc<RelayTarget>>,
    /// The room manifest to list the feed's recordings in.
    pub manifest: Option<Arc<crate::manifest::RoomManifest>>,
    /// Files this long are continued in a new part (the room's, else `[output]`'s).
    pub split_after: Option<Duration>,
    /// This subscription goes on after a failure of the last one (see [`Resume`]), or
    /// from another instance's last part (a takeover).
    pub resume: Option<Resume>,
    /// In a fleet: this instance's claim on the room (its name and fencing token go into
    /// the sidecar).
    pub claim: Option<Arc<crate::fleet::Claim>>,
    /// The room's shared subscriptions, which the feed joins (`[janus]
    /// feeds_per_subscription` above 1); none: a subscription of its own.
    pub groups: Option<group::Groups>,
}

/// A recording's last file: its name and part number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LastPart {
    pub file: String,
    pub part: u32,
}

/// A subscription made again while the publisher stays, after the last one failed: its
/// first file is the next part of the last one's (`previous_part`), and says why
/// (`resumed_after`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resume {
    /// The last file written before the failure (none: nothing was written yet).
    pub previous: Option<LastPart>,
    /// Why the last subscription ended.
    pub why: String,
    /// How many tries in a row this is (from 1), for the backoff.
    pub attempt: u32,
}

/// How a feed ended: the room watcher subscribes again to a feed whose failure may heal.
#[derive(Debug)]
pub struct FeedEnd {
    pub reason: EndReason,
    /// A failure that may heal while the publisher stays: a subscribe that failed or timed
    /// out, ICE or DTLS failing, Janus hanging up, a file that could not be written.
    pub may_heal: bool,
    /// The last file written, if any.
    pub last: Option<LastPart>,
}

/// Why a recording ended; written to the sidecar and the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EndReason {
    Unpublished,
    Leaving,
    Kicked,
    RoomDestroyed,
    HangUp(String),
    IceFailed,
    Shutdown,
    /// A reload removed the room (or changed the connection settings).
    Reconfigured,
    /// The HTTP API stopped recording the room (or its `until` came).
    Stopped,
    ConnectionLost,
    /// `split_after` was reached: the publication goes on in the next part.
    Split,
    /// In a fleet: this instance no longer holds the room's claim (it could not renew its
    /// lease in time, or it lost it); another instance records the room.
    HandedOver,
    Failed(Failure),
}

/// Why a feed failed (the re-subscribe decision reads [`FeedEnd::may_heal`], made from it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// Subscribing: Janus refused or did not answer, no offer, nothing recordable.
    Subscribe(String),
    /// The media session ended (see [`crate::rtc::SessionEnd`]).
    Session(crate::rtc::SessionEnd),
    /// Writing the file (or opening it) failed.
    Write(String),
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Failure::Subscribe(e) | Failure::Write(e) => f.write_str(e),
            Failure::Session(e) => write!(f, "{e}"),
        }
    }
}

impl fmt::Display for EndReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EndReason::Unpublished => f.write_str("unpublished"),
            EndReason::Leaving => f.write_str("leaving"),
            EndReason::Kicked => f.write_str("kicked"),
            EndReason::RoomDestroyed => f.write_str("destroyed"),
            EndReason::HangUp(r) => write!(f, "hangup: {}", crate::text::Escaped(r)),
            EndReason::IceFailed => f.write_str("ice-failed"),
            EndReason::Shutdown => f.write_str("shutdown"),
            EndReason::Reconfigured => f.write_str("reconfigured"),
            EndReason::Stopped => f.write_str("stopped"),
            EndReason::ConnectionLost => f.write_str("connection-lost"),
            EndReason::Split => f.write_str("split"),
            EndReason::HandedOver => f.write_str("handed-over"),
            EndReason::Failed(e) => write!(f, "error: {}", crate::text::Escaped(&e.to_string())),
        }
    }
}

/// How often a feed's task wakes on its own (the heartbeat, flushes, keyframe requests): a
/// multiple of the media loop's tick, on the same grid.
const FEED_TICK: Duration = Duration::from_millis(200);
/// How often buffered file data is pushed to disk (bounds what a crash can lose).
const FLUSH_EVERY: Duration = Duration::from_secs(1);
/// How often a recorded feed gets its frames from the media loop once they flow: a file
/// does not care when its frames come, and each batch is a wake-up of the feed's task. The
/// feed's own tick, on the same grid, so the task wakes once for both.
const RECORDED_BATCHES: Duration = FEED_TICK;
/// The same for a relayed feed (every frame waits up to this long before it is sent on),
/// and for any feed until its first keyframe is written.
const SMALL_BATCHES: Duration = Duration::from_millis(20);

/// From this try in a row on, a failing feed is subscribed again with a subscription of its
/// own rather than in a shared one (the first re-subscribe, after a whole group failed for
/// a fault of the network or Janus, goes back into a shared one).
const ALONE_AFTER_ATTEMPT: u32 = 2;

/// Records one publisher until it ends; returns why it ended.
pub async fn run(
    session: Session,
    settings: Arc<FeedSettings>,
    spec: FeedSpec,
    mut stop: oneshot::Receiver<EndReason>,
) -> FeedEnd {
    let subscribing = async {
        // A feed that failed again after a re-subscribe is subscribed on its own: whatever
        // fails with it (an offer str0m refuses, a hostile Janus) must not take a shared
        // subscription's other feeds down with it again and again.
        let shared = spec.groups.as_ref().filter(|_| {
            spec.resume
                .as_ref()
                .is_none_or(|r| r.attempt < ALONE_AFTER_ATTEMPT)
        });
        if let Some(forward) = &settings.forward {
            return forward::start(&session, forward, &spec)
                .await
                .map(|(f, tracks)| (Link::Forwarded(f), tracks));
        }
        match shared {
            Some(groups) => groups
                .join(&spec.publisher)
                .await
                .map(|j| (Link::Shared(j.member), j.tracks)),
            None => subscribe(&session, &settings, &spec)
                .await
                .map(|(handle, rtc, tracks)| (Link::Own { handle, rtc }, tracks)),
        }
    };
    let (link, tracks) = tokio::select! {
        r = subscribing => match r {
            Ok(v) => v,
            Err(SubscribeError::Gone) => {
                tracing::info!("the publisher is no longer publishing; not subscribing again");
                return FeedEnd { reason: EndReason::Unpublished, may_heal: false, last: None };
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot subscribe");
                settings.events.emit(
                    EventKind::RecordingFailed,
                    serde_json::json!({
                        "server": &*settings.server,
                        "room": spec.room,
                        "feed": spec.publisher.id,
                        "display": spec.publisher.display,
                        "error": e.to_string(),
                    }),
                );
                let may_heal = !matches!(e, SubscribeError::NothingRecordable(_));
                return FeedEnd { reason: EndReason::Failed(Failure::Subscribe(e.to_string())), may_heal, last: None };
            }
        },
        r = &mut stop => {
            return FeedEnd { reason: r.unwrap_or(EndReason::Shutdown), may_heal: false, last: None };
        }
    };
    let codec_of = |k: MediaKind| tracks.iter().map(|t| t.1).find(|c| c.kind() == k);
    let relay = spec.relay.clone().map(|target| {
        Relay::start(
            session.clone(),
            target,
            settings.media.clone(),
            settings.own.clone(),
            &spec.room,
            &spec.publisher,
            (codec_of(MediaKind::Audio), codec_of(MediaKind::Video)),
        )
    });
    let mut machine = FeedMachine::new(tracks, spec.record, relay.is_some(), Now::read());
    if matches!(link, Link::Forwarded(_)) {
        machine = machine.without_sender_reports();
    }
    let mut feed = Feed {
        machine,
        settings,
        spec,
        recording: None,
        counters: FrameCounters::new(),
        relay,
        svc: SvcJoiner::default(),
        last: None,
    };
    let reason = feed.record(link, stop).await;
    // Finalizing is file IO (a long file's cues and sizes): on a blocking thread, so the media
    // loop and the other feeds go on meanwhile (the runtime has one thread), and the files of
    // a shutdown are finalized side by side rather than one after the other.
    let span = tracing::Span::current();
    let ended = reason.clone();
    let finished = tokio::task::spawn_blocking(move || {
        span.in_scope(|| feed.finish(&ended));
        feed.last
    });
    let last = finished.await.unwrap_or_else(|e| {
        tracing::error!(error = %e, "finalizing the recording panicked");
        None
    });
    let may_heal = matches!(
        reason,
        EndReason::Failed(_) | EndReason::IceFailed | EndReason::HangUp(_)
    );
    FeedEnd {
        reason,
        may_heal,
        last,
    }
}

/// Why a subscription could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum SubscribeError {
    /// Janus refused or did not answer a request (attach, join, start, trickle).
    #[error("{doing}: {source}")]
    Janus {
        doing: &'static str,
        #[source]
        source: JanusError,
    },
    #[error("join answered {0}")]
    UnexpectedJoin(serde_json::Value),
    #[error("Janus sent no SDP offer")]
    NoOffer,
    /// No stream has a codec we can write.
    #[error("nothing recordable: streams {0:?}")]
    NothingRecordable(Vec<Option<String>>),
    /// Answering the offer failed.
    #[error(transparent)]
    Rtc(#[from] RtcError),
    /// Subscribing again: the publisher no longer publishes.
    #[error("the publisher no longer publishes")]
    Gone,
    /// The shared subscription (see [`group`]) ended before the feed was added to it.
    #[error("the shared subscription ended")]
    GroupEnded,
    /// The shared subscription failed while the feed was being added to it.
    #[error("the shared subscription failed: {0}")]
    GroupFailed(String),
}

/// The error of a Janus request, with what it was for.
fn janus(doing: &'static str) -> impl FnOnce(JanusError) -> SubscribeError {
    move |source| SubscribeError::Janus { doing, source }
}

/// Why a recording's file could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("cannot create the recording in {}: {source}", dir.display())]
    Paths {
        dir: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Writer(#[from] WriteError),
}

/// A VideoRoom handle for the feed; subscribing again after a failure (`resume`), only while
/// the publisher still publishes.
async fn attach_while_publishing(
    session: &Session,
    spec: &FeedSpec,
) -> Result<Handle, SubscribeError> {
    let handle = session
        .attach_videoroom()
        .await
        .map_err(janus("attaching to the VideoRoom plugin"))?;
    if spec.resume.is_some() {
        let (data, _) = handle
            .message(Request::ListParticipants { room: &spec.room }.body(), None)
            .await
            .map_err(janus("listing the participants"))?;
        if !crate::janus::messages::is_publishing(&data, &spec.publisher.id) {
            handle.detach().await;
            return Err(SubscribeError::Gone);
        }
    }
    Ok(handle)
}

/// Attaches, joins as subscriber, answers the offer and sends our candidates.
async fn subscribe(
    session: &Session,
    settings: &FeedSettings,
    spec: &FeedSpec,
) -> Result<(Handle, RtcSession, Vec<(Mid, Codec)>), SubscribeError> {
    let handle = attach_while_publishing(session, spec).await?;
    let p = &spec.publisher;
    let mut wanted = streams_to_record(p);
    // Video first. Janus maps an RTCP packet it cannot place by SSRC (str0m's keyframe
    // requests come without a receiver report, and a recv-only peer has no SSRC Janus knows)
    // to the first m-line; were that audio, Janus would drop our PLIs and a video stream
    // broken by packet loss would never get a keyframe again.
    wanted.sort_by_key(|s| s.kind != StreamKind::Video);
    // Video at its best: the top simulcast substream and the top VP9 SVC layers (Janus's
    // defaults today, asked for explicitly so a changed default cannot lower a recording).
    let mut streams: Vec<SubscribeStream> = wanted
        .iter()
        .map(|s| SubscribeStream {
            feed: &p.id,
            mid: Some(s.mid.as_str()),
            layers: (s.kind == StreamKind::Video).then_some(TopLayers::TOP),
        })
        .collect();
    if streams.is_empty() {
        streams.push(SubscribeStream {
            feed: &p.id,
            mid: None,
            layers: None,
        });
    }
    let join = Request::join_subscriber(&spec.room, streams, spec.private_id, spec.pin.as_ref());
    let (data, jsep) = handle
        .message(join.body(), None)
        .await
        .map_err(janus("joining as subscriber"))?;
    let VideoRoomEvent::Attached { streams } = VideoRoomEvent::parse(&data) else {
        return Err(SubscribeError::UnexpectedJoin(data));
    };
    let offer = jsep
        .filter(|j| j.kind == "offer")
        .ok_or(SubscribeError::NoOffer)?;
    let tracks = tracks_for(p, &streams);
    if tracks.is_empty() {
        return Err(SubscribeError::NothingRecordable(
            p.streams.iter().map(|s| s.codec_name.clone()).collect(),
        ));
    }

    let rtc = answer_offer(&handle, &settings.media, &offer.sdp).await?;
    Ok((handle, rtc, tracks))
}

/// Answers a subscription's SDP offer (`sdp`, from Janus's answer to `join`): the session
/// negotiated and handed to `media`, Janus started with our answer, our candidates trickled.
pub async fn answer_offer(
    handle: &Handle,
    media: &MediaLoop,
    sdp: &str,
) -> Result<RtcSession, SubscribeError> {
    let mut setup = media.receiver();
    let answer = setup.accept_offer(sdp)?;
    let candidates = setup.local_candidates();
    // In the loop before Janus has our answer: its first connectivity checks name our ufrag.
    let rtc = setup.start()?;
    let answer = Jsep {
        kind: "answer".into(),
        sdp: answer,
    };
    handle
        .message(Request::Start.body(), Some(&answer))
        .await
        .map_err(janus("starting the subscription"))?;
    handle
        .trickle(&candidates)
        .await
        .map_err(janus("trickling our candidates"))?;
    Ok(rtc)
}

/// Chooses what to record: the first audio and the first video stream whose codec we can
/// write. (A publisher with several video streams has the others logged and skipped.)
fn tracks_for(
    publisher: &Publisher,
    subscribed: &[crate::janus::messages::SubscribedStream],
) -> Vec<(Mid, Codec)> {
    let mut tracks = Vec::new();
    let mut have = (false, false);
    for s in subscribed {
        let source = publisher.streams.iter().find(|p| {
            Some(&p.mid) == s.feed_mid.as_ref() || (p.mid.is_empty() && p.kind == s.kind)
        });
        let codec = source.and_then(|p| p.codec);
        let taken = match s.kind {
            StreamKind::Audio => &mut have.0,
            StreamKind::Video => &mut have.1,
            _ => continue,
        };
        match codec {
            Some(codec) if !*taken && codec.kind() == kind_of(s.kind) => {
                *taken = true;
                tracks.push((Mid::from(s.mid.as_str()), codec));
            }
            _ => tracing::warn!(
                mid = %s.mid,
                codec = ?source.and_then(|p| p.codec_name.clone()),
                "stream not recorded (unsupported codec or a second stream of its kind)"
            ),
        }
    }
    tracks
}

/// The publisher's streams we record, so the ones we subscribe to: its first audio and its
/// first video stream with a codec we write (a second camera or a screen share is not
/// recorded, so it is not subscribed to: it would cost Janus and us for nothing).
fn streams_to_record(p: &Publisher) -> Vec<&PublisherStream> {
    let mut taken = (false, false);
    p.streams
        .iter()
        .filter(|s| !s.disabled && !s.mid.is_empty())
        .filter(|s| {
            let slot = match s.kind {
                StreamKind::Audio => &mut taken.0,
                StreamKind::Video => &mut taken.1,
                _ => return false,
            };
            let writable = s.codec.is_some_and(|c| c.kind() == kind_of(s.kind));
            if writable && !*slot {
                *slot = true;
                true
            } else {
                if writable {
                    tracing::info!(mid = %s.mid, "a second stream of its kind: not recorded, not subscribed to");
                }
                false
            }
        })
        .collect()
}

fn kind_of(k: StreamKind) -> MediaKind {
    if k == StreamKind::Audio {
        MediaKind::Audio
    } else {
        MediaKind::Video
    }
}

/// A VP9 SVC picture as one decodable frame: str0m hands over its spatial layers concatenated,
/// with their ends in the codec extra; `joiner` makes them a superframe that shows the top
/// layer ([`crate::codec::vp9::SvcJoiner`]). `None` for anything else, or for layer ends that
/// do not tile the data: the frame is written as it is.
fn svc_superframe(d: &MediaData, joiner: &mut SvcJoiner) -> Option<Vec<u8>> {
    let str0m::format::CodecExtra::Vp9(extra) = d.codec_extra else {
        return None;
    };
    let ends: Vec<usize> = extra.layers_scheme.iter().flatten().copied().collect();
    if ends.len() < 2 || ends.last() != Some(&d.data.len()) {
        return None;
    }
    let mut layers = Vec::with_capacity(ends.len());
    let mut start = 0;
    for end in ends {
        match d.data.get(start..end) {
            Some(layer) if !layer.is_empty() => layers.push(layer),
            _ => return None,
        }
        start = end;
    }
    if let Some(joined) = joiner.join(&layers) {
        return Some(joined);
    }
    // A header the joiner could not follow: every layer stays shown (a decoder outputs each).
    tracing::debug!("VP9 SVC picture joined with every layer shown");
    crate::codec::vp9::superframe(&layers)
}

/// An open file and its sidecar.
struct OpenFile {
    writer: DiskWriter,
    paths: RecordingPaths,
    sidecar: Sidecar,
    /// The first part's time zero on the room clock (ns since the epoch): its earliest frame.
    /// Every part keeps it, so tracks stay in sync across parts.
    zero: i128,
    /// Where this part starts on the feed's timeline (zero for the first part).
    offset: Duration,
    last_flush: Instant,
    /// Janus's audio levels, for the page's speaker lanes (see [`crate::levels`]).
    levels: crate::levels::Levels,
}

/// The feed's IO around its [`FeedMachine`]: the files, the relay, the metrics.
struct Feed {
    settings: Arc<FeedSettings>,
    spec: FeedSpec,
    machine: FeedMachine,
    recording: Option<OpenFile>,
    counters: FrameCounters,
    relay: Option<Relay>,
    /// Joins VP9 SVC layers into superframes.
    svc: SvcJoiner,
    /// The last file finalized.
    last: Option<LastPart>,
}

/// The relay's next event; never, without a relay.
async fn relay_event(relay: &mut Option<Relay>) -> RelayEvent {
    match relay {
        Some(r) => r.next_event().await,
        None => std::future::pending().await,
    }
}

impl Feed {
    /// The event loop: str0m, Janus events for our handle, the room's stop, the relay, a tick.
    async fn record(
        &mut self,
        mut link: Link,
        mut stop: oneshot::Receiver<EndReason>,
    ) -> EndReason {
        // On the process-wide grid, so every feed's tick and the media loop's fall in one
        // wake-up rather than one each at a random phase.
        let start = crate::rtc::next_on_grid(Instant::now(), FEED_TICK);
        let mut tick = tokio::time::interval_at(start.into(), FEED_TICK);
        // The watchdog is fed only while every feed loop goes round.
        let settings = self.settings.clone();
        let heartbeat = settings.health.heartbeat();
        let reason = 'run: loop {
            let input = tokio::select! {
                next = link.next() => match next {
                    Next::Input(input) => input,
                    Next::End(reason) => break reason,
                },
                r = &mut stop => break r.unwrap_or(EndReason::Shutdown),
                ev = relay_event(&mut self.relay) => match ev {
                    RelayEvent::WantKeyframe => Input::KeyframeWanted,
                    RelayEvent::Nothing => continue,
                },
                _ = tick.tick() => {
                    heartbeat.beat();
                    if let Some(end) = self.flush_if_due() {
                        break end;
                    }
                    if self.recording.as_ref().is_some_and(|r| r.writer.wants_keyframe()) {
                        // Video was dropped for a slow disk; it goes on at a keyframe.
                        self.machine.handle(Input::KeyframeWanted, Now::read());
                    }
                    Input::Tick
                },
            };
            if let Some(end) = self.step(input, &mut link) {
                break end;
            }
            // The rest of the batch that input came in, without a turn of the select (and of
            // the link's own) for each frame: a batch is tens of frames.
            while let Some(ev) = link.queued() {
                if let Some(end) = self.step(Input::Rtc(ev), &mut link) {
                    break 'run end;
                }
            }
        };
        // Frames already received when the feed was told to end belong to its file.
        if let Some(wait) = recording::EndWait::new(&reason, Instant::now()) {
            loop {
                tokio::time::sleep(recording::END_GRACE).await;
                let mut frames = 0;
                for ev in link.take_received().await {
                    if matches!(ev, RtcEvent::Frame(_)) {
                        frames += 1;
                        let _ = self.step(Input::Rtc(ev), &mut link);
                    }
                }
                if !wait.again(frames, Instant::now()) {
                    break;
                }
            }
        }
        if let Some(relay) = self.relay.take() {
            relay.close().await;
        }
        link.close().await;
        reason
    }

    /// Feeds the machine one input and carries out its actions; the end, if one came.
    fn step(&mut self, input: Input, rtc: &mut Link) -> Option<EndReason> {
        self.machine.handle(input, Now::read());
        while let Some(action) = self.machine.poll() {
            match action {
                Action::RequestKeyframe(mid) => {
                    tracing::debug!("keyframe requested (PLI)");
                    crate::metrics::keyframe_requested();
                    rtc.request_keyframe(mid);
                }
                Action::BatchReads { settled } => {
                    rtc.batch_reads(if settled && self.relay.is_none() {
                        RECORDED_BATCHES
                    } else {
                        SMALL_BATCHES
                    });
                }
                Action::AddCandidate(c) => {
                    if let Err(e) = rtc.add_remote_candidate(&c) {
                        tracing::warn!(error = %e, "ignoring Janus's candidate");
                    }
                }
                other => {
                    if let Some(end) = self.carry_out(other) {
                        return Some(end);
                    }
                }
            }
        }
        None
    }

    /// The session is closed: the machine releases the frames still waiting for a clock.
    /// It asks nothing of a session then (its test `ending_asks_nothing_of_the_session`).
    fn release_at_end(&mut self) -> Option<EndReason> {
        self.machine.handle(Input::Ending, Now::read());
        while let Some(action) = self.machine.poll() {
            if let Some(end) = self.carry_out(action) {
                return Some(end);
            }
        }
        None
    }

    /// Carries out an action that needs no media session: a write, a relayed frame,
    /// statistics, the end.
    fn carry_out(&mut self, action: Action) -> Option<EndReason> {
        match action {
            Action::Write { at, frame } => {
                if let Err(e) = self.write(at, frame) {
                    return Some(e);
                }
            }
            Action::Relay(frame) => {
                if let Some(relay) = &mut self.relay
                    && relay.forward(&frame)
                {
                    self.machine.handle(Input::KeyframeWanted, Now::read());
                }
            }
            Action::Stats { lost, nacks } => crate::metrics::receive_stats(lost, nacks),
            Action::End(reason) => return Some(reason),
            // Only after the session closed (see `release_at_end`): a machine bug, said.
            other => {
                tracing::warn!(action = ?other, "a session action after the session closed: not done")
            }
        }
        None
    }

    /// A file could not be written: the one place that says so (log, status, metrics) and
    /// makes it the feed's end.
    fn file_failed(&self, e: impl fmt::Display) -> EndReason {
        tracing::error!(error = %e, "writing the recording failed");
        file_error(&self.settings, &e);
        EndReason::Failed(Failure::Write(e.to_string()))
    }

    /// Pushes buffered file data to disk every [`FLUSH_EVERY`].
    fn flush_if_due(&mut self) -> Option<EndReason> {
        let rec = self.recording.as_mut()?;
        let now = Instant::now();
        if now.duration_since(rec.last_flush) < FLUSH_EVERY {
            return None;
        }
        rec.last_flush = now;
        let flushed = rec.writer.flush();
        flushed.err().map(|e| self.file_failed(e))
    }

    /// Writes one frame placed at `t` on the room clock; the first opens the recording.
    fn write(&mut self, t: i128, d: Box<MediaData>) -> Result<(), EndReason> {
        if self.recording.is_none() {
            // The first write is the earliest frame: the file's zero.
            let rec = self
                .open(t, Duration::ZERO, None)
                .map_err(|e| self.file_failed(e))?;
            self.recording = Some(rec);
        }
        let Some(codec) = self.machine.codec_at(d.mid) else {
            return Ok(());
        };
        let kind = codec.kind();
        let is_video = kind == MediaKind::Video;
        let has_video = self.machine.has_video();
        let rec = self.recording.as_mut().expect("a recording is open");
        let mut ts = recording::on_timeline(t, rec.zero);
        if recording::split_due(
            self.spec.split_after,
            rec.offset,
            ts,
            is_video && d.is_keyframe(),
            has_video,
        ) {
            self.next_part(ts);
        }
        let rec = self.recording.as_mut().expect("a recording is open");
        ts = ts.saturating_sub(rec.offset);
        if let Some(ms) = recording::first_keyframe_ms(
            is_video,
            rec.sidecar.part,
            rec.sidecar.first_keyframe_ms,
            d.network_time,
            self.spec.announced,
        ) {
            tracing::info!(after_announcement_ms = ms, "first keyframe written");
            rec.sidecar.first_keyframe_ms = Some(ms);
        }
        let len = d.data.len();
        // The frame's own (shared) buffer goes to the writer: no copy.
        let data = match is_video
            .then(|| svc_superframe(&d, &mut self.svc))
            .flatten()
        {
            Some(joined) => FrameBytes::Owned(joined),
            None => FrameBytes::Shared(d.data.clone()),
        };
        if !is_video && let Some(dbov) = d.ext_vals.audio_level {
            rec.levels.record(ts, dbov);
        }
        let written = rec.writer.write(ts, kind, d.is_keyframe(), data);
        match written {
            Ok(()) => {
                self.counters.written(kind, len);
                Ok(())
            }
            Err(e) => Err(self.file_failed(e)),
        }
    }

    /// Continues the recording in a new file whose time zero is `at` on the feed's timeline.
    /// The new part is opened first, so the old one's sidecar can name it; if it cannot be
    /// opened, the old part goes on (and the split is tried again at the next keyframe).
    fn next_part(&mut self, at: Duration) {
        let old = self.recording.take().expect("a recording is open");
        match self.open(old.zero, at, Some(&old)) {
            Ok(new) => {
                tracing::info!(part = new.sidecar.part, path = %new.paths.media.display(), "split_after reached: next part");
                let name = new.sidecar.file.clone();
                // Finalizing waits for the old part's disk: on a blocking thread, while the
                // new part records.
                let outputs = self.outputs();
                let clocks = self.clocks();
                let span = tracing::Span::current();
                tokio::task::spawn_blocking(move || {
                    span.in_scope(|| outputs.finalize(old, &EndReason::Split, Some(name), clocks));
                });
                self.recording = Some(new);
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot open the next part; the current one goes on");
                file_error(&self.settings, &e);
                self.recording = Some(old);
            }
        }
    }

    /// Opens the file and writes the first sidecar: the first part at `offset` zero, or the
    /// part after `previous`.
    fn open(
        &self,
        zero: i128,
        offset: Duration,
        previous: Option<&OpenFile>,
    ) -> Result<OpenFile, OpenError> {
        // The file's time zero on the room clock.
        let started = clock::system_time(zero + offset.as_nanos() as i128);
        let p = &self.spec.publisher;
        let setup = TrackSetup {
            audio: self.machine.codec_of(MediaKind::Audio),
            video: self.machine.codec_of(MediaKind::Video),
        };
        let paths = recording_paths(
            &self.settings.out_dir,
            &self.spec.room,
            &p.id,
            p.display.as_deref(),
            started,
            setup.container(),
        )
        .map_err(|source| OpenError::Paths {
            dir: self.settings.out_dir.clone(),
            source,
        })?;
        // The first file of a subscription made again after a failure goes on from the
        // last one's.
        let resumed = self.spec.resume.as_ref().filter(|_| previous.is_none());
        let before = previous
            .map(|p| LastPart {
                file: p.sidecar.file.clone(),
                part: p.sidecar.part,
            })
            .or_else(|| resumed.and_then(|r| r.previous.clone()));
        let sidecar = Sidecar {
            audio_codec: setup.audio.map(|c| c.to_string()),
            video_codec: setup.video.map(|c| c.to_string()),
            part: before.as_ref().map_or(1, |p| p.part + 1),
            previous_part: before.map(|p| p.file),
            resumed_after: resumed.map(|r| r.why.clone()),
            recorded_by: self.spec.claim.as_ref().map(|c| c.instance.to_string()),
            fencing_token: self.spec.claim.as_ref().map(|c| c.revision),
            audio_clock: self.machine.clock_of(MediaKind::Audio),
            video_clock: self.machine.clock_of(MediaKind::Video),
            ..Sidecar::begun(
                self.spec.room.clone(),
                p.id.clone(),
                p.display.clone(),
                &paths.media,
                rfc3339(started),
                setup.container().to_string(),
            )
        };
        let writer = WebmWriter::create(&paths.media, setup)?;
        let mut writer =
            DiskWriter::start(writer, &paths.media).map_err(|source| OpenError::Paths {
                dir: self.settings.out_dir.clone(),
                source,
            })?;
        // The first sidecar is written by the file's thread (it syncs); the manifest lists it.
        writer.write_sidecar(sidecar.clone(), paths.sidecar.clone());
        if let Some(m) = &self.spec.manifest {
            m.recording(&sidecar);
        }
        if let Some(parts) = &self.settings.fleet {
            let last = LastPart {
                file: sidecar.file.clone(),
                part: sidecar.part,
            };
            parts.opened(&self.spec.room, &p.id, last);
        }
        tracing::info!(path = %paths.media.display(), "recording started");
        let outputs = self.outputs();
        outputs.recording_event(EventKind::RecordingStarted, &sidecar, &paths.media, None);
        self.settings.health.recording_started(&self.spec.room);
        Ok(OpenFile {
            writer,
            paths,
            sidecar,
            zero,
            offset,
            last_flush: Instant::now(),
            levels: Default::default(),
        })
    }

    /// Finalizes the file and completes the sidecar at the end of the feed.
    fn finish(&mut self, reason: &EndReason) {
        // Frames still waiting for a clock are placed and written.
        if let Some(end) = self.release_at_end() {
            tracing::error!(%end, "writing the last frames failed");
        }
        if let Some(rec) = &self.recording {
            self.last = Some(LastPart {
                file: rec.sidecar.file.clone(),
                part: rec.sidecar.part,
            });
        }
        let Some(rec) = self.recording.take() else {
            if self.spec.record {
                tracing::info!(%reason, "feed ended before any media was recorded");
            } else {
                tracing::info!(%reason, "relayed feed ended");
            }
            return;
        };
        self.outputs().finalize(rec, reason, None, self.clocks());
    }

    /// Where a finished file is told, apart from the feed (a split finalizes on a blocking
    /// thread while the feed goes on).
    fn outputs(&self) -> Outputs {
        Outputs {
            settings: self.settings.clone(),
            room: self.spec.room.clone(),
            manifest: self.spec.manifest.clone(),
        }
    }

    /// The clocks the feed's audio and video are placed by, for the sidecar.
    fn clocks(&self) -> Clocks {
        Clocks {
            audio: self.machine.clock_of(MediaKind::Audio),
            video: self.machine.clock_of(MediaKind::Video),
        }
    }
}

/// Where a recording's files and events go: the settings, the room and its manifest.
struct Outputs {
    settings: Arc<FeedSettings>,
    room: RoomId,
    manifest: Option<Arc<crate::manifest::RoomManifest>>,
}

/// The clocks a feed's audio and video are placed by (see the sidecar's `audio_clock`).
struct Clocks {
    audio: Option<String>,
    video: Option<String>,
}

impl Outputs {
    /// Finalizes one file and completes its sidecar (`next_part`: the file that goes on).
    fn finalize(
        &self,
        rec: OpenFile,
        reason: &EndReason,
        next_part: Option<String>,
        clocks: Clocks,
    ) {
        self.settings.health.recording_ended(&self.room);
        let mut sidecar = rec.sidecar;
        sidecar.audio_clock = clocks.audio;
        sidecar.video_clock = clocks.video;
        sidecar.ended_at = Some(rfc3339(SystemTime::now()));
        sidecar.end_reason = Some(reason.to_string());
        sidecar.next_part = next_part;
        let finalizing = Instant::now();
        let dropped = rec.writer.dropped();
        if dropped > 0 {
            tracing::warn!(
                dropped,
                "frames were dropped while the disk did not keep up"
            );
        }
        let summary = rec.writer.finalize();
        let finalize_ms = finalizing.elapsed().as_millis() as u64;
        match &summary {
            Ok(s) => {
                sidecar.duration_ms = Some(s.duration.as_millis() as u64);
                sidecar.audio_frames = Some(s.audio_frames);
                sidecar.video_frames = Some(s.video_frames);
                sidecar.bytes = Some(s.bytes);
            }
            Err(e) => {
                tracing::error!(path = %rec.paths.media.display(), error = %e, "finalizing the recording failed");
                if matches!(reason, EndReason::Failed(_)) {
                    // Counted when the feed failed.
                    self.settings.health.error(e.to_string());
                } else {
                    file_error(&self.settings, e);
                }
                sidecar.end_reason = Some(format!("{reason}; finalize failed: {e}"));
            }
        }
        if let Err(e) = rec.levels.write(&rec.paths.sidecar) {
            tracing::warn!(path = %rec.paths.sidecar.display(), error = %e, "cannot write the audio levels");
        }
        // The sidecar first: "recording finished" means the file and its sidecar are done.
        self.publish_sidecar(&sidecar, &rec.paths.sidecar);
        let failed = summary.is_err() || matches!(reason, EndReason::Failed(_));
        let kind = if failed {
            EventKind::RecordingFailed
        } else {
            EventKind::RecordingFinished
        };
        // The check tool's verdict, by structure (no audio decoding, see `CheckOptions`);
        // only computed when someone is told.
        let check = self.settings.events.wanted(kind).then(|| {
            let opts = crate::check::CheckOptions {
                decode_audio: false,
                ..Default::default()
            };
            crate::recordings::Verdict::of(&crate::check::check_file(&rec.paths.media, &opts))
        });
        self.recording_event(kind, &sidecar, &rec.paths.media, check);
        // Whatever was written goes to storage, a failed recording's too.
        self.settings
            .uploads
            .recording(&rec.paths.media, &rec.paths.sidecar, &sidecar);
        if let Ok(s) = summary {
            tracing::info!(
                path = %rec.paths.media.display(),
                %reason,
                duration_ms = s.duration.as_millis() as u64,
                audio_frames = s.audio_frames,
                video_frames = s.video_frames,
                finalize_ms,
                "recording finished"
            );
        }
    }

    /// Tells the events of one recording (started, finished, failed) with its sidecar.
    fn recording_event(
        &self,
        kind: EventKind,
        sidecar: &Sidecar,
        media: &std::path::Path,
        check: Option<crate::recordings::Verdict>,
    ) {
        let events = &self.settings.events;
        if !events.wanted(kind) {
            return;
        }
        let bytes = std::fs::metadata(media).map_or(0, |m| m.len());
        events.emit(
            kind,
            serde_json::json!({
                "server": &*self.settings.server,
                "id": crate::recordings::recording_id(media),
                "path": media.display().to_string(),
                "bytes": bytes,
                "sidecar": sidecar,
                "check": check,
            }),
        );
    }

    /// Writes the sidecar and lists it in the room manifest.
    fn publish_sidecar(&self, sidecar: &Sidecar, path: &std::path::Path) {
        if let Err(e) = sidecar.write(path) {
            tracing::warn!(path = %path.display(), error = %e, "cannot write the sidecar");
        }
        if let Some(m) = &self.manifest {
            m.recording(sidecar);
        }
    }
}

/// A file error that does not end the feed (or has ended it already): status and metrics.
fn file_error(settings: &FeedSettings, e: &impl fmt::Display) {
    settings.health.error(e.to_string());
    crate::metrics::file_error();
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::FeedId;
    use crate::janus::messages::SubscribedStream;

    fn stream(kind: StreamKind, mid: &str, codec: &str) -> PublisherStream {
        PublisherStream {
            kind,
            mid: mid.into(),
            codec: Codec::from_janus_name(codec),
            codec_name: Some(codec.into()),
            disabled: false,
            simulcast: false,
        }
    }

    fn sub(kind: StreamKind, mid: &str, feed_mid: &str) -> SubscribedStream {
        SubscribedStream {
            kind,
            mid: mid.into(),
            feed: Some(FeedId::from(1)),
            feed_mid: Some(feed_mid.into()),
        }
    }

    #[test]
    fn tracks_follow_the_publishers_codecs() {
        let p = Publisher {
            id: FeedId::from(1),
            display: None,
            streams: vec![
                stream(StreamKind::Audio, "0", "opus"),
                stream(StreamKind::Video, "1", "vp9"),
                stream(StreamKind::Video, "2", "vp8"),
                stream(StreamKind::Data, "3", ""),
            ],
        };
        // Subscriber mids need not equal the publisher's.
        let subscribed = [
            sub(StreamKind::Audio, "a", "0"),
            sub(StreamKind::Video, "b", "1"),
            sub(StreamKind::Video, "c", "2"),
        ];
        let t = tracks_for(&p, &subscribed);
        assert_eq!(
            t,
            vec![(Mid::from("a"), Codec::Opus), (Mid::from("b"), Codec::Vp9)]
        );
    }

    /// Only the streams that are recorded are subscribed to (before: every audio and video
    /// stream, the second video never written).
    #[test]
    fn only_recorded_streams_are_subscribed() {
        let p = Publisher {
            id: FeedId::from(1),
            display: None,
            streams: vec![
                stream(StreamKind::Video, "0", "h263"),
                stream(StreamKind::Audio, "1", "opus"),
                stream(StreamKind::Video, "2", "vp8"),
                stream(StreamKind::Video, "3", "vp8"),
                stream(StreamKind::Audio, "4", "opus"),
                stream(StreamKind::Data, "5", ""),
            ],
        };
        let mids: Vec<&str> = streams_to_record(&p)
            .iter()
            .map(|s| s.mid.as_str())
            .collect();
        assert_eq!(mids, ["1", "2"]);
    }

    #[test]
    fn unsupported_codecs_are_skipped() {
        let p = Publisher {
            id: FeedId::from(1),
            display: None,
            streams: vec![
                stream(StreamKind::Audio, "0", "pcmu"),
                stream(StreamKind::Video, "1", "h264"),
            ],
        };
        let t = tracks_for(
            &p,
            &[
                sub(StreamKind::Audio, "0", "0"),
                sub(StreamKind::Video, "1", "1"),
            ],
        );
        assert_eq!(t, vec![(Mid::from("1"), Codec::H264)]);
    }

    #[test]
    fn end_reasons_read_well() {
        assert_eq!(EndReason::Unpublished.to_string(), "unpublished");
        assert_eq!(
            EndReason::HangUp("DTLS alert".into()).to_string(),
            "hangup: DTLS alert"
        );
        assert_eq!(
            EndReason::Failed(Failure::Write("disk full".into())).to_string(),
            "error: disk full"
        );
    }
}
