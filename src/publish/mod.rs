//! Publishing into a VideoRoom: the sending path shared by the relay ([`crate::feed`] forwards
//! a recorded feed's frames into another room) and the synthetic publisher ([`synthetic`],
//! `janus-recorder publish`).
//!
//! A [`Publication`] is one publisher: its own Janus handle (`join` as publisher, then
//! `publish` with our SDP offer) and a sending str0m session ([`crate::rtc`]). Frames go in
//! with [`Publication::send`]; keyframe requests from Janus come out of
//! [`Publication::next_event`].
//!
//! Our own publishers are never recorded or relayed again (no loops when rooms are relayed
//! both ways, or when a relay target is also recorded): [`OwnFeeds`] keeps the feed id Janus
//! gives each of them at `join`, before it publishes, and the room watcher skips those ids.
//! Their streams are also described as `janus-recorder ...` for people reading Janus's room
//! lists, but that text is not trusted: any publisher could write it.

pub mod clip;
pub mod synthetic;

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use str0m::media::{MediaKind as RtcKind, MediaTime, Mid};

use crate::ids::{FeedId, RoomId};
use crate::janus::messages::{Incoming, Jsep, VideoRoomEvent};
use crate::janus::videoroom::{Request, StreamDescription};
use crate::janus::{Handle, JanusError, Session};
use crate::media::{Codec, MediaKind};
use crate::rtc::{MediaLoop, RtcError, RtcEvent, RtcSession};
use crate::secret::Secret;

/// The start of each published stream's description.
pub const DESCRIPTION: &str = "janus-recorder";

/// The feeds this process publishes, by Janus server (its URL), room and feed id: a feed
/// id means something only in its server's room. A relay into the same server must reach it
/// by the same URL (or leave the relay's `url` unset) to be recognised.
#[derive(Debug, Clone, Default)]
pub struct OwnFeeds(Arc<Mutex<HashSet<OwnFeed>>>);

/// One of our publishers: which server, which room, which feed.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct OwnFeed {
    pub server: Arc<str>,
    pub room: RoomId,
    pub feed: FeedId,
}

impl OwnFeeds {
    /// Remembers `feed` as ours until the returned guard is dropped, so a relay that ends in
    /// any way (left, failed, or dropped while still publishing) forgets its feed.
    #[must_use = "the feed is forgotten when the guard is dropped"]
    pub fn claim(&self, feed: OwnFeed) -> OwnFeedGuard {
        self.0.lock().unwrap().insert(feed.clone());
        OwnFeedGuard {
            feeds: self.clone(),
            feed,
        }
    }

    /// Whether `feed` is one of ours.
    pub fn contains(&self, feed: &OwnFeed) -> bool {
        self.0.lock().unwrap().contains(feed)
    }
}

/// Keeps one feed in [`OwnFeeds`] while it lives.
#[derive(Debug)]
pub struct OwnFeedGuard {
    feeds: OwnFeeds,
    feed: OwnFeed,
}

impl OwnFeedGuard {
    pub fn feed(&self) -> &OwnFeed {
        &self.feed
    }
}

impl Drop for OwnFeedGuard {
    fn drop(&mut self) {
        self.feeds.0.lock().unwrap().remove(&self.feed);
    }
}

/// What to publish.
#[derive(Debug, Clone)]
pub struct PublishSpec {
    pub room: RoomId,
    pub display: String,
    pub pin: Option<Secret>,
    pub audio: Option<Codec>,
    pub video: Option<Codec>,
    /// Said after [`DESCRIPTION`] in each stream's description: where the media comes from.
    pub origin: String,
}

/// A publisher that has joined the room but not yet published: its feed id is known, so the
/// caller can remember it as ours before the room hears of it.
pub struct Joined {
    handle: Handle,
    feed: FeedId,
}

impl Joined {
    /// The feed id Janus gave us.
    pub fn feed(&self) -> &FeedId {
        &self.feed
    }
}

/// What a publication reports.
#[derive(Debug)]
pub enum PublicationEvent {
    /// Media flows (ICE and DTLS are up).
    Connected,
    /// Someone in the room wants a keyframe of our video (PLI or FIR from Janus).
    KeyframeRequest,
    /// The publication is over (hangup, kicked, room destroyed, session failed).
    Ended(String),
}

/// One live publisher.
pub struct Publication {
    handle: Handle,
    rtc: RtcSession,
    feed: FeedId,
    audio: Option<(Mid, Codec)>,
    video: Option<(Mid, Codec)>,
    connected: bool,
}

