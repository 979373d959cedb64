//! The feed's decisions, without IO, in the manner of str0m: inputs go in
//! ([`FeedMachine::handle`]: the media session's events, Janus's messages, ticks, the relay's
//! wishes), actions come out ([`FeedMachine::poll`]: keyframe requests, frames to write on the
//! room clock, frames to relay, the end). The feed task ([`super`]) does the IO: it owns the
//! str0m session handle, the Janus handle, the relay and the files.
//!
//! What is decided here: which frames are recorded (the track's codec, the keyframe gate),
//! when each track's clock is known and where its frames land on the room clock
//! ([`super::clock`]), how often the publisher is asked for a keyframe, and when the feed
//! ends on its own (Janus hung up, ICE stayed down).

use std::collections::VecDeque;

// Looked up for every frame: foldhash, as in the media loop (SipHash showed in the profile).
use foldhash::{HashMap, HashMapExt};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use str0m::media::{MediaData, MediaTime, Mid};

use super::EndReason;
use super::clock::{self, FrameTiming, SenderReport, TrackClock};
use super::gate::{KeyframeGate, RequestPacer};
use crate::janus::messages::{Incoming, VideoRoomEvent};
use crate::media::{Codec, MediaKind};
use crate::metrics::FrameDrop;
use crate::rtc::{ReceiveStats, RtcEvent};

/// How often to ask for a keyframe while the recording waits for one.
pub const KEYFRAME_RETRY: Duration = Duration::from_millis(500);
/// The least time between keyframe requests passed on for the relay's target.
pub const RELAYED_KEYFRAME_GAP: Duration = Duration::from_millis(250);
/// How long ICE may stay disconnected before the feed gives up.
pub const ICE_GRACE: Duration = Duration::from_secs(10);

/// The time of an input: the monotonic clock, and the wall clock for the room clock.
#[derive(Debug, Clone, Copy)]
pub struct Now {
    pub instant: Instant,
    pub unix_nanos: i128,
}

impl Now {
    /// Both clocks, now.
    pub fn read() -> Now {
        Now {
            instant: Instant::now(),
            unix_nanos: clock::unix_nanos(SystemTime::now()),
        }
    }
}

/// What happens to the feed.
#[derive(Debug)]
pub enum Input {
    Rtc(RtcEvent),
    Janus(Incoming),
    /// A keyframe is wanted: by the relay's target (or the relay just went live), or by the
    /// file after video was dropped for a slow disk.
    KeyframeWanted,
    /// The feed task's periodic tick.
    Tick,
    /// The feed is ending: every clock is decided and every held frame written.
    Ending,
}

/// What the feed task must do.
#[derive(Debug)]
pub enum Action {
    /// Ask the publisher for a keyframe on `mid` (PLI).
    RequestKeyframe(Mid),
    /// The session may hand frames over in batches from now on: small ones while the
    /// recording waits for its first keyframe (`settled` false), the feed's usual ones after.
    BatchReads { settled: bool },
    /// A candidate Janus trickled.
    AddCandidate(String),
    /// A frame to write, at `at` on the room clock (ns since the epoch). Writes come in
    /// time order; the first one is the recording's earliest frame.
    Write { at: i128, frame: Box<MediaData> },
    /// A frame to relay (before the recording's gate: the relay has its own).
    Relay(RelayFrame),
    /// Receive statistics to add to the metrics: packets lost, NACKs sent.
    Stats { lost: u64, nacks: u64 },
    /// The feed is over.
    End(EndReason),
}

/// A frame for the relay: what it needs to send it on, sharing the data.
#[derive(Debug, Clone)]
pub struct RelayFrame {
    pub kind: MediaKind,
    pub network_time: Instant,
    pub time: MediaTime,
    pub contiguous: bool,
    pub keyframe: bool,
    pub data: Arc<[u8]>,
}

/// One recorded track.
#[derive(Debug)]
struct Track {
    codec: Codec,
    clock: TrackClock,
    /// Frames waiting for the clock's source to be decided.
    held: VecDeque<(Box<MediaData>, FrameTiming)>,
    /// Frames whose codec did not match, reported once.
    warned_codec: bool,
}

/// How the session hands frames over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Batching {
    /// One by one (not connected yet).
    No,
    /// In small batches, until the recording has its first keyframe.
    Small,
    /// In the feed's usual batches.
    Settled,
}

