//! A str0m session over UDP sockets it owns: the only place the sans-IO loop (`poll_output` /
//! `handle_input`) runs. The feed subscriber receives with it (Janus offers, we answer); the
//! publisher ([`crate::publish`]) sends with it (we offer send-only media, Janus answers).
//!
//! str0m panics on internal invariant violations by design; every call into it is wrapped in
//! `catch_unwind`, and a panic turns into [`RtcEvent::Failed`] so that only this feed ends
//! (its file is still finalized by the caller).
//!
//! Media goes through str0m frame by frame: received frames are depacketized, frames to send
//! are packetized again, never decoded. That keeps one code path for recording, relaying and
//! the synthetic publisher, with str0m's NACK/RTX and sender reports on both sides.

use std::collections::VecDeque;
use std::future::poll_fn;
use std::io;
use std::net::SocketAddr;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::task::Poll;
use std::time::{Duration, Instant};

use str0m::change::{SdpAnswer, SdpOffer, SdpPendingOffer};
use str0m::media::{Direction, KeyframeRequestKind, MediaData, MediaKind, MediaTime, Mid, Pt};
use str0m::net::{Protocol, Receive};
use str0m::rtp::{Extension, ExtensionMap};
use str0m::{Candidate, Event, IceConnectionState, Input, Output, Rtc};
use tokio::io::ReadBuf;
use tokio::net::UdpSocket;

use crate::media::Codec;
use crate::net::{SocketPlan, SocketSpec};

/// What the session reports to the feed.
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
    Failed(String),
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

/// How often str0m reports receive statistics.
const STATS_EVERY: Duration = Duration::from_secs(5);

/// Largest UDP datagram we read.
const RECV_BUF: usize = 2000;

/// Once media flows, a session wakes only on this process-wide tick, reads everything queued
/// on its sockets and lets str0m catch up on its timers. A feed gets about 100 packets/s, and
/// waking for each one (epoll, futex, scheduling) cost more CPU than str0m's own work on it
/// (measured with `scripts/bench.sh`, see the README). All sessions share the tick's phase, so
/// one timer turn serves every feed. 20 ms is far below what NACK, RTCP, the jitter of the
/// network and the recording care about; the socket buffer holds over a second of media.
const TICK: Duration = Duration::from_millis(20);

/// The next tick after `now`, on a grid shared by every session of the process.
fn next_tick(now: Instant) -> Instant {
    static EPOCH: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    let epoch = *EPOCH.get_or_init(Instant::now);
    let tick = TICK.as_nanos();
    let ticks = now.saturating_duration_since(epoch).as_nanos() / tick + 1;
    // In nanoseconds: `TICK * n` takes a u32, which 20 ms ticks outgrow in 2.7 years of uptime.
    epoch + Duration::from_nanos((ticks * tick) as u64)
}

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

/// The str0m instance of a receiving session. str0m's default codecs take Opus, VP8, VP9,
/// AV1, H.265 and H.264 in baseline, constrained baseline and main (packetization modes 0
/// and 1) and high (mode 1 only). str0m matches H.264 only with the same profile and mode
/// (the level may differ), so high in mode 0 and constrained high (`640c..`, what Chromium
/// offers for high) in both modes are added: every H.264 a browser or hardware encoder
/// publishes is answered.
fn receiving_rtc() -> Rtc {
    let mut config = Rtc::builder()
        // Receive statistics (loss, NACKs, PLIs) for the metrics.
        .set_stats_interval(Some(STATS_EVERY))
        .set_extension_map(receive_extensions());
    let codecs = config.codec_config();
    // Payload types str0m's defaults leave free; Janus's offer decides the ones used.
    codecs.add_h264(37.into(), Some(38.into()), false, 0x64_001f);
    codecs.add_h264(39.into(), Some(40.into()), true, 0x64_0c1f);
    codecs.add_h264(41.into(), Some(42.into()), false, 0x64_0c1f);
    config.build(Instant::now())
}

