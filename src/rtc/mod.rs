//! str0m sessions. The sans-IO loop (`handle_input` / `poll_output`) runs in one place only,
//! the process's [`MediaLoop`], which owns every `Rtc` and the UDP sockets. A session is
//! negotiated first without IO ([`RtcSetup`]: the feed subscriber answers Janus's offer, the
//! publisher offers send-only media and takes Janus's answer), then handed to the loop
//! ([`RtcSetup::start`]), after which its task talks to it through [`RtcSession`].
//!
//! Media goes through str0m frame by frame: received frames are depacketized, frames to send
//! are packetized again, never decoded. That keeps one code path for recording, relaying and
//! the synthetic publisher, with str0m's NACK/RTX and sender reports on both sides.

mod driven;
mod media_loop;
mod pacing;
mod route;
mod sockets;
mod spread;

use std::collections::VecDeque;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::time::{Duration, Instant};

use str0m::change::{SdpAnswer, SdpOffer, SdpPendingOffer};
use str0m::media::{Direction, MediaData, MediaKind, MediaTime, Mid};
use str0m::rtp::{Extension, ExtensionMap};
use str0m::{Candidate, IceCreds, Rtc, RtcConfig};
use tokio::sync::{mpsc, oneshot};

use crate::media::Codec;
use media_loop::{Control, Media, NewSession, Outgoing, Shared};
pub use media_loop::{MediaLoop, next_on_grid};
use route::RtcId;
pub(crate) use sockets::bind_unwatched;

/// What the session reports to its task.
#[derive(Debug)]
pub enum RtcEvent {
    /// ICE and DTLS are up.
    Connected,
    /// The remote offered this media (from the SDP).
    MediaAdded { mid: Mid, kind: MediaKind },
    /// A depacketized frame.
    /// Boxed: a frame is far larger than the other events.
    Frame(Box<MediaData>),
    /// The peer asked for a keyframe on media we send (PLI or FIR).
    KeyframeRequest { mid: Mid },
    /// ICE lost the peer (it may come back).
    Disconnected,
    /// Receive statistics of one media, cumulative since the session began.
    Stats(ReceiveStats),
    /// The session is over and cannot be used again.
    Failed(SessionEnd),
}

/// Why a session of the media loop ended.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SessionEnd {
    /// str0m panicked (an internal invariant; only this session ends).
    #[error("str0m panicked: {0}")]
    Panicked(String),
    /// str0m returned an error from its output.
    #[error("str0m: {0}")]
    Str0m(String),
    /// The peer closed the DTLS connection.
    #[error("peer closed the DTLS connection")]
    PeerClosed,
    /// The session was closed from our side.
    #[error("session closed")]
    Closed,
    /// The media loop is gone (the process is ending).
    #[error("the media loop ended the session")]
    LoopGone,
}

impl SessionEnd {
    /// A panic caught around a call into str0m.
    pub(crate) fn panicked(p: Box<dyn std::any::Any + Send>) -> SessionEnd {
        SessionEnd::Panicked(panic_message(p))
    }
}

/// Cumulative receive statistics of one media (str0m's `MediaIngressStats`).
#[derive(Debug, Clone, Copy, Default)]
pub struct ReceiveStats {
    pub mid: Option<Mid>,
    pub packets: u64,
    pub nacks: u64,
    /// Fraction lost in the last receiver report interval.
    pub loss: f32,
}

