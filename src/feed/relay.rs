//! The relay half of a feed: the same frames that go to the file are published again in
//! another room (of this Janus or another one) through a [`Publication`], packetized anew by
//! str0m and never decoded. Keyframe requests from the target come back to the feed, which
//! passes them upstream as a PLI. The relay starts beside the subscription (the recording
//! never waits for it), and if it fails it is tried again; the recording goes on regardless.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::gate::KeyframeGate;
use super::machine::RelayFrame;
use crate::config::RelayConfig;
use crate::ids::RoomId;
use crate::janus::messages::Publisher;
use crate::janus::{Auth, JanusError, Session, TlsTrust};
use crate::media::{Codec, MediaKind};
use crate::publish::{
    OwnFeed, OwnFeedGuard, OwnFeeds, Publication, PublicationEvent, PublishError, PublishSpec, join,
};
use crate::rtc::MediaLoop;
use crate::secret::Secret;

/// How long to wait before publishing again after the relay failed.
const RELAY_RETRY: Duration = Duration::from_secs(5);

/// Where a room's feeds are relayed to. One per watched room; shared by its feeds, which
/// share one Janus session to a relay server.
pub struct RelayTarget {
    pub room: RoomId,
    pub pin: Option<Secret>,
    pub display_suffix: String,
    /// `None`: the source's own Janus.
    url: Option<String>,
    auth: Auth,
    trust: TlsTrust,
    session: tokio::sync::Mutex<Option<Session>>,
}

impl std::fmt::Debug for RelayTarget {
    // By hand: the secrets stay out of logs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RelayTarget")
            .field("room", &self.room)
            .field("url", &self.url.as_deref().map(crate::janus::redacted))
            .finish_non_exhaustive()
    }
}

impl RelayTarget {
    pub fn new(config: &RelayConfig) -> Arc<RelayTarget> {
        if let Some(url) = &config.url {
            crate::janus::tls::warn_if_credentials_in_clear(
                url,
                config.api_secret.is_some() || config.token.is_some(),
            );
        }
        Arc::new(RelayTarget {
            room: config.room.clone(),
            pin: config.pin.clone(),
            display_suffix: config.display_suffix.clone(),
            url: config.url.clone(),
            auth: Auth {
                api_secret: config.api_secret.clone(),
                token: config.token.clone(),
            },
            trust: TlsTrust::new(config.ca_file.clone()),
            session: tokio::sync::Mutex::new(None),
        })
    }

    /// The Janus session to publish on: `source` itself, or the relay server's session
    /// (connected on first use, and again after it was lost).
    async fn session(&self, source: &Session) -> Result<Session, RelayError> {
        let Some(url) = &self.url else {
            return Ok(source.clone());
        };
        let mut slot = self.session.lock().await;
        if let Some(s) = slot.as_ref().filter(|s| !s.is_closed()) {
            return Ok(s.clone());
        }
        let s = Session::connect(url, self.auth.clone(), &self.trust)
            .await
            .map_err(|source| RelayError::Connect {
                url: url.clone(),
                source,
            })?;
        tracing::info!(url = %crate::janus::redacted(url), "connected to the relay server");
        *slot = Some(s.clone());
        Ok(s)
    }
}

/// Why a relay could not publish (it is tried again).
#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    #[error("cannot connect to the relay server {url}: {source}")]
    Connect {
        url: String,
        #[source]
        source: JanusError,
    },
    #[error(transparent)]
    Publish(#[from] PublishError),
}

/// What the feed must act on.
pub enum RelayEvent {
    /// The target wants a keyframe (or the relay just went live): ask the source.
    WantKeyframe,
    /// Nothing for the feed to do.
    Nothing,
}

/// A relayed publisher being set up. Dropping it (the feed ended meanwhile) drops the
/// [`OwnFeedGuard`] it holds, so the feed id it claimed is forgotten.
type Starting = Pin<Box<dyn Future<Output = Result<Live, RelayError>> + Send>>;

/// A relayed publisher and its place in [`OwnFeeds`], which it keeps while it lives.
struct Live {
    publication: Publication,
    _own: OwnFeedGuard,
}

enum State {
    Starting(Starting),
    /// Boxed: a str0m session is large.
    Live(Box<Live>),
    /// Failed; publish again at this time.
    Waiting(Instant),
}

/// What a relay needs to (re)publish, fixed for the feed's life.
struct Plan {
    source: Session,
    target: Arc<RelayTarget>,
    media: MediaLoop,
    own: OwnFeeds,
    spec: PublishSpec,
}