/// One UDP socket and the host candidate address it is advertised as (they differ behind
/// 1:1 NAT, where the socket binds a private address and Janus is told the public one).
struct Path {
    socket: UdpSocket,
    advertised: SocketAddr,
}

/// How a session reads its sockets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Wakes for each datagram (set-up, and every sending session).
    Immediate,
    /// Wakes on the shared [`TICK`] only, and reads everything queued then
    /// ([`RtcSession::batch_reads`]).
    Batched,
    /// str0m panicked or the peer closed: nothing may be called on `rtc` any more.
    Dead,
}

/// A str0m `Rtc` driven over its own UDP sockets. str0m's one rule holds everywhere: after
/// every input (a datagram, a timeout) its output is drained until it names its next
/// timeout, and the events found on the way are queued for [`RtcSession::next_event`].
pub struct RtcSession {
    rtc: Rtc,
    paths: Vec<Path>,
    buf: Vec<u8>,
    /// When str0m next wants `Input::Timeout`.
    deadline: Instant,
    mode: Mode,
    /// Events str0m gave while its output was drained, oldest first, for `next_event`.
    events: VecDeque<RtcEvent>,
    /// Our offer, until Janus answers it (sending side).
    pending: Option<SdpPendingOffer>,
    /// The negotiated payload type per sending mid, looked up once.
    send_pts: Vec<(Mid, Pt)>,
}

/// The text a panic was raised with, if it had one.
pub(crate) fn panic_message(p: Box<dyn std::any::Any + Send>) -> String {
    p.downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| p.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".into())
}

impl RtcSession {
    /// A receiving session: binds one UDP socket per (bind, advertise) pair of `plan` and
    /// registers each as a host candidate.
    pub async fn bind(plan: &SocketPlan) -> io::Result<RtcSession> {
        Self::bind_rtc(receiving_rtc(), plan).await
    }

    /// A sending session that offers exactly `codecs` (so Janus cannot pick one we do not
    /// have frames for).
    pub async fn bind_sender(plan: &SocketPlan, codecs: &[Codec]) -> io::Result<RtcSession> {
        let rtc = Rtc::builder()
            .clear_codecs()
            .enable_opus(codecs.contains(&Codec::Opus), false)
            .enable_vp8(codecs.contains(&Codec::Vp8))
            .enable_vp9(codecs.contains(&Codec::Vp9))
            .enable_av1(codecs.contains(&Codec::Av1))
            .enable_h264(codecs.contains(&Codec::H264))
            .enable_h265(codecs.contains(&Codec::H265))
            .build(Instant::now());
        Self::bind_rtc(rtc, plan).await
    }

    async fn bind_rtc(mut rtc: Rtc, plan: &SocketPlan) -> io::Result<RtcSession> {
        if plan.is_empty() {
            return Err(io::Error::other(
                "no address to offer Janus: set [network] advertise (no non-loopback interface found)",
            ));
        }
        let mut paths = Vec::with_capacity(plan.len());
        for &SocketSpec { bind, advertise } in plan.iter() {
            let socket = UdpSocket::bind(bind)
                .await
                .map_err(|e| io::Error::new(e.kind(), format!("binding UDP {bind}: {e}")))?;
            let port = socket.local_addr()?.port();
            let advertised = SocketAddr::new(advertise.ip(), port);
            let candidate = Candidate::host(advertised, "udp")
                .map_err(|e| io::Error::other(format!("candidate {advertised}: {e}")))?;
            rtc.add_local_candidate(candidate);
            paths.push(Path { socket, advertised });
        }
        Ok(RtcSession {
            rtc,
            paths,
            buf: vec![0; RECV_BUF],
            deadline: Instant::now(),
            mode: Mode::Immediate,
            events: VecDeque::new(),
            pending: None,
            send_pts: Vec::new(),
        })
    }

    /// Runs `f` on the `Rtc`, turning a str0m panic into an error and marking the session dead.
    fn guarded<T>(&mut self, f: impl FnOnce(&mut Rtc) -> T) -> Result<T, String> {
        if self.mode == Mode::Dead {
            return Err("session already failed".into());
        }
        match catch_unwind(AssertUnwindSafe(|| f(&mut self.rtc))) {
            Ok(v) => Ok(v),
            Err(p) => {
                self.mode = Mode::Dead;
                Err(format!("str0m panicked: {}", panic_message(p)))
            }
        }
    }