/// Why publishing failed.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    /// Janus refused or did not answer a request (attach, join, publish, trickle).
    #[error("{doing}: {source}")]
    Janus {
        doing: String,
        #[source]
        source: JanusError,
    },
    /// Janus answered the join with something other than `joined`.
    #[error("publisher join answered {0}")]
    UnexpectedJoin(serde_json::Value),
    #[error("Janus sent no SDP answer: {0}")]
    NoAnswer(serde_json::Value),
    #[error("nothing to publish")]
    Nothing,
    /// Negotiating the str0m session failed.
    #[error(transparent)]
    Rtc(#[from] RtcError),
}

/// The error of a Janus request, with what it was for.
fn janus(doing: impl Into<String>) -> impl FnOnce(JanusError) -> PublishError {
    let doing = doing.into();
    move |source| PublishError::Janus { doing, source }
}

/// Joins `spec.room` as a publisher named `spec.display`.
pub async fn join(session: &Session, spec: &PublishSpec) -> Result<Joined, PublishError> {
    let handle = session
        .attach_videoroom()
        .await
        .map_err(janus("attaching to the VideoRoom plugin"))?;
    let body = Request::join_publisher(&spec.room, &spec.display, spec.pin.as_ref()).body();
    let (data, _) = handle
        .message(body, None)
        .await
        .map_err(janus(format!("joining room {} as publisher", spec.room)))?;
    let VideoRoomEvent::Joined { id: Some(feed), .. } = VideoRoomEvent::parse(&data) else {
        return Err(PublishError::UnexpectedJoin(data));
    };
    Ok(Joined { handle, feed })
}

impl Joined {
    /// Offers our media (send-only, exactly the spec's codecs) and waits for Janus's answer.
    pub async fn publish(
        self,
        media: &MediaLoop,
        spec: &PublishSpec,
    ) -> Result<Publication, PublishError> {
        let codecs: Vec<Codec> = spec.audio.into_iter().chain(spec.video).collect();
        if codecs.is_empty() {
            return Err(PublishError::Nothing);
        }
        let mut setup = media.sender(&codecs);
        let kinds: Vec<RtcKind> = codecs
            .iter()
            .map(|c| match c.kind() {
                MediaKind::Audio => RtcKind::Audio,
                MediaKind::Video => RtcKind::Video,
            })
            .collect();
        let (offer, mids) = setup.offer_to_send(&kinds)?;
        let descriptions: Vec<StreamDescription> = mids
            .iter()
            .zip(&codecs)
            .map(|(mid, c)| StreamDescription {
                mid: mid.to_string(),
                description: format!("{DESCRIPTION} {} {}", c.kind(), spec.origin),
            })
            .collect();
        let body = Request::publish(descriptions, spec.audio, spec.video).body();
        let offer = Jsep {
            kind: "offer".into(),
            sdp: offer,
        };
        let (data, answer) = self
            .handle
            .message(body, Some(&offer))
            .await
            .map_err(janus("publishing"))?;
        let Some(answer) = answer.filter(|j| j.kind == "answer") else {
            return Err(PublishError::NoAnswer(data));
        };
        setup.accept_answer(&answer.sdp)?;
        let candidates = setup.local_candidates();
        let rtc = setup.start()?;
        self.handle
            .trickle(&candidates)
            .await
            .map_err(janus("trickling our candidates"))?;
        let by_kind = |k: MediaKind| {
            mids.iter()
                .zip(&codecs)
                .find(|(_, c)| c.kind() == k)
                .map(|(m, c)| (*m, *c))
        };
        Ok(Publication {
            audio: by_kind(MediaKind::Audio),
            video: by_kind(MediaKind::Video),
            handle: self.handle,
            rtc,
            feed: self.feed,
            connected: false,
        })
    }
}

impl Publication {
    /// Our feed id in the target room.
    pub fn feed(&self) -> &FeedId {
        &self.feed
    }

    /// Whether media can be sent yet.
    pub fn is_connected(&self) -> bool {
        self.connected
    }

    /// Sends one frame of `kind` at `rtp_time` (the codec's clock). Frames before the
    /// connection is up, of a kind we do not publish, or past a full send queue are
    /// dropped: false.
    pub fn send(
        &mut self,
        kind: MediaKind,
        wallclock: Instant,
        rtp_time: MediaTime,
        data: &[u8],
    ) -> bool {
        let target = match kind {
            MediaKind::Audio => self.audio,
            MediaKind::Video => self.video,
        };
        let (Some((mid, codec)), true) = (target, self.connected) else {
            return false;
        };
        self.rtc.send(mid, codec, wallclock, rtp_time, data)
    }