/// The feed's state.
pub struct FeedMachine {
    /// Write frames (false: relay only).
    record: bool,
    relay: bool,
    tracks: HashMap<Mid, Track>,
    /// The recorded video track's mid, once str0m announced it.
    video_mid: Option<Mid>,
    gate: KeyframeGate,
    /// The gate has let video through once: frames it holds back from then on follow a
    /// break (for the metrics).
    video_admitted: bool,
    pacer: RequestPacer,
    disconnected_since: Option<Instant>,
    /// The last receive statistics per media, to turn str0m's totals into increments.
    stats: HashMap<Option<Mid>, ReceiveStats>,
    /// Our wall clock for arrival times, read once.
    wall: Now,
    /// Frames placed on the room clock while the file waits to open (another track's source
    /// is not decided yet).
    placed: Vec<(i128, Box<MediaData>)>,
    /// The frames one `release` hands out, kept to reuse its allocation (one per frame before).
    ready: Vec<(i128, Box<MediaData>)>,
    /// The first frame has been written: the recording is open.
    started: bool,
    batching: Batching,
    ended: bool,
    out: VecDeque<Action>,
}

impl FeedMachine {
    /// A feed recording (if `record`) and relaying (if `relay`) the tracks of `codecs` by mid.
    pub fn new(
        codecs: impl IntoIterator<Item = (Mid, Codec)>,
        record: bool,
        relay: bool,
        now: Now,
    ) -> FeedMachine {
        FeedMachine {
            record,
            relay,
            tracks: codecs
                .into_iter()
                .map(|(mid, codec)| {
                    let track = Track {
                        codec,
                        clock: TrackClock::default(),
                        held: VecDeque::new(),
                        warned_codec: false,
                    };
                    (mid, track)
                })
                .collect(),
            video_mid: None,
            // A feed that is only relayed has no file to wait for a keyframe for.
            gate: KeyframeGate::new(record),
            video_admitted: false,
            pacer: RequestPacer::default(),
            disconnected_since: None,
            stats: HashMap::new(),
            wall: now,
            placed: Vec::new(),
            ready: Vec::new(),
            started: false,
            batching: Batching::No,
            ended: false,
            out: VecDeque::new(),
        }
    }

    /// Its tracks get no sender reports (RTP forwarders): their frames go on the room clock
    /// by arrival from the first one.
    pub fn without_sender_reports(mut self) -> FeedMachine {
        for t in self.tracks.values_mut() {
            t.clock = TrackClock::without_sender_reports();
        }
        self
    }

    /// The next action, oldest first.
    pub fn poll(&mut self) -> Option<Action> {
        self.out.pop_front()
    }

    /// The codec of the track of `kind`, if recorded.
    pub fn codec_of(&self, kind: MediaKind) -> Option<Codec> {
        self.tracks
            .values()
            .map(|t| t.codec)
            .find(|c| c.kind() == kind)
    }

    /// The codec of the track of `mid`.
    pub fn codec_at(&self, mid: Mid) -> Option<Codec> {
        self.tracks.get(&mid).map(|t| t.codec)
    }

    /// The clock source of the track of `kind`, once decided.
    pub fn clock_of(&self, kind: MediaKind) -> Option<String> {
        self.tracks
            .values()
            .find(|t| t.codec.kind() == kind)
            .and_then(|t| t.clock.source())
            .map(|s| s.to_string())
    }

    /// Whether the feed records video (str0m announced the track).
    pub fn has_video(&self) -> bool {
        self.video_mid.is_some()
    }

    /// Takes one input; its actions are queued for [`FeedMachine::poll`]. Inputs after the
    /// end are still taken: frames received before the end belong to the recording.
    pub fn handle(&mut self, input: Input, now: Now) {
        match input {
            Input::Rtc(ev) => self.on_rtc(ev, now),
            Input::Janus(msg) => self.on_janus(msg),
            Input::KeyframeWanted => self.request_keyframe(now.instant, RELAYED_KEYFRAME_GAP),
            Input::Tick => self.on_tick(now),
            Input::Ending => {
                if self.record {
                    self.release(now, true);
                }
            }
        }
    }

    fn end(&mut self, reason: EndReason) {
        if !self.ended {
            self.ended = true;
            self.out.push_back(Action::End(reason));
        }
    }