    /// Accepts Janus's SDP offer; returns our SDP answer.
    pub fn accept_offer(&mut self, sdp: &str) -> Result<String, String> {
        // Parsing is guarded too: the SDP comes from the network.
        let answer = self.guarded(|rtc| {
            let offer =
                SdpOffer::from_sdp_string(sdp).map_err(|e| format!("bad SDP offer: {e}"))?;
            rtc.sdp_api()
                .accept_offer(offer)
                .map(|a| a.to_sdp_string())
                .map_err(|e| format!("cannot accept the SDP offer: {e}"))
        })??;
        Ok(answer)
    }

    /// The SDP path of [`RtcSession::accept_offer`] on a session without sockets: what the
    /// fuzz target drives with hostile offers. Never panics; an error says why.
    pub fn answer_offline(sdp: &str) -> Result<String, String> {
        Self::offline().accept_offer(sdp)
    }

    /// A receiving session without sockets, for the fuzz targets: everything but IO.
    pub fn offline() -> RtcSession {
        RtcSession {
            rtc: receiving_rtc(),
            paths: Vec::new(),
            buf: Vec::new(),
            deadline: Instant::now(),
            mode: Mode::Immediate,
            events: VecDeque::new(),
            pending: None,
            send_pts: Vec::new(),
        }
    }

    /// Our SDP offer to send one send-only media per entry of `kinds`; returns the offer and
    /// the mid of each media, in order.
    pub fn offer_to_send(&mut self, kinds: &[MediaKind]) -> Result<(String, Vec<Mid>), String> {
        let (offer, pending, mids) = self.guarded(|rtc| {
            let mut api = rtc.sdp_api();
            let stream = "janus-recorder".to_owned();
            let mids: Vec<Mid> = kinds
                .iter()
                .map(|&k| api.add_media(k, Direction::SendOnly, Some(stream.clone()), None, None))
                .collect();
            api.apply()
                .map(|(offer, pending)| (offer, pending, mids))
                .ok_or("nothing to offer")
        })??;
        self.pending = Some(pending);
        Ok((offer.to_sdp_string(), mids))
    }

    /// Accepts Janus's SDP answer to [`RtcSession::offer_to_send`].
    pub fn accept_answer(&mut self, sdp: &str) -> Result<(), String> {
        let pending = self
            .pending
            .take()
            .ok_or("no offer is waiting for an answer")?;
        self.guarded(|rtc| {
            let answer =
                SdpAnswer::from_sdp_string(sdp).map_err(|e| format!("bad SDP answer: {e}"))?;
            rtc.sdp_api()
                .accept_answer(pending, answer)
                .map_err(|e| format!("cannot accept the SDP answer: {e}"))
        })?
    }

    /// Sends one frame on `mid` in str0m's format (an Opus packet, a VP8/VP9 frame, H.264/H.265
    /// in Annex B, AV1 OBUs with sizes); str0m packetizes it.
    /// `rtp_time` is in the codec's clock (48 kHz audio, 90 kHz video) and must not go back.
    pub fn send(
        &mut self,
        mid: Mid,
        codec: Codec,
        wallclock: Instant,
        rtp_time: MediaTime,
        data: &[u8],
    ) -> Result<(), String> {
        let cached = self
            .send_pts
            .iter()
            .find(|(m, _)| *m == mid)
            .map(|&(_, pt)| pt);
        let wanted = codec.to_str0m();
        let pt = self.guarded(|rtc| {
            let writer = rtc
                .writer(mid)
                .ok_or_else(|| format!("no media {mid} to send on"))?;
            let pt = match cached {
                Some(pt) => pt,
                None => writer
                    .payload_params()
                    .find(|p| p.spec().codec == wanted)
                    .map(|p| p.pt())
                    .ok_or_else(|| format!("{codec} was not negotiated on {mid}"))?,
            };
            writer
                .write(pt, wallclock, rtp_time, data)
                .map(|()| pt)
                .map_err(|e| format!("str0m: {e}"))
        })??;
        if cached.is_none() {
            self.send_pts.push((mid, pt));
        }
        Ok(())
    }