    /// Drives the session and the handle until something happens. Cancel-safe.
    pub async fn next_event(&mut self) -> PublicationEvent {
        loop {
            tokio::select! {
                ev = self.rtc.next_event() => match ev {
                    RtcEvent::Connected => {
                        self.connected = true;
                        return PublicationEvent::Connected;
                    }
                    RtcEvent::KeyframeRequest { mid } if Some(mid) == self.video.map(|v| v.0) => {
                        tracing::debug!(feed = %self.feed, "keyframe request from Janus");
                        return PublicationEvent::KeyframeRequest;
                    }
                    RtcEvent::Failed(e) => return PublicationEvent::Ended(e.to_string()),
                    RtcEvent::Disconnected => tracing::warn!(feed = %self.feed, "publisher ICE disconnected"),
                    other => tracing::trace!(?other, "publisher session event"),
                },
                msg = self.handle.next_event() => match msg {
                    None => return PublicationEvent::Ended("connection to Janus lost".into()),
                    Some(msg) => if let Some(reason) = self.on_janus(msg) {
                        return PublicationEvent::Ended(reason);
                    },
                },
            }
        }
    }

    fn on_janus(&mut self, msg: Incoming) -> Option<String> {
        match msg {
            Incoming::Trickle {
                candidate: Some(c), ..
            } => {
                if let Err(e) = self.rtc.add_remote_candidate(&c) {
                    tracing::warn!(error = %e, "ignoring Janus's candidate");
                }
            }
            Incoming::HangUp { reason, .. } => return Some(format!("hangup: {reason}")),
            Incoming::Detached { .. } => return Some("detached".into()),
            Incoming::Event { data, .. } => match VideoRoomEvent::parse(&data) {
                VideoRoomEvent::Kicked { feed }
                    if feed.as_ref().is_none_or(|f| *f == self.feed) =>
                {
                    return Some("kicked".into());
                }
                VideoRoomEvent::Leaving { feed: None } => return Some("left".into()),
                VideoRoomEvent::Unpublished { feed: None } => return Some("unpublished".into()),
                VideoRoomEvent::Destroyed { .. } => return Some("room destroyed".into()),
                // Other publishers coming and going: not ours to act on.
                ev => tracing::trace!(event = ?ev, "publisher handle event"),
            },
            other => tracing::debug!(?other, "publisher handle message"),
        }
        None
    }

    /// Waits until the frames sent so far are in the media session, which paces them out.
    pub async fn sent(&self) {
        self.rtc.sent().await;
    }

    /// Leaves the room (Janus tells the room we unpublished and left) and detaches, once
    /// the frames sent so far are on their way; bounded so that shutdown stays quick.
    pub async fn leave(mut self) {
        self.rtc.sent().await;
        self.rtc.close();
        let bye = async {
            let _ = self.handle.message(Request::Leave.body(), None).await;
            self.handle.detach().await;
        };
        let _ = tokio::time::timeout(Duration::from_secs(2), bye).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn own(server: &str, room: u64, feed: u64) -> OwnFeed {
        OwnFeed {
            server: server.into(),
            room: RoomId::from(room),
            feed: FeedId::from(feed),
        }
    }

    #[test]
    fn own_feeds_are_keyed_by_server_and_forgotten_with_their_guard() {
        let feeds = OwnFeeds::default();
        let a = feeds.claim(own("ws://a:8188", 1234, 7));
        assert!(feeds.contains(&own("ws://a:8188", 1234, 7)));
        // The same room and feed id on another server is someone else.
        assert!(!feeds.contains(&own("ws://b:8188", 1234, 7)));
        let b = feeds.claim(own("ws://b:8188", 1234, 7));
        drop(b);
        assert!(feeds.contains(&own("ws://a:8188", 1234, 7)));
        assert!(!feeds.contains(&own("ws://b:8188", 1234, 7)));
        drop(a);
        assert!(!feeds.contains(&own("ws://a:8188", 1234, 7)));
    }

    /// A feed that ends while its relay is still publishing drops the relay's start; the
    /// feed it had claimed is forgotten with it.
    #[tokio::test]
    async fn a_relay_dropped_while_starting_forgets_its_feed() {
        let feeds = OwnFeeds::default();
        let (joined_tx, joined_rx) = tokio::sync::oneshot::channel();
        let starting = {
            let feeds = feeds.clone();
            async move {
                let _claimed = feeds.claim(own("ws://a:8188", 1234, 7));
                let _ = joined_tx.send(());
                std::future::pending::<()>().await
            }
        };
        let task = tokio::spawn(starting);
        joined_rx.await.unwrap();
        assert!(feeds.contains(&own("ws://a:8188", 1234, 7)));
        task.abort();
        let _ = task.await;
        assert!(!feeds.contains(&own("ws://a:8188", 1234, 7)));
    }
}