    /// Asks for a keyframe unless one was asked for less than `gap` ago.
    fn request_keyframe(&mut self, now: Instant, gap: Duration) {
        if let Some(mid) = self.video_mid
            && self.pacer.try_request(now, gap)
        {
            self.out.push_back(Action::RequestKeyframe(mid));
        }
    }

    /// While the recording waits for a keyframe, asks again every [`KEYFRAME_RETRY`].
    fn keep_asking(&mut self, now: Instant) {
        if self.gate.is_waiting() {
            self.request_keyframe(now, KEYFRAME_RETRY);
        }
    }

    fn on_rtc(&mut self, ev: RtcEvent, now: Now) {
        match ev {
            RtcEvent::Connected => {
                tracing::info!("media connected");
                self.disconnected_since = None;
                if self.batching == Batching::No {
                    // Frames in batches from now on: ICE, DTLS and our keyframe requests run
                    // in the media loop and never wait for a batch; the first keyframe waits
                    // for a small one. Frame by frame, the wake-ups of hundreds of feeds
                    // setting up at once overloaded the loop (its socket overflowed at 200).
                    self.batching = Batching::Small;
                    self.out.push_back(Action::BatchReads { settled: false });
                }
            }
            RtcEvent::MediaAdded { mid, kind } => {
                if kind == str0m::media::MediaKind::Video
                    && self
                        .tracks
                        .get(&mid)
                        .is_some_and(|t| t.codec.kind() == MediaKind::Video)
                {
                    self.video_mid = Some(mid);
                    self.keep_asking(now.instant);
                }
            }
            RtcEvent::Frame(d) => self.on_frame(d, now),
            RtcEvent::Stats(s) => {
                let before = self.stats.insert(s.mid, s).unwrap_or_default();
                let packets = s.packets.saturating_sub(before.packets);
                self.out.push_back(Action::Stats {
                    lost: (f64::from(s.loss) * packets as f64).round() as u64,
                    nacks: s.nacks.saturating_sub(before.nacks),
                });
            }
            RtcEvent::KeyframeRequest { .. } => {} // we only receive here
            RtcEvent::Disconnected => {
                tracing::warn!("ICE disconnected");
                self.disconnected_since.get_or_insert(now.instant);
            }
            RtcEvent::Failed(e) => {
                tracing::error!(error = %e, "media session failed");
                self.end(EndReason::Failed(super::Failure::Session(e)));
            }
        }
    }

    fn on_frame(&mut self, d: Box<MediaData>, now: Now) {
        self.disconnected_since = None;
        let Some(track) = self.tracks.get_mut(&d.mid) else {
            return;
        };
        let codec = Codec::from_str0m(d.params.spec().codec);
        if codec != Some(track.codec) {
            if !track.warned_codec {
                track.warned_codec = true;
                tracing::warn!(expected = %track.codec, got = ?d.params.spec().codec, "dropping frames of an unexpected codec");
            }
            crate::metrics::frames_dropped(FrameDrop::Codec, 1);
            return;
        }
        let kind = track.codec.kind();
        if self.relay {
            self.out.push_back(Action::Relay(RelayFrame {
                kind,
                network_time: d.network_time,
                time: d.time,
                contiguous: d.contiguous,
                keyframe: d.is_keyframe(),
                data: d.data.clone(),
            }));
        }
        if !self.record {
            return;
        }
        if kind == MediaKind::Video {
            let was_waiting = self.gate.is_waiting();
            if !self.gate.admit(d.contiguous, d.is_keyframe()) {
                if !was_waiting {
                    tracing::debug!("break in the video stream; waiting for a keyframe");
                    self.pacer.reset();
                }
                let why = if self.video_admitted {
                    FrameDrop::StreamBreak
                } else {
                    FrameDrop::BeforeKeyframe
                };
                crate::metrics::frames_dropped(why, 1);
                self.keep_asking(d.network_time);
                return;
            }
            self.video_admitted = true;
            if was_waiting {
                tracing::debug!("keyframe received");
            }
        }
        // The first frame the recording takes (a keyframe, or any frame without video).
        if self.batching == Batching::Small && (kind == MediaKind::Video || !self.has_video()) {
            self.batching = Batching::Settled;
            self.out.push_back(Action::BatchReads { settled: true });
        }
        let track = self.tracks.get_mut(&d.mid).expect("looked up above");
        let timing = timing(&self.wall, &d, track.codec);
        track.clock.observe(&timing);
        track.held.push_back((d, timing));
        self.release(now, false);
    }