    /// Our host candidates as SDP `candidate:` strings, for `trickle`.
    pub fn local_candidates(&self) -> Vec<String> {
        self.paths
            .iter()
            .filter_map(|p| Candidate::host(p.advertised, "udp").ok())
            .map(|c| c.to_sdp_string().trim_start_matches("a=").to_owned())
            .collect()
    }

    /// Adds a candidate Janus trickled (an SDP `candidate:` string). Parsing is guarded too:
    /// the string comes from the network.
    pub fn add_remote_candidate(&mut self, sdp: &str) -> Result<(), String> {
        self.guarded(|rtc| {
            let c = Candidate::from_sdp_string(sdp)
                .map_err(|e| format!("bad candidate {sdp:?}: {e}"))?;
            rtc.add_remote_candidate(c);
            Ok(())
        })?
    }

    /// Asks the sender of `mid` for a keyframe with a PLI. False when not possible (yet).
    pub fn request_keyframe(&mut self, mid: Mid) -> bool {
        self.guarded(|rtc| {
            let Some(mut w) = rtc.writer(mid) else {
                return false;
            };
            if !w.is_request_keyframe_possible(KeyframeRequestKind::Pli) {
                return false;
            }
            w.request_keyframe(None, KeyframeRequestKind::Pli).is_ok()
        })
        .unwrap_or(false)
    }

    /// From now on, wake only on the shared [`TICK`] and read everything queued then. For a
    /// session receiving media once it flows steadily; not before (the ICE and DTLS round
    /// trips and the first keyframe would each wait for a tick), and not for a sending
    /// session (it receives only RTCP). Calling it again changes nothing.
    pub fn batch_reads(&mut self) {
        if self.mode == Mode::Immediate {
            self.mode = Mode::Batched;
        }
    }

    /// What was already received but not yet handed out: the queued events and every datagram
    /// waiting on the sockets, without waiting for more. For a feed that is ending, so the
    /// frames that arrived before the end still reach its file.
    pub fn take_received(&mut self) -> Vec<RtcEvent> {
        if self.mode != Mode::Dead {
            let now = Instant::now();
            while let Some((i, len, source)) = try_recv_any(&self.paths, &mut self.buf) {
                if self.receive(now, i, len, source).is_err() {
                    break;
                }
            }
        }
        self.events.drain(..).collect()
    }

    /// Ends the session politely (RTCP BYE / DTLS close_notify are flushed best effort).
    pub fn close(&mut self) {
        if self.mode == Mode::Dead {
            return;
        }
        let _ = self.guarded(|rtc| rtc.disconnect());
        let _ = self.drain_outputs();
        self.mode = Mode::Dead;
    }

    /// Drives the session until something happens the feed must know about. Cancel-safe:
    /// a datagram is only taken off a socket in the same poll that hands it to str0m, and
    /// the events of that input are queued before the next await.
    pub async fn next_event(&mut self) -> RtcEvent {
        loop {
            if let Some(ev) = self.events.pop_front() {
                return ev;
            }
            if self.mode == Mode::Dead {
                return RtcEvent::Failed("session closed".into());
            }
            if let Err(e) = self.drain_outputs() {
                return self.fail(e);
            }
            if !self.events.is_empty() {
                continue;
            }
            if self.mode == Mode::Batched {
                tokio::time::sleep_until(next_tick(Instant::now()).into()).await;
                if let Err(e) = self.on_tick(Instant::now()) {
                    return self.fail(e);
                }
                continue;
            }
            let received = tokio::select! {
                r = recv_any(&self.paths, &mut self.buf) => Some(r),
                _ = tokio::time::sleep_until(self.deadline.into()) => None,
            };
            let now = Instant::now();
            let result = match received {
                Some(Ok((i, len, source))) => {
                    // Take everything else already queued too, each drained after: one
                    // wake-up for many packets.
                    let mut r = self.receive(now, i, len, source);
                    while r.is_ok() {
                        match try_recv_any(&self.paths, &mut self.buf) {
                            Some((i, len, source)) => r = self.receive(now, i, len, source),
                            None => break,
                        }
                    }
                    r
                }
                Some(Err(e)) => {
                    tracing::debug!(error = %e, "UDP receive error");
                    Ok(())
                }
                None => self.timeout(now),
            };
            if let Err(e) = result {
                return self.fail(e);
            }
        }
    }