/// Why negotiating a session failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RtcError {
    /// The SDP (offer or answer) does not parse.
    #[error("bad SDP {kind}: {reason}")]
    BadSdp { kind: &'static str, reason: String },
    /// The SDP parses but str0m cannot accept it.
    #[error("cannot accept the SDP {kind}: {reason}")]
    Refused { kind: &'static str, reason: String },
    #[error("bad candidate {candidate:?}: {reason}")]
    BadCandidate { candidate: String, reason: String },
    #[error("no offer is waiting for an answer")]
    NoPendingOffer,
    #[error("nothing to offer")]
    NothingToOffer,
    /// str0m hit one of its internal invariants; the session is unusable.
    #[error("str0m panicked: {0}")]
    Panicked(String),
    #[error("session already failed")]
    Dead,
    /// A session made by [`RtcSetup::offline`] has no media loop to start in.
    #[error("no media loop to start the session in")]
    Offline,
}

/// How often str0m reports receive statistics.
const STATS_EVERY: Duration = Duration::from_secs(5);

/// The least time between two NACKs for the same packet. Janus 1.1.2 resends a packet at
/// most once per 200 ms (`MAX_NACK_IGNORE` in its ice.c) and never learns our round trip
/// (it drops our RRTR), so str0m's retries 105 ms apart had every other one ignored; at 210 ms
/// each of str0m's five NACKs is answered while the packet is in Janus's NACK queue (see
/// README, "What happens when": `min_nack_queue = 1000`).
const NACK_RETRY: Duration = Duration::from_millis(210);

/// How many complete video frames str0m holds behind a missing packet before it gives the
/// packet up. The five NACKs, [`NACK_RETRY`] apart, and str0m's 300 ms grace after the last
/// take about 1.3 s; str0m's 30 frames are 1 s at 30 fps and would give up on the last two
/// resends. 60 covers 1.3 s up to 45 fps; frames wait only behind a gap.
const HOLD_BACK_FRAMES: usize = 60;

/// str0m's standard RTP header extensions without transport-wide sequence numbers, for a
/// receiving session. Janus does no bandwidth estimation for subscribers, so transport-cc
/// feedback (about ten RTCP packets a second per feed) only cost CPU, and it did harm: str0m
/// puts it at the front of the compound RTCP packet that also carries our PLI, labelled with
/// the first remote SSRC it saw, and Janus 1.1.2 files a whole compound packet under the
/// medium of its first SSRC. When that was the audio one, Janus dropped the PLI as audio
/// feedback and the keyframe came only when the publisher sent one by itself (seconds later).
/// NACKs in such a packet were filed under audio too; since this change the 3% loss test
/// sees about one break in the video per run or none, where many losses used to break it.
///
/// abs-capture-time is added: the publisher's capture clock on each frame, the best clock for
/// lip sync (`feed::clock`), used whenever Janus offers it (Janus copies it through since
/// janus-gateway PR 3161; 1.1.2 predates it and does not offer it).
fn receive_extensions() -> ExtensionMap {
    let mut map = ExtensionMap::empty();
    for (id, ext) in ExtensionMap::standard().iter() {
        if *ext != Extension::TransportSequenceNumber {
            map.set(id, ext.clone());
        }
    }
    map.set(9, Extension::AbsoluteCaptureTime);
    map
}

/// The str0m config of a receiving session. str0m's default codecs take Opus, VP8, VP9,
/// AV1, H.265 and H.264 in baseline, constrained baseline and main (packetization modes 0
/// and 1) and high (mode 1 only). str0m matches H.264 only with the same profile and mode
/// (the level may differ), so high in mode 0 and constrained high (`640c..`, what Chromium
/// offers for high) in both modes are added: every H.264 a browser or hardware encoder
/// publishes is answered.
fn receiving_config() -> RtcConfig {
    let mut config = Rtc::builder()
        // Receive statistics (loss, NACKs, PLIs) for the metrics.
        .set_stats_interval(Some(STATS_EVERY))
        // str0m's receiver report interval (a second) is kept. Janus 1.1.2 retransmits
        // nothing to a subscriber until a report answering its first sender report gives it
        // the round trip. The vendored str0m answers a sender's first report at once: the
        // first resent packet came 1.4 s into a subscription (10% loss), 1.7-2.1 s waiting for
        // the next report a second, 1.3 s with a report every 100 ms; with one every 200 ms,
        // Janus's CPU for our subscriptions went from 0.24 to 0.26-0.28 s per feed-minute in
        // the benchmark, for loss in a subscription's first second only.
        .set_extension_map(receive_extensions())
        .set_min_nack_retry_interval(NACK_RETRY)
        .set_reordering_size_video(HOLD_BACK_FRAMES)
        // Janus (1.1.2 and later) files a whole RTCP datagram under the first media source it
        // names: with str0m's packing (one receiver report for every stream), only one stream
        // of a subscription learned the round trip (Janus keeps no packets to retransmit
        // before it does), and NACKs for one stream were applied to another's packets. Our
        // patch to str0m (vendor/str0m-patches) keeps each datagram about one source.
        .set_rtcp_per_media_source(true);
    let codecs = config.codec_config();
    // Payload types str0m's defaults leave free; Janus's offer decides the ones used.
    codecs.add_h264(37.into(), Some(38.into()), false, 0x64_001f);
    codecs.add_h264(39.into(), Some(40.into()), true, 0x64_0c1f);
    codecs.add_h264(41.into(), Some(42.into()), false, 0x64_0c1f);
    config
}

/// The str0m config of a sending session that offers exactly `codecs` (so Janus cannot pick
/// one we do not have frames for).
fn sending_config(codecs: &[Codec]) -> RtcConfig {
    Rtc::builder()
        .clear_codecs()
        .enable_opus(codecs.contains(&Codec::Opus), false)
        .enable_vp8(codecs.contains(&Codec::Vp8))
        .enable_vp9(codecs.contains(&Codec::Vp9))
        .enable_av1(codecs.contains(&Codec::Av1))
        .enable_h264(codecs.contains(&Codec::H264))
        .enable_h265(codecs.contains(&Codec::H265))
}

/// The text a panic was raised with, if it had one.
pub(crate) fn panic_message(p: Box<dyn std::any::Any + Send>) -> String {
    p.downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| p.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".into())
}

impl MediaLoop {
    /// A receiving session to negotiate (Janus offers, we answer).
    pub fn receiver(&self) -> RtcSetup {
        RtcSetup::new(receiving_config(), Some(self.clone()))
    }

    /// A sending session that offers exactly `codecs`.
    pub fn sender(&self, codecs: &[Codec]) -> RtcSetup {
        RtcSetup::new(sending_config(codecs), Some(self.clone()))
    }
}

/// A str0m `Rtc` being negotiated, before any IO: SDP offers and answers, candidates.
/// [`RtcSetup::start`] hands it to the media loop.
pub struct RtcSetup {
    rtc: Rtc,
    /// Our ICE username fragment: the loop routes STUN requests by it.
    ufrag: String,
    media: Option<MediaLoop>,
    /// Our offer, until Janus answers it (sending side).
    pending: Option<SdpPendingOffer>,
    /// str0m panicked: nothing may be called on `rtc` any more.
    dead: bool,
}

impl RtcSetup {
    fn new(config: RtcConfig, media: Option<MediaLoop>) -> RtcSetup {
        // Our own credentials, so the loop knows the ufrag STUN requests will name.
        let creds = IceCreds::new();
        let ufrag = creds.ufrag.clone();
        let config = match media.as_ref().and_then(|m| m.shared.dtls_cert.clone()) {
            Some(cert) => config.set_dtls_cert(cert),
            None => config,
        };
        let mut rtc = config
            .set_local_ice_credentials(creds)
            .build(Instant::now());
        for &addr in media.iter().flat_map(|m| m.candidates()) {
            match Candidate::host(addr, "udp") {
                Ok(c) => {
                    rtc.add_local_candidate(c);
                }
                Err(e) => tracing::warn!(%addr, error = %e, "cannot offer this address"),
            }
        }
        RtcSetup {
            rtc,
            ufrag,
            media,
            pending: None,
            dead: false,
        }
    }

    /// A receiving session without a media loop, for tests and the fuzz targets: everything
    /// but IO.
    pub fn offline() -> RtcSetup {
        RtcSetup::new(receiving_config(), None)
    }

    /// The SDP path of [`RtcSetup::accept_offer`] without IO: what the fuzz target drives
    /// with hostile offers. Never panics; an error says why.
    pub fn answer_offline(sdp: &str) -> Result<String, RtcError> {
        Self::offline().accept_offer(sdp)
    }

    /// Runs `f` on the `Rtc`, turning a str0m panic into an error and marking it dead.
    fn guarded<T>(
        &mut self,
        f: impl FnOnce(&mut Rtc) -> Result<T, RtcError>,
    ) -> Result<T, RtcError> {
        if self.dead {
            return Err(RtcError::Dead);
        }
        match catch_unwind(AssertUnwindSafe(|| f(&mut self.rtc))) {
            Ok(v) => v,
            Err(p) => {
                self.dead = true;
                Err(RtcError::Panicked(panic_message(p)))
            }
        }
    }

    /// Accepts Janus's SDP offer; returns our SDP answer.
    pub fn accept_offer(&mut self, sdp: &str) -> Result<String, RtcError> {
        let sdp = &filter_sdp_candidates(sdp, self.candidate_networks());
        // Parsing is guarded too: the SDP comes from the network.
        self.guarded(|rtc| accept_offer(rtc, sdp))
    }

    /// Our SDP offer to send one send-only media per entry of `kinds`; returns the offer and
    /// the mid of each media, in order.
    pub fn offer_to_send(&mut self, kinds: &[MediaKind]) -> Result<(String, Vec<Mid>), RtcError> {
        let (offer, pending, mids) = self.guarded(|rtc| {
            let mut api = rtc.sdp_api();
            let stream = "janus-recorder".to_owned();
            let mids: Vec<Mid> = kinds
                .iter()
                .map(|&k| api.add_media(k, Direction::SendOnly, Some(stream.clone()), None, None))
                .collect();
            api.apply()
                .map(|(offer, pending)| (offer, pending, mids))
                .ok_or(RtcError::NothingToOffer)
        })?;
        self.pending = Some(pending);
        Ok((offer.to_sdp_string(), mids))
    }

    /// Accepts Janus's SDP answer to [`RtcSetup::offer_to_send`].
    pub fn accept_answer(&mut self, sdp: &str) -> Result<(), RtcError> {
        let pending = self.pending.take().ok_or(RtcError::NoPendingOffer)?;
        let sdp = &filter_sdp_candidates(sdp, self.candidate_networks());
        self.guarded(|rtc| {
            let answer = SdpAnswer::from_sdp_string(sdp).map_err(|e| RtcError::BadSdp {
                kind: "answer",
                reason: e.to_string(),
            })?;
            rtc.sdp_api()
                .accept_answer(pending, answer)
                .map_err(|e| RtcError::Refused {
                    kind: "answer",
                    reason: e.to_string(),
                })
        })
    }

    /// `[network] candidate_networks` of the loop this session is for.
    fn candidate_networks(&self) -> &[ipnet::IpNet] {
        self.media
            .as_ref()
            .map_or(&[], |m| m.shared.candidate_networks.as_slice())
    }

    /// Adds a candidate Janus trickled before the session started.
    pub fn add_remote_candidate(&mut self, sdp: &str) -> Result<(), RtcError> {
        let c = allowed_candidate(sdp, self.candidate_networks())?;
        self.guarded(|rtc| {
            rtc.add_remote_candidate(c);
            Ok(())
        })
    }

    /// Our host candidates as SDP `candidate:` strings, for `trickle`.
    pub fn local_candidates(&self) -> Vec<String> {
        self.media
            .iter()
            .flat_map(|m| m.candidates())
            .filter_map(|&a| Candidate::host(a, "udp").ok())
            .map(|c| c.to_sdp_string().trim_start_matches("a=").to_owned())
            .collect()
    }

    /// Hands the negotiated session to the media loop; from now on it is driven there.
    pub fn start(self) -> Result<RtcSession, RtcError> {
        if self.dead {
            return Err(RtcError::Dead);
        }
        let media = self.media.ok_or(RtcError::Offline)?;
        let shared = media.shared;
        let id = shared.next_id();
        let (tx, rx) = media_loop::event_channel();
        let new = NewSession {
            id,
            rtc: self.rtc,
            ufrag: self.ufrag,
            events: tx,
        };
        let session = RtcSession {
            id,
            shared,
            events: rx,
            queue: VecDeque::new(),
            batched: None,
            closed: false,
        };
        session.control(Control::Start(Box::new(new)));
        Ok(session)
    }
}

/// Accepts an SDP offer on `rtc` (a new session's, or a renegotiation of a running one);
/// our SDP answer. The caller guards against str0m's panics.
fn accept_offer(rtc: &mut Rtc, sdp: &str) -> Result<String, RtcError> {
    let offer = SdpOffer::from_sdp_string(sdp).map_err(|e| RtcError::BadSdp {
        kind: "offer",
        reason: e.to_string(),
    })?;
    rtc.sdp_api()
        .accept_offer(offer)
        .map(|a| a.to_sdp_string())
        .map_err(|e| RtcError::Refused {
            kind: "offer",
            reason: e.to_string(),
        })
}

/// An SDP `candidate:` string as str0m's candidate; parsing is guarded: it comes from the
/// network.
fn parse_candidate(sdp: &str) -> Result<Candidate, RtcError> {
    catch_unwind(|| Candidate::from_sdp_string(sdp))
        .map_err(|p| RtcError::Panicked(panic_message(p)))?
        .map_err(|e| RtcError::BadCandidate {
            candidate: sdp.to_owned(),
            reason: e.to_string(),
        })
}

/// A candidate Janus sent, parsed, if its address is in `networks` (empty: any).
fn allowed_candidate(sdp: &str, networks: &[ipnet::IpNet]) -> Result<Candidate, RtcError> {
    let c = parse_candidate(sdp)?;
    if networks.is_empty() || networks.iter().any(|n| n.contains(&c.addr().ip())) {
        Ok(c)
    } else {
        Err(RtcError::BadCandidate {
            candidate: sdp.to_owned(),
            reason: "its address is outside [network] candidate_networks".into(),
        })
    }
}

/// `sdp` without the candidate lines whose address is outside `networks` (each dropped one
/// logged); as it is when `networks` is empty.
pub fn filter_sdp_candidates(sdp: &str, networks: &[ipnet::IpNet]) -> String {
    if networks.is_empty() {
        return sdp.to_owned();
    }
    let mut out = String::with_capacity(sdp.len());
    for line in sdp.split_inclusive('\n') {
        if let Some(c) = line.trim_end().strip_prefix("a=")
            && c.starts_with("candidate:")
            && let Err(e) = allowed_candidate(c, networks)
        {
            tracing::warn!(error = %e, "ignoring a candidate in Janus's SDP");
            continue;
        }
        out.push_str(line);
    }
    out
}

/// A task's handle on its session in the media loop. Dropping it closes the session.
pub struct RtcSession {
    id: RtcId,
    shared: Arc<Shared>,
    events: mpsc::Receiver<Vec<RtcEvent>>,
    /// Events of a batch not yet handed out, oldest first.
    queue: VecDeque<RtcEvent>,
    /// The period frames come in, once batched.
    batched: Option<Duration>,
    closed: bool,
}

impl RtcSession {
    fn control(&self, c: Control) {
        // An error means the loop is gone; the task hears it from `next_event`.
        let _ = self.shared.control.send(c);
    }

    /// The next thing that happened to the session. Cancel-safe.
    pub async fn next_event(&mut self) -> RtcEvent {
        loop {
            if let Some(ev) = self.queue.pop_front() {
                return ev;
            }
            if self.closed {
                return RtcEvent::Failed(SessionEnd::Closed);
            }
            match self.events.recv().await {
                Some(batch) => self.queue.extend(batch),
                None => {
                    self.closed = true;
                    return RtcEvent::Failed(SessionEnd::LoopGone);
                }
            }
        }
    }

    /// An event already received and not taken yet; `None` without waiting for one.
    pub fn queued(&mut self) -> Option<RtcEvent> {
        self.queue.pop_front()
    }

    /// Everything that happened to the session since the last call, at least one event
    /// (a whole batch of the loop's at once: what a task that hands frames on to others
    /// takes, so it wakes them once per batch). Cancel-safe.
    pub async fn next_events(&mut self) -> Vec<RtcEvent> {
        let first = self.next_event().await;
        let mut events = Vec::with_capacity(self.queue.len() + 1);
        events.push(first);
        events.extend(self.queue.drain(..));
        events
    }

    /// Adds a candidate Janus trickled (refused outside `[network] candidate_networks`).
    pub fn add_remote_candidate(&mut self, sdp: &str) -> Result<(), RtcError> {
        let c = allowed_candidate(sdp, &self.shared.candidate_networks)?;
        self.control(Control::Candidate(self.id, c));
        Ok(())
    }

    /// Renegotiates the running session: accepts Janus's new SDP offer (streams added to or
    /// removed from a multistream subscription) in the media loop, between two of its turns,
    /// so the media already flowing is not interrupted; our SDP answer.
    pub async fn renegotiate(&mut self, sdp: &str) -> Result<String, RtcError> {
        let sdp = filter_sdp_candidates(sdp, &self.shared.candidate_networks);
        let (tx, rx) = oneshot::channel();
        self.control(Control::Offer(self.id, sdp, tx));
        rx.await.unwrap_or(Err(RtcError::Dead))
    }

    /// Asks the sender of `mid` for a keyframe with a PLI, as soon as str0m can (it needs
    /// the sender's SSRC, known from its first packet).
    pub fn request_keyframe(&mut self, mid: Mid) {
        self.control(Control::Keyframe(self.id, mid));
    }

    /// Sends one frame on `mid` in str0m's format (an Opus packet, a VP8/VP9 frame, H.264/H.265
    /// in Annex B, AV1 OBUs with sizes); str0m packetizes it. `rtp_time` is in the codec's
    /// clock (48 kHz audio, 90 kHz video) and must not go back. False: the loop's send queue
    /// is full and the frame was dropped.
    pub fn send(
        &mut self,
        mid: Mid,
        codec: Codec,
        wallclock: Instant,
        rtp_time: MediaTime,
        data: &[u8],
    ) -> bool {
        self.shared
            .media
            .try_send(Media::Frame(Outgoing {
                id: self.id,
                mid,
                codec,
                wallclock,
                rtp_time,
                data: data.to_vec(),
            }))
            .is_ok()
    }

    /// Waits (1 s at most) until every frame sent so far is in str0m; the loop then spreads
    /// its packets out (`spread`: within a frame interval at a steady rate, a second at most): before leaving, so the last frames
    /// are not cut off.
    pub async fn sent(&self) {
        let (tx, rx) = oneshot::channel();
        let barrier = async {
            if self.shared.media.send(Media::Barrier(tx)).await.is_ok() {
                let _ = rx.await;
            }
        };
        let _ = tokio::time::timeout(Duration::from_secs(1), barrier).await;
    }

    /// From now on, frames come in batches, every `every` (on a grid shared by the
    /// process; at least every 20 ms). For a receiving session once it is
    /// connected (ICE and DTLS never wait for a batch). Called again, it changes the period.
    pub fn batch_reads(&mut self, every: Duration) {
        if self.batched != Some(every) {
            self.batched = Some(every);
            self.control(Control::Batch(self.id, every));
        }
    }

    /// What was already received but not yet handed out, without waiting for the tick: for
    /// a feed that is ending, so the frames that arrived before the end still reach its file.
    pub async fn take_received(&mut self) -> Vec<RtcEvent> {
        if self.closed {
            return self.queue.drain(..).collect();
        }
        let (tx, rx) = oneshot::channel();
        self.control(Control::Take(self.id, tx));
        // Bounded: shutdown must stay quick even if the loop is stuck.
        let taken = tokio::time::timeout(Duration::from_secs(1), rx).await;
        // Batches sent before the reply are older than it.
        while let Ok(batch) = self.events.try_recv() {
            self.queue.extend(batch);
        }
        let mut events: Vec<RtcEvent> = self.queue.drain(..).collect();
        if let Ok(Ok(last)) = taken {
            events.extend(last);
        }
        events
    }

    /// Ends the session politely (RTCP BYE / DTLS close_notify are sent best effort).
    pub fn close(&mut self) {
        if !self.closed {
            self.closed = true;
            self.control(Control::Close(self.id));
        }
    }
}

impl Drop for RtcSession {
    fn drop(&mut self) {
        self.close();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every video codec Janus forwards is accepted in the form it offers it: H.264 in each
    /// profile (baseline, constrained baseline, main, high) and packetization mode, H.265, AV1.
    #[test]
    fn every_codec_and_h264_profile_janus_offers_is_answered() {
        let fixture: serde_json::Value = serde_json::from_str(include_str!(
            "../../tests/fixtures/janus/25-event-attached.json"
        ))
        .unwrap();
        let sdp = fixture["janusSdp"]["sdp"].as_str().unwrap();
        let nl = if sdp.contains("\r\n") { "\r\n" } else { "\n" };
        let mut offers = Vec::new();
        for profile in ["42001f", "42e01f", "4d001f", "64001f", "640c1f", "640032"] {
            for mode in [0, 1] {
                offers.push((
                    format!("H264 {profile} mode {mode}"),
                    format!(
                        "a=rtpmap:96 H264/90000{nl}a=fmtp:96 level-asymmetry-allowed=1;packetization-mode={mode};profile-level-id={profile}"
                    ),
                    "H264/90000",
                ));
            }
        }
        offers.push((
            "H265".into(),
            format!("a=rtpmap:96 H265/90000{nl}a=fmtp:96 level-id=93;profile-id=1;tier-flag=0;tx-mode=SRST"),
            "H265/90000",
        ));
        offers.push(("AV1".into(), "a=rtpmap:96 AV1/90000".into(), "AV1/90000"));
        for (name, lines, rtpmap) in offers {
            let offer = sdp.replace("a=rtpmap:96 VP8/90000", &lines);
            let answer = RtcSetup::answer_offline(&offer).unwrap_or_else(|e| panic!("{name}: {e}"));
            let video = &answer[answer.find("m=video").expect("video m-line")..];
            assert!(
                !video.starts_with("m=video 0 "),
                "{name} refused:\n{answer}"
            );
            assert!(video.contains(rtpmap), "{name}:\n{answer}");
        }
    }

    /// Senders in three loops (three sockets, as three Janus handles have three ports) and
    /// their receivers all in one loop, on one socket: every session connects, and each
    /// receiver gets its own sender's frames only, in order.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sessions_share_one_socket_and_get_only_their_frames() {
        let plan = crate::net::SocketPlan::new(None, &["127.0.0.1".parse().unwrap()]);
        let receiving = MediaLoop::start(&plan, 0).unwrap();
        let mut pairs = Vec::new();
        for i in 0..3u8 {
            let sending = MediaLoop::start(&plan, 0).unwrap();
            let mut tx = sending.sender(&[Codec::Opus]);
            let (offer, mids) = tx.offer_to_send(&[MediaKind::Audio]).unwrap();
            let mut rx = receiving.receiver();
            let answer = rx.accept_offer(&offer).unwrap();
            tx.accept_answer(&answer).unwrap();
            pairs.push((i, mids[0], tx.start().unwrap(), rx.start().unwrap()));
        }
        for (_, _, tx, rx) in &mut pairs {
            connected(tx).await;
            connected(rx).await;
        }
        let start = Instant::now();
        for n in 0..50u64 {
            for (i, mid, tx, _) in &mut pairs {
                let at = start + Duration::from_millis(20 * n);
                let time = MediaTime::from_micros(20_000 * n)
                    .rebase(str0m::media::Frequency::FORTY_EIGHT_KHZ);
                let mut frame = vec![*i; 60];
                frame[1] = n as u8;
                assert!(tx.send(*mid, Codec::Opus, at, time, &frame));
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        for (i, _, _, rx) in &mut pairs {
            let mut got = Vec::new();
            let wait = async {
                while got.len() < 50 {
                    match rx.next_event().await {
                        RtcEvent::Frame(d) => {
                            assert_eq!(d.data[0], *i, "a frame of another session");
                            got.push(d.data[1]);
                        }
                        RtcEvent::Failed(e) => panic!("session failed: {e}"),
                        _ => {}
                    }
                }
            };
            let _ = tokio::time::timeout(Duration::from_secs(5), wait).await;
            assert_eq!(got, (0..50).collect::<Vec<u8>>(), "receiver {i}");
        }
    }

    /// Waits (5 s at most) for a session to connect.
    async fn connected(s: &mut RtcSession) {
        let wait = async {
            loop {
                match s.next_event().await {
                    RtcEvent::Connected => return,
                    RtcEvent::Failed(e) => panic!("session failed: {e}"),
                    _ => {}
                }
            }
        };
        tokio::time::timeout(Duration::from_secs(5), wait)
            .await
            .expect("connected within 5 s");
    }

    /// Janus's real subscriber offer (from the reference flow) is answered; hostile ones are
    /// refused with a reason, never a panic.
    #[test]
    fn offers_real_and_hostile() {
        let fixture: serde_json::Value = serde_json::from_str(include_str!(
            "../../tests/fixtures/janus/25-event-attached.json"
        ))
        .unwrap();
        // The reference capture names the field `janusSdp`.
        let sdp = fixture["janusSdp"]["sdp"]
            .as_str()
            .expect("offer in the fixture");
        let answer = RtcSetup::answer_offline(sdp).unwrap();
        assert!(answer.contains("a=recvonly"), "{answer}");
        // No transport-cc: see `receive_extensions`.
        assert!(
            sdp.contains("transport-wide-cc"),
            "the fixture offers transport-cc"
        );
        assert!(!answer.contains("transport-wide-cc"), "{answer}");
        for bad in [
            "",
            "v=0",
            "garbage\r\n\r\n",
            &sdp.replace(
                "m=video",
                "m=video 9 UDP/TLS/RTP/SAVPF 99999999999999999999",
            ),
            &sdp.replace("a=fingerprint", "a=fingerprintx"),
            &sdp[..sdp.len() / 2],
        ] {
            assert!(RtcSetup::answer_offline(bad).is_err(), "{bad:?}");
        }
    }

    /// A candidate as Janus trickles it is taken; broken ones are refused with a reason.
    #[test]
    fn candidates_real_and_hostile() {
        let mut session = RtcSetup::offline();
        for good in [
            "candidate:4230638615 1 udp 2122260223 192.168.44.231 57211 typ host generation 0 ufrag sanz network-id 1 network-cost 50",
            "candidate:1 1 udp 2015363327 10.201.0.1 40000 typ host",
            "candidate:2 1 udp 1677729535 203.0.113.7 51000 typ srflx raddr 10.0.0.1 rport 51000",
        ] {
            assert_eq!(session.add_remote_candidate(good), Ok(()), "{good}");
        }
        for bad in [
            "",
            "candidate:",
            "candidate:1 1 udp 99999999999999999999 10.0.0.1 1 typ host",
            "candidate:1 1 udp 1 10.0.0.1 70000 typ host",
            "candidate:1 1 udp 1 not-an-ip 1 typ host",
            "candidate:1 1 udp 1 10.0.0.1 1 typ",
        ] {
            assert!(session.add_remote_candidate(bad).is_err(), "{bad:?}");
        }
    }

    /// With `[network] candidate_networks`, Janus's candidates elsewhere are not taken, in
    /// its SDP or trickled (before: every address Janus named was tried).
    #[test]
    fn candidates_outside_the_allowed_networks_are_refused() {
        let nets: Vec<ipnet::IpNet> = vec!["10.201.0.0/24".parse().unwrap()];
        let inside = "candidate:1 1 udp 2015363327 10.201.0.1 40000 typ host";
        let outside = "candidate:2 1 udp 2015363327 192.0.2.66 22 typ host";
        assert!(allowed_candidate(inside, &nets).is_ok());
        let e = allowed_candidate(outside, &nets).unwrap_err();
        assert!(e.to_string().contains("candidate_networks"), "{e}");
        assert!(allowed_candidate(outside, &[]).is_ok(), "no list: any");
        let sdp = format!("v=0\r\na={inside}\r\na={outside}\r\na=end-of-candidates\r\n");
        let kept = filter_sdp_candidates(&sdp, &nets);
        assert!(
            kept.contains("10.201.0.1") && !kept.contains("192.0.2.66"),
            "{kept}"
        );
        assert!(kept.ends_with("a=end-of-candidates\r\n"), "{kept}");
        assert_eq!(filter_sdp_candidates(&sdp, &[]), sdp);
    }
}