    /// Hands out the frames whose time is known. A track's frames wait until its clock
    /// source is decided (see [`clock`]); the recording starts once every track that has
    /// frames is decided, its zero the earliest of their frames, so the start is on the best
    /// clock too. `force` decides every clock (the feed is ending).
    fn release(&mut self, now: Now, force: bool) {
        let mut undecided = false;
        let mut ready = std::mem::take(&mut self.ready);
        for track in self.tracks.values_mut() {
            if track.held.is_empty() {
                continue;
            }
            let was = track.clock.source();
            let Some(source) = track.clock.decide(now.unix_nanos, force) else {
                undecided = true;
                continue;
            };
            if was.is_none() {
                tracing::info!(kind = %track.codec.kind(), clock = %source, "track clock decided");
            }
            while let Some((d, timing)) = track.held.pop_front() {
                ready.push((track.clock.place(&timing), d));
            }
        }
        if !self.started && undecided {
            // Not yet: keep them placed (a decided track's frames stay placed).
            self.placed.append(&mut ready);
        } else if !ready.is_empty() {
            self.started = true;
            ready.append(&mut self.placed);
            ready.sort_by_key(|r| r.0);
            self.out.extend(
                ready
                    .drain(..)
                    .map(|(at, frame)| Action::Write { at, frame }),
            );
        }
        self.ready = ready;
    }

    fn on_janus(&mut self, msg: Incoming) {
        match msg {
            Incoming::Trickle {
                candidate: Some(c), ..
            } => self.out.push_back(Action::AddCandidate(c)),
            Incoming::Trickle {
                candidate: None, ..
            } => tracing::debug!("Janus finished trickling"),
            Incoming::HangUp { reason, .. } => {
                tracing::info!(reason = %crate::text::Escaped(&reason), "Janus hung up the subscription");
                self.end(EndReason::HangUp(reason));
            }
            Incoming::Detached { .. } => self.end(EndReason::HangUp("detached".into())),
            Incoming::WebrtcUp { .. } => tracing::info!("webrtcup"),
            Incoming::Media {
                mid,
                kind,
                receiving,
                ..
            } => tracing::info!(?mid, %kind, receiving, "media"),
            Incoming::SlowLink {
                mid,
                media,
                lost,
                uplink,
                ..
            } => tracing::info!(?mid, ?media, lost, uplink, "slow link"),
            Incoming::Event { data, .. } => match VideoRoomEvent::parse(&data) {
                VideoRoomEvent::SlowLink { current_bitrate } => {
                    tracing::info!(?current_bitrate, "slow_link")
                }
                VideoRoomEvent::LayerSwitched {
                    mid,
                    substream,
                    temporal,
                    spatial_layer,
                    temporal_layer,
                } => tracing::info!(
                    ?mid,
                    ?substream,
                    ?temporal,
                    ?spatial_layer,
                    ?temporal_layer,
                    "Janus switched the layer it forwards (the frame size may change)"
                ),
                ev => tracing::info!(event = ?ev, "subscriber event"),
            },
            other => tracing::debug!(?other, "unhandled message for the subscriber"),
        }
    }

    fn on_tick(&mut self, now: Now) {
        self.keep_asking(now.instant);
        // A track that stopped while its frames waited for a sender report.
        if self.record {
            self.release(now, false);
        }
        if self
            .disconnected_since
            .is_some_and(|t| now.instant.saturating_duration_since(t) >= ICE_GRACE)
        {
            tracing::warn!("ICE stayed disconnected for {ICE_GRACE:?}");
            self.end(EndReason::IceFailed);
        }
    }
}