    /// The session is over: nothing is called on str0m again.
    fn fail(&mut self, e: String) -> RtcEvent {
        self.mode = Mode::Dead;
        RtcEvent::Failed(e)
    }

    /// One tick of the steady state: every queued datagram, then str0m's due timers.
    fn on_tick(&mut self, now: Instant) -> Result<(), String> {
        while let Some((i, len, source)) = try_recv_any(&self.paths, &mut self.buf) {
            self.receive(now, i, len, source)?;
        }
        if now >= self.deadline {
            self.timeout(now)?;
        }
        Ok(())
    }

    /// Lets str0m run its timers, then drains its output.
    fn timeout(&mut self, now: Instant) -> Result<(), String> {
        self.guarded(|rtc| rtc.handle_input(Input::Timeout(now)))?
            .map_err(|e| format!("str0m: {e}"))?;
        self.drain_outputs()
    }

    fn receive(
        &mut self,
        now: Instant,
        i: usize,
        len: usize,
        source: SocketAddr,
    ) -> Result<(), String> {
        let destination = self.paths[i].advertised;
        let Ok(input) = Receive::new(Protocol::Udp, source, destination, &self.buf[..len]) else {
            return Ok(()); // not STUN/DTLS/RTP: ignore stray datagrams
        };
        // No `rtc.accepts()` filter: these sockets belong to this session alone, and
        // `accepts()` refuses Janus's first DTLS ClientHello when it arrives before our ICE
        // agent has a viable pair, which costs a full 1 s DTLS retransmit.
        let input = Input::Receive(now, input);
        // Not `guarded`: the input borrows the receive buffer beside the `Rtc`.
        let rtc = &mut self.rtc;
        match catch_unwind(AssertUnwindSafe(|| rtc.handle_input(input))) {
            Ok(Ok(())) => {}
            // A bad packet (e.g. failed SRTP auth) is not the end of the session.
            Ok(Err(e)) => tracing::debug!(error = %e, "str0m rejected a datagram"),
            Err(p) => {
                self.mode = Mode::Dead;
                return Err(format!("str0m panicked: {}", panic_message(p)));
            }
        }
        self.drain_outputs()
    }

    /// Sends what str0m wants sent and queues its events, until it names its next timeout
    /// (recorded as the deadline).
    fn drain_outputs(&mut self) -> Result<(), String> {
        loop {
            let out = self
                .guarded(|rtc| rtc.poll_output())?
                .map_err(|e| format!("str0m: {e}"))?;
            match out {
                Output::Timeout(t) => {
                    // str0m says "far future" when idle; wake at least every second anyway.
                    self.deadline = t.min(Instant::now() + Duration::from_secs(1));
                    return Ok(());
                }
                Output::Transmit(t) => {
                    let path = self
                        .paths
                        .iter()
                        .find(|p| p.advertised == t.source)
                        .or(self.paths.first());
                    if let Some(p) = path {
                        // UDP: a full socket buffer drops the datagram, as the network would.
                        if let Err(e) = p.socket.try_send_to(&t.contents, t.destination) {
                            tracing::debug!(error = %e, len = t.contents.len(), "UDP send failed");
                        }
                    }
                }
                Output::Event(ev) => {
                    let ev = match ev {
                        Event::Connected => RtcEvent::Connected,
                        Event::MediaAdded(m) => RtcEvent::MediaAdded {
                            mid: m.mid,
                            kind: m.kind,
                        },
                        Event::MediaData(d) => RtcEvent::Frame(Box::new(d)),
                        Event::KeyframeRequest(r) => RtcEvent::KeyframeRequest { mid: r.mid },
                        Event::IceConnectionStateChange(IceConnectionState::Disconnected) => {
                            RtcEvent::Disconnected
                        }
                        Event::MediaIngressStats(s) => RtcEvent::Stats(ReceiveStats {
                            mid: Some(s.mid),
                            packets: s.packets,
                            nacks: s.nacks,
                            loss: s.loss.unwrap_or(0.0),
                        }),
                        Event::Closed => {
                            self.mode = Mode::Dead;
                            self.events.push_back(RtcEvent::Failed(
                                "peer closed the DTLS connection".into(),
                            ));
                            return Ok(());
                        }
                        other => {
                            tracing::trace!(event = ?other, "str0m event");
                            continue;
                        }
                    };
                    self.events.push_back(ev);
                }
            }
        }
    }
}