/// One feed's relay.
pub struct Relay {
    plan: Arc<Plan>,
    state: State,
    /// No video is forwarded from a break in the source (or the start) until a keyframe.
    gate: KeyframeGate,
    pub frames: u64,
}

impl Relay {
    /// Starts publishing `publisher` (whose recorded codecs are `audio`/`video`) in the
    /// target room.
    pub fn start(
        source: Session,
        target: Arc<RelayTarget>,
        media: MediaLoop,
        own: OwnFeeds,
        from_room: &RoomId,
        publisher: &Publisher,
        codecs: (Option<Codec>, Option<Codec>),
    ) -> Relay {
        let display = format!(
            "{}{}",
            publisher
                .display
                .clone()
                .unwrap_or_else(|| publisher.id.to_string()),
            target.display_suffix
        );
        let spec = PublishSpec {
            room: target.room.clone(),
            display,
            pin: target.pin.clone(),
            audio: codecs.0,
            video: codecs.1,
            origin: format!("relay of room {from_room} feed {}", publisher.id),
        };
        let plan = Arc::new(Plan {
            source,
            target,
            media,
            own,
            spec,
        });
        Relay {
            state: State::Starting(Box::pin(publish(plan.clone()))),
            plan,
            gate: KeyframeGate::new(true),
            frames: 0,
        }
    }

    /// Drives the relay until the feed has something to do. Cancel-safe.
    pub async fn next_event(&mut self) -> RelayEvent {
        match &mut self.state {
            State::Starting(f) => match f.as_mut().await {
                Ok(live) => {
                    tracing::info!(room = %self.plan.spec.room, feed = %live.publication.feed(), display = %crate::text::Escaped(&self.plan.spec.display), "relay published");
                    self.state = State::Live(Box::new(live));
                    RelayEvent::Nothing
                }
                Err(e) => {
                    self.failed(e);
                    RelayEvent::Nothing
                }
            },
            State::Live(live) => match live.publication.next_event().await {
                PublicationEvent::Connected => {
                    self.gate.restart();
                    RelayEvent::WantKeyframe
                }
                PublicationEvent::KeyframeRequest => RelayEvent::WantKeyframe,
                PublicationEvent::Ended(e) => {
                    self.failed(format!("the relayed publisher ended: {e}"));
                    RelayEvent::Nothing
                }
            },
            State::Waiting(at) => {
                tokio::time::sleep_until((*at).into()).await;
                self.state = State::Starting(Box::pin(publish(self.plan.clone())));
                RelayEvent::Nothing
            }
        }
    }

    fn failed(&mut self, error: impl std::fmt::Display) {
        let error = error.to_string();
        tracing::warn!(room = %self.plan.spec.room, error = %crate::text::Escaped(&error), "relay failed; trying again in {RELAY_RETRY:?}");
        self.state = State::Waiting(Instant::now() + RELAY_RETRY);
    }

    /// Forwards one frame; returns true when the source should be asked for a keyframe.
    pub fn forward(&mut self, f: &RelayFrame) -> bool {
        let State::Live(live) = &mut self.state else {
            return false;
        };
        let p = &mut live.publication;
        if !p.is_connected() {
            return false;
        }
        if f.kind == MediaKind::Video && !self.gate.admit(f.contiguous, f.keyframe) {
            return true;
        }
        self.frames += u64::from(p.send(f.kind, f.network_time, f.time, &f.data));
        false
    }

    /// Leaves the target room.
    pub async fn close(self) {
        if let State::Live(live) = self.state {
            // The guard goes after leaving: until then the watchers must still skip the feed.
            let Live { publication, _own } = *live;
            publication.leave().await;
        }
        tracing::info!(frames = self.frames, "relay ended");
    }
}

/// Joins the target room, remembers the feed as ours before publishing (so no watcher of
/// ours records or relays it), then publishes. However this ends, early or dropped, the
/// claim on the feed goes with it.
async fn publish(plan: Arc<Plan>) -> Result<Live, RelayError> {
    let session = plan.target.session(&plan.source).await?;
    let joined = join(&session, &plan.spec).await?;
    let own = plan.own.claim(OwnFeed {
        server: session.url().clone(),
        room: plan.spec.room.clone(),
        feed: joined.feed().clone(),
    });
    let publication = joined.publish(&plan.media, &plan.spec).await?;
    Ok(Live {
        publication,
        _own: own,
    })
}