/// What is known of the time of `d`, a frame of a track in `codec`: arrival (`Instant`) onto
/// the wall clock through the pair `wall` read at the start, so arrivals keep the monotonic
/// clock's spacing.
fn timing(wall: &Now, d: &MediaData, codec: Codec) -> FrameTiming {
    let since = |i: Instant| match i.checked_duration_since(wall.instant) {
        Some(d) => d.as_nanos() as i128,
        None => -(wall.instant.saturating_duration_since(i).as_nanos() as i128),
    };
    FrameTiming {
        rtp: d.time.numer(),
        rate: d.time.denom(),
        arrival_nanos: wall.unix_nanos + since(d.network_time),
        sender_report: d.last_sender_info.map(|sr| SenderReport {
            ntp_nanos: clock::unix_nanos(sr.ntp_time),
            rtp: sr.rtp_time.numer() as u32,
        }),
        capture_nanos: d
            .ext_vals
            .abs_capture_time
            .as_ref()
            .map(|c| clock::unix_nanos(c.capture_time)),
        duration_nanos: match codec {
            Codec::Opus => opus::packet::get_nb_samples(&d.data, 48_000)
                .map_or(20_000_000, |n| n as i128 * 1_000_000_000 / 48_000),
            _ => 0,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use str0m::format::{CodecExtra, CodecSpec, FormatParams, PayloadParams, Vp8CodecExtra};
    use str0m::media::Frequency;
    use str0m::rtp::{ExtensionValues, SeqNo};

    const AUDIO: &str = "0";
    const VIDEO: &str = "1";

    /// A machine recording Opus on mid 0 and VP8 on mid 1, started at `t0`, with the video
    /// track announced.
    fn machine(record: bool, relay: bool, t0: Now) -> FeedMachine {
        let mut m = FeedMachine::new(
            [
                (Mid::from(AUDIO), Codec::Opus),
                (Mid::from(VIDEO), Codec::Vp8),
            ],
            record,
            relay,
            t0,
        );
        m.handle(
            Input::Rtc(RtcEvent::MediaAdded {
                mid: Mid::from(VIDEO),
                kind: str0m::media::MediaKind::Video,
            }),
            t0,
        );
        m
    }

    /// `t0` moved on by `ms`, on both clocks.
    fn at(t0: Now, ms: u64) -> Now {
        Now {
            instant: t0.instant + Duration::from_millis(ms),
            unix_nanos: t0.unix_nanos + i128::from(ms) * 1_000_000,
        }
    }

    /// A frame of `mid` sent at `ms` (RTP time) and received at `ms` after `t0`.
    fn frame(mid: &str, t0: Now, ms: u64, keyframe: bool, contiguous: bool) -> Input {
        let video = mid == VIDEO;
        let (codec, rate) = if video {
            (str0m::format::Codec::Vp8, Frequency::NINETY_KHZ)
        } else {
            (str0m::format::Codec::Opus, Frequency::FORTY_EIGHT_KHZ)
        };
        let spec = CodecSpec {
            codec,
            clock_rate: rate,
            channels: None,
            format: FormatParams::default(),
        };
        let codec_extra = if video {
            CodecExtra::Vp8(Vp8CodecExtra {
                discardable: false,
                sync: false,
                layer_index: 0,
                picture_id: None,
                tl0_picture_id: None,
                is_keyframe: keyframe,
            })
        } else {
            CodecExtra::None
        };
        Input::Rtc(RtcEvent::Frame(Box::new(MediaData {
            mid: Mid::from(mid),
            pt: 96.into(),
            rid: None,
            params: PayloadParams::new(96.into(), None, spec),
            time: MediaTime::from_millis(ms).rebase(rate),
            network_time: at(t0, ms).instant,
            seq_range: SeqNo::from(ms)..=SeqNo::from(ms),
            contiguous,
            // One Opus packet of 20 ms (TOC byte: config 1, SILK NB 20 ms, mono, one frame).
            data: Arc::from(&[0x08u8, 0, 0][..]),
            ext_vals: ExtensionValues::default(),
            codec_extra,
            last_sender_info: None,
            audio_start_of_talk_spurt: false,
        })))
    }

    /// Takes every action out, as the feed task does.
    fn actions(m: &mut FeedMachine) -> Vec<Action> {
        std::iter::from_fn(|| m.poll()).collect()
    }

    fn keyframe_requests(a: &[Action]) -> usize {
        a.iter()
            .filter(|a| matches!(a, Action::RequestKeyframe(_)))
            .count()
    }

    /// The (mid, rtp ms) of each frame written, in order.
    fn writes(a: &[Action]) -> Vec<(String, u64, i128)> {
        a.iter()
            .filter_map(|a| match a {
                Action::Write { at, frame } => Some((
                    frame.mid.to_string(),
                    frame.time.rebase(Frequency::MILLIS).numer(),
                    *at,
                )),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn video_waits_for_a_keyframe_asking_for_it_twice_a_second() {
        let t0 = Now::read();
        let mut m = machine(true, false, t0);
        // Asked at once when str0m announced the video.
        assert_eq!(keyframe_requests(&actions(&mut m)), 1);
        m.handle(frame(VIDEO, t0, 100, false, true), at(t0, 100));
        assert_eq!(keyframe_requests(&actions(&mut m)), 0, "paced");
        m.handle(Input::Tick, at(t0, 500));
        assert_eq!(keyframe_requests(&actions(&mut m)), 1);
        m.handle(frame(VIDEO, t0, 600, true, true), at(t0, 600));
        m.handle(frame(VIDEO, t0, 633, false, true), at(t0, 633));
        let a = actions(&mut m);
        // The clock waits for a sender report (3 s); none comes: arrival, at the end.
        assert!(writes(&a).is_empty());
        m.handle(Input::Tick, at(t0, 1000));
        assert_eq!(keyframe_requests(&actions(&mut m)), 0, "no longer waiting");
        m.handle(Input::Ending, at(t0, 1100));
        let w = writes(&actions(&mut m));
        assert_eq!(
            w.iter().map(|w| (w.0.as_str(), w.1)).collect::<Vec<_>>(),
            [(VIDEO, 600), (VIDEO, 633)]
        );
        assert_eq!(w[1].2 - w[0].2, 33_000_000, "RTP spacing kept");
    }

    /// After the session closed, the machine only writes (the feed has no session to ask
    /// for a keyframe, a batch or a candidate then).
    #[test]
    fn ending_asks_nothing_of_the_session() {
        let t0 = Now::read();
        let mut m = machine(true, false, t0);
        actions(&mut m);
        m.handle(Input::Rtc(RtcEvent::Connected), t0);
        m.handle(frame(VIDEO, t0, 0, true, true), t0);
        m.handle(frame(AUDIO, t0, 10, false, true), at(t0, 10));
        // A break: the gate closes and wants a keyframe, which never comes.
        m.handle(frame(VIDEO, t0, 100, false, false), at(t0, 100));
        actions(&mut m);
        m.handle(Input::Ending, at(t0, 2000));
        let a = actions(&mut m);
        assert!(!a.is_empty(), "the frames waiting for a clock are written");
        assert!(
            a.iter()
                .all(|a| matches!(a, Action::Write { .. } | Action::End(_))),
            "{a:?}"
        );
    }

    #[test]
    fn frames_come_in_batches_once_connected() {
        let t0 = Now::read();
        let mut m = machine(true, false, t0);
        actions(&mut m);
        m.handle(Input::Rtc(RtcEvent::Connected), t0);
        m.handle(Input::Rtc(RtcEvent::Connected), t0);
        let batches = |a: Vec<Action>| {
            a.into_iter()
                .filter_map(|a| match a {
                    Action::BatchReads { settled } => Some(settled),
                    _ => None,
                })
                .collect::<Vec<_>>()
        };
        assert_eq!(batches(actions(&mut m)), [false], "small batches, once");
        m.handle(frame(VIDEO, t0, 100, true, true), at(t0, 100));
        m.handle(frame(VIDEO, t0, 133, false, true), at(t0, 133));
        assert_eq!(
            batches(actions(&mut m)),
            [true],
            "the usual ones after a keyframe"
        );
    }

    #[test]
    fn a_break_closes_the_gate_and_asks_at_once() {
        let t0 = Now::read();
        let mut m = machine(true, false, t0);
        m.handle(frame(VIDEO, t0, 0, true, true), t0);
        m.handle(frame(VIDEO, t0, 33, false, true), at(t0, 33));
        actions(&mut m);
        // Lost packets: this frame cannot be decoded, nor the next ones until a keyframe.
        m.handle(frame(VIDEO, t0, 100, false, false), at(t0, 100));
        m.handle(frame(VIDEO, t0, 133, false, true), at(t0, 133));
        let a = actions(&mut m);
        assert_eq!(keyframe_requests(&a), 1, "asked at once, then paced");
        m.handle(frame(VIDEO, t0, 166, true, true), at(t0, 166));
        m.handle(Input::Ending, at(t0, 200));
        let w = writes(&actions(&mut m));
        assert_eq!(
            w.iter().map(|w| w.1).collect::<Vec<_>>(),
            [0, 33, 166],
            "nothing between the break and the keyframe"
        );
    }

    /// Video the gate holds back is counted by why: before the first keyframe, after a break.
    #[test]
    fn video_held_back_is_counted_by_why() {
        let recorder = metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder();
        let handle = recorder.handle();
        metrics::with_local_recorder(&recorder, || {
            let t0 = Now::read();
            let mut m = machine(true, false, t0);
            m.handle(frame(VIDEO, t0, 0, false, true), t0);
            m.handle(frame(VIDEO, t0, 33, true, true), at(t0, 33));
            m.handle(frame(VIDEO, t0, 66, false, true), at(t0, 66));
            m.handle(frame(VIDEO, t0, 133, false, false), at(t0, 133));
            m.handle(frame(VIDEO, t0, 166, false, true), at(t0, 166));
            m.handle(frame(VIDEO, t0, 200, true, true), at(t0, 200));
        });
        let text = handle.render();
        for line in [
            "janus_recorder_frames_dropped_total{reason=\"before-keyframe\"} 1",
            "janus_recorder_frames_dropped_total{reason=\"stream-break\"} 2",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} not in:\n{text}");
        }
    }

    #[test]
    fn tracks_start_together_once_both_clocks_are_decided() {
        let t0 = Now::read();
        let mut m = machine(true, false, t0);
        actions(&mut m);
        // 2.9 s of audio every 20 ms and video every 40 ms (10 ms after the audio).
        for ms in (0..2900).step_by(20) {
            m.handle(frame(AUDIO, t0, ms, false, true), at(t0, ms));
            if ms % 40 == 0 {
                m.handle(frame(VIDEO, t0, ms + 10, ms == 0, true), at(t0, ms + 10));
            }
        }
        // Under 3 s: nothing written, the clocks wait for sender reports.
        assert!(writes(&actions(&mut m)).is_empty());
        m.handle(Input::Tick, at(t0, 3100));
        let w = writes(&actions(&mut m));
        assert_eq!(w.len(), 145 + 73);
        assert!(w.windows(2).all(|p| p[0].2 <= p[1].2), "in time order");
        assert_eq!((w[0].0.as_str(), w[0].1), (AUDIO, 0), "the earliest first");
        // Later frames are written as they come.
        m.handle(frame(AUDIO, t0, 3200, false, true), at(t0, 3200));
        assert_eq!(writes(&actions(&mut m)).len(), 1);
    }

    #[test]
    fn janus_and_ice_end_the_feed_once() {
        let t0 = Now::read();
        let mut m = machine(true, false, t0);
        actions(&mut m);
        m.handle(Input::Rtc(RtcEvent::Disconnected), at(t0, 0));
        m.handle(Input::Tick, at(t0, 9_000));
        // Media again: ICE came back.
        m.handle(frame(AUDIO, t0, 9_100, false, true), at(t0, 9_100));
        m.handle(Input::Tick, at(t0, 12_000));
        assert!(!actions(&mut m).iter().any(|a| matches!(a, Action::End(_))));
        m.handle(Input::Rtc(RtcEvent::Disconnected), at(t0, 12_000));
        m.handle(Input::Tick, at(t0, 22_000));
        let ends: Vec<_> = actions(&mut m)
            .into_iter()
            .filter_map(|a| match a {
                Action::End(r) => Some(r),
                _ => None,
            })
            .collect();
        assert_eq!(ends, [EndReason::IceFailed]);
        m.handle(
            Input::Janus(Incoming::HangUp {
                sender: crate::ids::HandleId(1),
                reason: "x".into(),
            }),
            at(t0, 22_100),
        );
        assert!(
            !actions(&mut m).iter().any(|a| matches!(a, Action::End(_))),
            "one end only"
        );
    }

    #[test]
    fn a_relayed_only_feed_relays_every_frame_and_writes_none() {
        let t0 = Now::read();
        let mut m = machine(false, true, t0);
        // No file waits for a keyframe: no request at the start.
        assert_eq!(keyframe_requests(&actions(&mut m)), 0);
        m.handle(frame(VIDEO, t0, 0, false, true), t0);
        m.handle(frame(AUDIO, t0, 0, false, true), t0);
        let a = actions(&mut m);
        assert_eq!(
            a.iter().filter(|a| matches!(a, Action::Relay(_))).count(),
            2
        );
        // The relay's target wants a keyframe: passed on, paced.
        m.handle(Input::KeyframeWanted, at(t0, 10));
        m.handle(Input::KeyframeWanted, at(t0, 100));
        m.handle(Input::KeyframeWanted, at(t0, 260));
        assert_eq!(keyframe_requests(&actions(&mut m)), 2);
        m.handle(Input::Ending, at(t0, 300));
        assert!(writes(&actions(&mut m)).is_empty());
    }
}