/// Waits for a datagram on any of the sockets: (socket index, length, source).
async fn recv_any(paths: &[Path], buf: &mut [u8]) -> io::Result<(usize, usize, SocketAddr)> {
    poll_fn(|cx| {
        for (i, p) in paths.iter().enumerate() {
            let mut rb = ReadBuf::new(buf);
            if let Poll::Ready(r) = p.socket.poll_recv_from(cx, &mut rb) {
                return Poll::Ready(r.map(|src| (i, rb.filled().len(), src)));
            }
        }
        Poll::Pending
    })
    .await
}

/// Takes one queued datagram from any socket without waiting.
fn try_recv_any(paths: &[Path], buf: &mut [u8]) -> Option<(usize, usize, SocketAddr)> {
    paths
        .iter()
        .enumerate()
        .find_map(|(i, p)| p.socket.try_recv_from(buf).ok().map(|(n, src)| (i, n, src)))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Ticks are on one grid, always ahead of `now`.
    #[test]
    fn next_tick_is_on_the_grid_and_ahead() {
        let a = next_tick(Instant::now());
        for later in [
            Duration::ZERO,
            Duration::from_millis(7),
            Duration::from_secs(86_400 * 1000),
        ] {
            let now = a + later;
            let t = next_tick(now);
            assert!(t > now && t - now <= TICK, "{later:?}");
            assert_eq!((t - a).as_nanos() % TICK.as_nanos(), 0, "{later:?}");
        }
    }

    /// Every video codec Janus forwards is accepted in the form it offers it: H.264 in each
    /// profile (baseline, constrained baseline, main, high) and packetization mode, H.265, AV1.
    #[test]
    fn every_codec_and_h264_profile_janus_offers_is_answered() {
        let fixture: serde_json::Value = serde_json::from_str(include_str!(
            "../tests/fixtures/janus/25-event-attached.json"
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
            let answer =
                RtcSession::answer_offline(&offer).unwrap_or_else(|e| panic!("{name}: {e}"));
            let video = &answer[answer.find("m=video").expect("video m-line")..];
            assert!(
                !video.starts_with("m=video 0 "),
                "{name} refused:\n{answer}"
            );
            assert!(video.contains(rtpmap), "{name}:\n{answer}");
        }
    }

    /// Janus's real subscriber offer (from the reference flow) is answered; hostile ones are
    /// refused with a reason, never a panic.
    #[test]
    fn offers_real_and_hostile() {
        let fixture: serde_json::Value = serde_json::from_str(include_str!(
            "../tests/fixtures/janus/25-event-attached.json"
        ))
        .unwrap();
        // The reference capture names the field `janusSdp`.
        let sdp = fixture["janusSdp"]["sdp"]
            .as_str()
            .expect("offer in the fixture");
        let answer = RtcSession::answer_offline(sdp).unwrap();
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
            assert!(RtcSession::answer_offline(bad).is_err(), "{bad:?}");
        }
    }

    /// A candidate as Janus trickles it is taken; broken ones are refused with a reason.
    #[test]
    fn candidates_real_and_hostile() {
        let mut session = RtcSession::offline();
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
}
