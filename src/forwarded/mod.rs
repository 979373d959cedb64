//! Recording from the VideoRoom's RTP forwarders (`[janus] rtp_forward`): Janus sends each
//! recorded stream as plain RTP to one UDP socket of ours, every stream with an SSRC we chose,
//! and the socket's datagrams go to their feed by that SSRC. Frames are assembled as str0m's
//! depacketizers and reordering buffer assemble them (what a session does with the same
//! packets, without the session) and reach the feed's task as the [`RtcEvent`]s a
//! subscription gives, in batches, so the feed's machine, clocks, gate and files are the same
//! in both modes.
//!
//! Why: Janus relays a packet to a WebRTC subscriber through an allocation, a queue, a
//! wake-up of the subscriber's thread, SRTP and a `sendmsg`; to a forwarder with one `sendto`
//! from the publisher's thread (the README's "Recording from RTP forwarders: what it
//! costs": a fifth of the cost or less). What it gives up: retransmission (a lost packet stays lost: the feed asks for a
//! keyframe, which Janus passes on to the publisher as a PLI), encryption (the recorder
//! belongs on Janus's host or a private network), and sender reports (frames are placed on
//! the room clock by their arrival).
//!
//! Opus, where every packet is a frame, is reordered here ([`in_order`]) rather than by str0m,
//! and VP8 frames are assembled here ([`vp8`]): the same rules, one or two copies of each
//! payload instead of three. The other video codecs go through str0m's own
//! ([`FrameAssembler`]).
//!
//! One task reads the socket on a steady tick ([`TICK`]) with `recvmmsg`, as the media loop
//! does in its steady pace: its wake-ups do not grow with the packets.

use std::collections::VecDeque;
use std::io::{self, IoSliceMut};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use foldhash::HashMap;
use quinn_udp::{RecvMeta, UdpSocketState};
use str0m::format::CodecExtra;
use str0m::format::{CodecSpec, FormatParams, PayloadParams};
use str0m::media::{Frequency, MediaData, MediaTime, Mid};
use str0m::rtp::{ExtensionValues, FrameAssembler, SeqNo};
use tokio::sync::mpsc;

use crate::config::RtpForwardConfig;
use crate::media::{Codec, MediaKind};
use crate::rtc::{ReceiveStats, RtcEvent, next_on_grid};

mod in_order;
mod reorder;
mod vp8;
use in_order::InOrder;
use vp8::Vp8Frames;

/// How often the socket is read and frames handed on: every frame waits at most this long
/// in the socket buffer (the feeds batch further, see [`Registration::batch_reads`]). The
/// media loop's steady tick: each wake-up of the process costs a context switch, 40 ms of
/// 100 feeds is a few hundred datagrams (the socket buffer holds seconds of them), and a
/// first keyframe waits 40 ms at most more.
const TICK: Duration = Duration::from_millis(40);
/// Datagrams per `recvmmsg`.
const BATCH: usize = 32;
/// A read buffer holds a whole GRO batch.
const READ_BUF: usize = 64 * 1024;
/// Reads per tick: up to 8192 datagrams, what is left waits for the next tick.
const READS_PER_TICK: usize = 256;
/// Packets held back to reorder (str0m's defaults for a session; str0m counts video in
/// frames, [`Vp8Frames`] in packets: a second of a 2 Mb/s stream, the wait decides first).
const HOLD_BACK_AUDIO: usize = 15;
const HOLD_BACK_VIDEO: usize = 30;
const HOLD_BACK_VP8_PACKETS: usize = 256;
/// How long a frame waits for a packet missing before it: on the same host or a private
/// network a packet is late by far less, and nothing will resend it.
const REORDER_WAIT: Duration = Duration::from_millis(100);
/// Batches a feed's task may have waiting before its frames are dropped (5 s of the
/// shortest batches, as for a subscription).
const FEED_BATCHES: usize = 256;
/// How often each stream's receive statistics go to its feed.
const STATS_EVERY: Duration = Duration::from_secs(5);

/// The process's receiver of forwarded RTP: its socket, and the streams routed through it.
#[derive(Clone)]
pub struct Forwards {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Forwards {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Forwards")
            .field("host", &self.inner.host)
            .field("port", &self.inner.port)
            .finish()
    }
}

struct Inner {
    socket: std::net::UdpSocket,
    state: UdpSocketState,
    /// The host Janus sends to, and our socket's port.
    host: String,
    port: u16,
    table: Mutex<Table>,
    next_ssrc: AtomicU32,
    next_feed: AtomicU64,
}

/// Every stream and feed, by the receiver and the feeds' tasks.
#[derive(Default)]
struct Table {
    /// By the SSRC we gave the stream's forwarder.
    streams: HashMap<u32, Stream>,
    feeds: HashMap<u64, Outbox>,
    /// Datagrams of no stream of ours (Janus's latching packets, stray traffic).
    unrouted: u64,
    /// Where Janus's latching packets came from, by port: each forwarder with an RTCP port
    /// sends two (empty RTP headers) from the socket it takes RTCP feedback on as it starts,
    /// so they name the address our keyframe requests go to.
    latches: HashMap<u16, std::net::IpAddr>,
    /// Keyframe requests to send once the table is let go: (Janus's RTCP address, SSRC).
    plis: Vec<(SocketAddr, u32)>,
}

/// Latching sources remembered (forwarders starting within a short while).
const LATCHES: usize = 1024;

struct Stream {
    feed: u64,
    mid: Mid,
    params: PayloadParams,
    assembly: Assembly,
    /// The highest RTP time seen, extended over wraps (our own assemblies).
    max_time: Option<u64>,
    /// Where its packets come from (Janus's host; its RTCP port is [`Stream::rtcp_port`]).
    source: Option<SocketAddr>,
    /// The port Janus takes this stream's RTCP feedback on (video only).
    rtcp_port: Option<u16>,
    packets: u64,
    /// The highest sequence number seen, extended, and the packets expected and received
    /// since the last statistics.
    highest: Option<u64>,
    window: (u64, u64),
    stats_due: Instant,
}

/// How a stream's packets become frames.
enum Assembly {
    /// str0m's depacketizer and reordering buffer: video, whose frames span packets.
    Frames(Box<FrameAssembler>),
    /// Every packet a frame (Opus), reordered here.
    Packets(InOrder),
    /// VP8 frames, assembled here.
    Vp8(Box<Vp8Frames>),
}

/// A feed's frames on their way to its task.
struct Outbox {
    tx: mpsc::Sender<Vec<RtcEvent>>,
    pending: Vec<RtcEvent>,
    every: Duration,
    due: Instant,
    dropped: u64,
}

impl Forwards {
    /// Binds the socket of `config` and starts reading it (in the current runtime).
    pub fn bind(config: &RtpForwardConfig) -> io::Result<Forwards> {
        let (socket, state) = crate::rtc::bind_unwatched(config.listen)?;
        let port = socket.local_addr()?.port();
        let inner = Arc::new(Inner {
            socket,
            state,
            host: config.janus_host(),
            port,
            table: Mutex::new(Table::default()),
            next_ssrc: AtomicU32::new(unpredictable_u32()),
            next_feed: AtomicU64::new(1),
        });
        tokio::spawn(receive(Arc::downgrade(&inner)));
        tracing::info!(host = %inner.host, port, "receiving RTP forwarded by Janus");
        Ok(Forwards { inner })
    }

    /// The host Janus is told to send to.
    pub fn host(&self) -> &str {
        &self.inner.host
    }

    /// The port it sends to (every stream: they differ by SSRC).
    pub fn port(&self) -> u16 {
        self.inner.port
    }

    /// Routes to a new feed the streams of `tracks`: each gets an SSRC to ask Janus for.
    pub fn register(&self, tracks: &[(Mid, Codec)]) -> Registration {
        let feed = self.inner.next_feed.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = mpsc::channel(FEED_BATCHES);
        let now = Instant::now();
        let mut ssrcs = Vec::new();
        let mut table = self.inner.table.lock().expect("forward table");
        for &(mid, codec) in tracks {
            let Some(stream) = Stream::new(feed, mid, codec, now) else {
                tracing::warn!(%mid, %codec, "no depacketizer for this codec: not recorded");
                continue;
            };
            let ssrc = loop {
                let s = self.inner.next_ssrc.fetch_add(1, Ordering::Relaxed);
                if s != 0 && !table.streams.contains_key(&s) {
                    break s;
                }
            };
            table.streams.insert(ssrc, stream);
            ssrcs.push((mid, ssrc));
        }
        table.feeds.insert(feed, Outbox::new(tx, now));
        // What a subscription's session tells its feed first: connected, and its media.
        let mut queue = VecDeque::from([RtcEvent::Connected]);
        for &(mid, codec) in tracks {
            if ssrcs.iter().any(|(m, _)| *m == mid) {
                let kind = match codec.kind() {
                    MediaKind::Audio => str0m::media::MediaKind::Audio,
                    MediaKind::Video => str0m::media::MediaKind::Video,
                };
                queue.push_back(RtcEvent::MediaAdded { mid, kind });
            }
        }
        Registration {
            forwards: self.clone(),
            feed,
            ssrcs,
            events: rx,
            queue,
        }
    }
}

impl Stream {
    fn new(feed: u64, mid: Mid, codec: Codec, now: Instant) -> Option<Stream> {
        let (rate, hold_back, channels) = match codec.kind() {
            MediaKind::Audio => (Frequency::FORTY_EIGHT_KHZ, HOLD_BACK_AUDIO, Some(2)),
            MediaKind::Video => (Frequency::NINETY_KHZ, HOLD_BACK_VIDEO, None),
        };
        let spec = CodecSpec {
            codec: codec.to_str0m(),
            clock_rate: rate,
            channels,
            format: FormatParams::default(),
        };
        let assembly = match codec {
            Codec::Opus => Assembly::Packets(InOrder::new(hold_back, REORDER_WAIT)),
            Codec::Vp8 => Assembly::Vp8(Box::new(Vp8Frames::new(
                HOLD_BACK_VP8_PACKETS,
                REORDER_WAIT,
            ))),
            _ => Assembly::Frames(Box::new(FrameAssembler::new(
                codec.to_str0m(),
                rate,
                hold_back,
                Some(REORDER_WAIT),
            )?)),
        };
        Some(Stream {
            feed,
            mid,
            // The payload type is Janus's business here; the feed reads the codec only.
            params: PayloadParams::new(0.into(), None, spec),
            assembly,
            max_time: None,
            source: None,
            rtcp_port: None,
            packets: 0,
            highest: None,
            window: (0, 0),
            stats_due: now + STATS_EVERY,
        })
    }

    /// Takes one packet of the stream; false if it is refused: not RTP, or from another
    /// address than the stream's first packet (Janus sends a publisher's packets from one
    /// socket; anyone else who learned the SSRC must not write into the file).
    fn on_packet(&mut self, source: SocketAddr, data: &[u8], now: Instant) -> bool {
        if self.source.is_some_and(|s| s.ip() != source.ip()) {
            return false;
        }
        let seq = u16::from_be_bytes([data[2], data[3]]);
        let ext = extend_seq(self.highest, seq);
        let taken = match (&mut self.assembly, rtp_payload(data)) {
            (Assembly::Frames(a), _) => a.push(now, data),
            (_, None) => false,
            (Assembly::Packets(order), Some(payload)) => {
                order.push(in_order::Packet {
                    seq: ext,
                    time: rtp_time(&mut self.max_time, data),
                    received: now,
                    data: (!payload.is_empty()).then(|| Arc::from(payload)),
                });
                true
            }
            (Assembly::Vp8(frames), Some(payload)) => {
                frames.push(vp8::Packet {
                    seq: ext,
                    time: rtp_time(&mut self.max_time, data),
                    marker: data[1] & 0x80 != 0,
                    received: now,
                    payload,
                });
                true
            }
        };
        if !taken {
            return false;
        }
        self.source = Some(source);
        self.packets += 1;
        self.window.1 += 1;
        match self.highest {
            None => self.window.0 += 1,
            Some(h) if ext > h => self.window.0 += ext - h,
            Some(_) => {}
        }
        self.highest = Some(self.highest.map_or(ext, |h| h.max(ext)));
        true
    }

    /// The frames ready at `now`, and the statistics when due, into `out`.
    fn release(&mut self, now: Instant, out: &mut Vec<RtcEvent>) {
        let frame = |time, network_time, seq_range, contiguous, data, codec_extra| {
            RtcEvent::Frame(Box::new(MediaData {
                mid: self.mid,
                pt: self.params.pt(),
                rid: None,
                params: self.params,
                time,
                network_time,
                seq_range,
                contiguous,
                data,
                ext_vals: ExtensionValues::default(),
                codec_extra,
                last_sender_info: None,
                audio_start_of_talk_spurt: false,
            }))
        };
        match &mut self.assembly {
            Assembly::Frames(a) => {
                while let Some(r) = a.pop(now) {
                    match r {
                        Ok(f) => out.push(frame(
                            f.time,
                            f.network_time,
                            f.seq_range,
                            f.contiguous,
                            Arc::from(f.data),
                            f.codec_extra,
                        )),
                        Err(e) => {
                            tracing::debug!(mid = %self.mid, error = %e, "a frame did not depacketize")
                        }
                    }
                }
            }
            Assembly::Vp8(frames) => {
                while let Some(f) = frames.pop(now) {
                    out.push(frame(
                        MediaTime::new(f.time, Frequency::NINETY_KHZ),
                        f.received,
                        SeqNo::from(*f.seqs.start())..=SeqNo::from(*f.seqs.end()),
                        f.contiguous,
                        f.data,
                        CodecExtra::Vp8(f.extra),
                    ));
                }
            }
            Assembly::Packets(order) => {
                while let Some(r) = order.pop(now) {
                    let seq = SeqNo::from(r.seq);
                    out.push(frame(
                        MediaTime::new(r.time, Frequency::FORTY_EIGHT_KHZ),
                        r.received,
                        seq..=seq,
                        r.contiguous,
                        r.data,
                        CodecExtra::None,
                    ));
                }
            }
        }
        if now >= self.stats_due {
            self.stats_due = now + STATS_EVERY;
            let (expected, received) = std::mem::take(&mut self.window);
            let loss = if expected == 0 {
                0.0
            } else {
                expected.saturating_sub(received) as f32 / expected as f32
            };
            out.push(RtcEvent::Stats(ReceiveStats {
                mid: Some(self.mid),
                packets: self.packets,
                nacks: 0,
                loss,
            }));
        }
    }
}

/// Where the SSRCs start: anything, as long as another host on the network cannot guess
/// them (the SSRC is all that routes a packet to a feed; a stream also takes packets from
/// one address only, see [`Stream::on_packet`]). std's hasher keys are random per process.
fn unpredictable_u32() -> u32 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(std::process::id().into());
    h.finish() as u32
}

/// The RTP time of `packet` (at least 8 bytes), extended over wraps near `max_time`, which
/// it moves on.
fn rtp_time(max_time: &mut Option<u64>, packet: &[u8]) -> u64 {
    let ts = u32::from_be_bytes([packet[4], packet[5], packet[6], packet[7]]);
    let time = extend(*max_time, ts.into(), 32);
    *max_time = Some(max_time.map_or(time, |m| m.max(time)));
    time
}

/// `seq` extended to 64 bits near `highest`.
fn extend_seq(highest: Option<u64>, seq: u16) -> u64 {
    extend(highest, seq.into(), 16)
}

/// `value`, a counter of `bits` bits that wraps, extended to 64 bits near `highest`. The
/// first value starts one wrap up, so one that goes back past zero stays positive.
fn extend(highest: Option<u64>, value: u64, bits: u32) -> u64 {
    let wrap = 1u64 << bits;
    let Some(h) = highest else {
        return value + wrap;
    };
    let base = h & !(wrap - 1);
    let candidates = [base.wrapping_sub(wrap), base, base + wrap];
    candidates
        .into_iter()
        .map(|b| b.wrapping_add(value))
        .min_by_key(|c| c.abs_diff(h))
        .unwrap_or(h)
}

/// The payload of an RTP packet (after the CSRCs, the header extension and before the
/// padding); `None` if it is not one. Empty: padding only.
fn rtp_payload(packet: &[u8]) -> Option<&[u8]> {
    if packet.len() < 12 || packet[0] >> 6 != 2 {
        return None;
    }
    let mut start = 12 + 4 * usize::from(packet[0] & 0x0f);
    if packet[0] & 0x10 != 0 {
        let words = packet.get(start + 2..start + 4)?;
        start += 4 + 4 * usize::from(u16::from_be_bytes([words[0], words[1]]));
    }
    let mut end = packet.len();
    if packet[0] & 0x20 != 0 {
        let pad = usize::from(*packet.last()?);
        if pad == 0 {
            return None;
        }
        end = end.checked_sub(pad)?;
    }
    packet.get(start..end)
}

/// Reads the socket on every tick, until the last [`Forwards`] and [`Registration`] are
/// gone (then the socket closes: a reload may bind its address again).
async fn receive(inner: std::sync::Weak<Inner>) {
    let mut bufs: Vec<Vec<u8>> = (0..BATCH).map(|_| vec![0; READ_BUF]).collect();
    let mut metas = vec![RecvMeta::default(); BATCH];
    // On the process's grid, as the feeds' own ticks: a feed's batch comes in the wake-up
    // of its tick, not in one of its own.
    let mut tick = tokio::time::interval_at(next_on_grid(Instant::now(), TICK).into(), TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut out = Vec::new();
    loop {
        tick.tick().await;
        let Some(inner) = inner.upgrade() else {
            return;
        };
        let now = Instant::now();
        let mut table = inner.table.lock().expect("forward table");
        'reads: for _ in 0..READS_PER_TICK {
            let mut it = bufs.iter_mut();
            let mut iovs: [IoSliceMut; BATCH] =
                std::array::from_fn(|_| IoSliceMut::new(it.next().expect("BATCH buffers")));
            let n = match inner
                .state
                .recv((&inner.socket).into(), &mut iovs, &mut metas)
            {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) => {
                    tracing::debug!(error = %e, "UDP receive error");
                    break;
                }
            };
            for (meta, buf) in metas.iter().zip(&bufs).take(n) {
                // A GRO read holds several datagrams of `stride` bytes.
                for datagram in buf[..meta.len].chunks(meta.stride.max(1)) {
                    table.on_datagram(meta.addr, datagram, now);
                }
            }
            if n < BATCH {
                break 'reads;
            }
        }
        table.release(now, &mut out);
        let plis = std::mem::take(&mut table.plis);
        drop(table);
        for (to, ssrc) in plis {
            inner.send_pli(to, ssrc);
        }
    }
}

impl Inner {
    fn send_pli(&self, to: SocketAddr, ssrc: u32) {
        if let Err(e) = self.socket.send_to(&pli(ssrc), to) {
            tracing::debug!(%to, error = %e, "sending a PLI to Janus failed");
        }
    }
}

impl Table {
    fn on_datagram(&mut self, source: SocketAddr, data: &[u8], now: Instant) {
        // RTP version 2, and not RTCP (payload types 72-76 with the marker bit: 200-204).
        let rtp = data.len() >= 12 && data[0] >> 6 == 2 && !(200..=206).contains(&data[1]);
        let ssrc = rtp.then(|| u32::from_be_bytes([data[8], data[9], data[10], data[11]]));
        let taken = match ssrc.and_then(|s| self.streams.get_mut(&s)) {
            Some(stream) => stream.on_packet(source, data, now),
            None if ssrc == Some(0) && data.len() == 12 => {
                self.on_latch(source);
                true
            }
            None => false,
        };
        if !taken {
            self.unrouted += 1;
        }
    }

    /// A forwarder's latching packet: its RTCP address is known, and a video stream that has
    /// had no packet yet is asked for a keyframe at once (Janus asks the publisher for one
    /// when a forwarder starts only in its older `rtp_forward` form, and a browser sends
    /// one only when asked).
    fn on_latch(&mut self, source: SocketAddr) {
        if self.latches.len() >= LATCHES {
            self.latches.clear();
        }
        self.latches.insert(source.port(), source.ip());
        let waiting = self
            .streams
            .iter()
            .filter(|(_, s)| s.rtcp_port == Some(source.port()) && s.packets == 0)
            .map(|(ssrc, _)| (source, *ssrc));
        self.plis.extend(waiting);
    }

    /// Where the keyframe requests of `ssrc` go: Janus's RTCP port for it, at the address
    /// its packets (or its latching packets) come from.
    fn rtcp_address(&self, ssrc: u32) -> Option<SocketAddr> {
        let s = self.streams.get(&ssrc)?;
        let port = s.rtcp_port?;
        let ip = s
            .source
            .map(|a| a.ip())
            .or_else(|| self.latches.get(&port).copied())?;
        Some(SocketAddr::new(ip, port))
    }

    /// Every stream's ready frames into its feed's outbox; the outboxes that are due sent.
    fn release(&mut self, now: Instant, scratch: &mut Vec<RtcEvent>) {
        for stream in self.streams.values_mut() {
            stream.release(now, scratch);
            if scratch.is_empty() {
                continue;
            }
            match self.feeds.get_mut(&stream.feed) {
                Some(o) => o.pending.append(scratch),
                None => scratch.clear(),
            }
        }
        for outbox in self.feeds.values_mut() {
            if now >= outbox.due {
                outbox.send();
                outbox.due = next_on_grid(now, outbox.every);
            }
        }
    }
}

impl Outbox {
    fn new(tx: mpsc::Sender<Vec<RtcEvent>>, now: Instant) -> Outbox {
        Outbox {
            tx,
            pending: Vec::new(),
            every: TICK,
            due: now,
            dropped: 0,
        }
    }

    fn send(&mut self) {
        if self.pending.is_empty() {
            return;
        }
        // The next batch is about as long: room for it now, not grown by copies.
        let room = self.pending.len();
        let batch = std::mem::replace(&mut self.pending, Vec::with_capacity(room));
        let frames = batch.len() as u64;
        if let Err(mpsc::error::TrySendError::Full(_)) = self.tx.try_send(batch) {
            self.dropped += frames;
            if self.dropped == frames {
                tracing::warn!("a feed's task does not take its frames: dropping them");
            }
        }
    }
}

/// A feed's streams in the receiver: the SSRCs to ask Janus for, and the frames that come.
/// Dropping it takes the streams out.
pub struct Registration {
    forwards: Forwards,
    feed: u64,
    /// Each stream's mid and the SSRC its forwarder is to use.
    pub ssrcs: Vec<(Mid, u32)>,
    events: mpsc::Receiver<Vec<RtcEvent>>,
    queue: VecDeque<RtcEvent>,
}

impl Registration {
    /// The next event of the feed's streams; `None` once the receiver is gone. Cancel-safe.
    pub async fn next(&mut self) -> Option<RtcEvent> {
        loop {
            if let Some(ev) = self.queue.pop_front() {
                return Some(ev);
            }
            self.queue.extend(self.events.recv().await?);
        }
    }

    /// An event already received and not taken yet; `None` without waiting for one.
    pub fn queued(&mut self) -> Option<RtcEvent> {
        self.queue.pop_front()
    }

    /// Janus takes RTCP feedback for the stream of `ssrc` on `port` (its `local_rtcp_port`).
    /// A video stream whose latching packets came already is asked for a keyframe at once.
    pub fn set_rtcp_port(&self, ssrc: u32, port: u16) {
        let mut table = self.forwards.inner.table.lock().expect("forward table");
        let Some(s) = table.streams.get_mut(&ssrc) else {
            return;
        };
        s.rtcp_port = Some(port);
        let first = s.packets == 0;
        let to = table.rtcp_address(ssrc).filter(|_| first);
        drop(table);
        if let Some(to) = to {
            self.forwards.inner.send_pli(to, ssrc);
        }
    }

    /// Asks Janus for a keyframe on `mid`: an RTCP PLI to the forwarder's RTCP port, which
    /// Janus passes on to the publisher.
    pub fn request_keyframe(&self, mid: Mid) {
        let Some(&(_, ssrc)) = self.ssrcs.iter().find(|(m, _)| *m == mid) else {
            return;
        };
        let to = {
            let table = self.forwards.inner.table.lock().expect("forward table");
            table.rtcp_address(ssrc)
        };
        match to {
            Some(to) => self.forwards.inner.send_pli(to, ssrc),
            None => {
                tracing::debug!(%mid, "no RTCP address from Janus yet: keyframe request not sent")
            }
        }
    }

    /// The feed takes its frames every `every` from now on.
    pub fn batch_reads(&self, every: Duration) {
        let mut table = self.forwards.inner.table.lock().expect("forward table");
        if let Some(o) = table.feeds.get_mut(&self.feed) {
            o.every = every.max(TICK);
        }
    }

    /// Everything received for the feed that it has not had yet (it is ending).
    pub fn take_received(&mut self) -> Vec<RtcEvent> {
        let mut out: Vec<RtcEvent> = self.queue.drain(..).collect();
        while let Ok(batch) = self.events.try_recv() {
            out.extend(batch);
        }
        let mut table = self.forwards.inner.table.lock().expect("forward table");
        let now = Instant::now();
        let Table { streams, feeds, .. } = &mut *table;
        if let Some(o) = feeds.get_mut(&self.feed) {
            out.append(&mut o.pending);
        }
        for s in streams.values_mut().filter(|s| s.feed == self.feed) {
            s.release(now, &mut out);
        }
        out
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        let mut table = self.forwards.inner.table.lock().expect("forward table");
        for (_, ssrc) in &self.ssrcs {
            table.streams.remove(ssrc);
        }
        table.feeds.remove(&self.feed);
    }
}

/// An RTCP PLI (RFC 4585 6.3.1) about `ssrc`, from no particular sender.
fn pli(ssrc: u32) -> [u8; 12] {
    let mut p = [0u8; 12];
    p[0] = 0x80 | 1; // version 2, FMT 1 (PLI)
    p[1] = 206; // payload-specific feedback
    p[3] = 2; // length: 3 words, minus one
    p[4..8].copy_from_slice(&1u32.to_be_bytes());
    p[8..12].copy_from_slice(&ssrc.to_be_bytes());
    p
}

#[cfg(test)]
mod tests {
    use super::*;

    fn packet(ssrc: u32, seq: u16, ts: u32, marker: bool, payload: &[u8]) -> Vec<u8> {
        let mut p = vec![0x80, 111 | if marker { 0x80 } else { 0 }];
        p.extend_from_slice(&seq.to_be_bytes());
        p.extend_from_slice(&ts.to_be_bytes());
        p.extend_from_slice(&ssrc.to_be_bytes());
        p.extend_from_slice(payload);
        p
    }

    fn table_with(mid: &str, codec: Codec, ssrc: u32) -> (Table, mpsc::Receiver<Vec<RtcEvent>>) {
        let now = Instant::now();
        let mut t = Table::default();
        t.streams
            .insert(ssrc, Stream::new(1, Mid::from(mid), codec, now).unwrap());
        let (tx, rx) = mpsc::channel(8);
        t.feeds.insert(1, Outbox::new(tx, now));
        (t, rx)
    }

    fn frames(batch: &[RtcEvent]) -> Vec<&MediaData> {
        batch
            .iter()
            .filter_map(|e| match e {
                RtcEvent::Frame(d) => Some(&**d),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn opus_packets_become_frames_in_order_across_a_wrap() {
        let (mut t, mut rx) = table_with("0", Codec::Opus, 7);
        let src: SocketAddr = "127.0.0.1:5000".parse().unwrap();
        let now = Instant::now();
        // Out of order, across the sequence number's wrap; and one of another SSRC.
        for (seq, i) in [(65534u16, 0u32), (0, 2), (65535, 1), (1, 3)] {
            t.on_datagram(src, &packet(7, seq, 960 * i, false, &[0x08, i as u8]), now);
        }
        t.on_datagram(src, &packet(8, 5, 0, false, &[0x08]), now);
        assert_eq!(t.unrouted, 1);
        // The stream's SSRC from another address: refused.
        let other: SocketAddr = "10.9.9.9:5000".parse().unwrap();
        t.on_datagram(other, &packet(7, 2, 960 * 4, false, &[0x08, 9]), now);
        assert_eq!(t.unrouted, 2);
        let mut scratch = Vec::new();
        t.release(now, &mut scratch);
        let batch = rx.try_recv().expect("a batch");
        let f = frames(&batch);
        assert_eq!(f.len(), 4, "{batch:?}");
        let payload: Vec<u8> = f.iter().map(|d| d.data[1]).collect();
        assert_eq!(payload, vec![0, 1, 2, 3]);
        assert!(f.iter().all(|d| d.mid == Mid::from("0")));
        assert_eq!(
            Codec::from_str0m(f[0].params.spec().codec),
            Some(Codec::Opus)
        );
        assert!(
            f.windows(2)
                .all(|w| w[1].time.numer() == w[0].time.numer() + 960)
        );
    }

    #[test]
    fn a_lost_packet_is_waited_for_then_skipped() {
        let (mut t, mut rx) = table_with("0", Codec::Opus, 7);
        let src: SocketAddr = "127.0.0.1:5000".parse().unwrap();
        let t0 = Instant::now();
        t.on_datagram(src, &packet(7, 10, 0, false, &[0x08, 0]), t0);
        t.on_datagram(src, &packet(7, 12, 1920, false, &[0x08, 2]), t0);
        let mut scratch = Vec::new();
        t.release(t0, &mut scratch);
        let first = rx.try_recv().expect("a batch");
        assert_eq!(frames(&first).len(), 1, "the frame after the gap waits");
        let later = t0 + REORDER_WAIT + Duration::from_millis(1);
        t.release(later, &mut scratch);
        let batch = rx.try_recv().expect("a batch");
        let f = frames(&batch);
        assert_eq!(f.len(), 1);
        assert!(!f[0].contiguous, "a gap before it");
    }

    #[test]
    fn not_rtp_and_rtcp_are_not_routed() {
        let (mut t, _rx) = table_with("0", Codec::Opus, 7);
        let src: SocketAddr = "127.0.0.1:5000".parse().unwrap();
        let now = Instant::now();
        t.on_datagram(src, &[0x80, 0, 0], now);
        t.on_datagram(src, &pli(7), now);
        assert_eq!(t.unrouted, 2);
    }

    #[test]
    fn a_latching_packet_names_where_keyframe_requests_go() {
        let (mut t, _rx) = table_with("1", Codec::Vp8, 7);
        t.streams.get_mut(&7).unwrap().rtcp_port = Some(40_000);
        assert_eq!(t.rtcp_address(7), None, "nothing known yet");
        // Janus's latching packet: an empty RTP header, SSRC 0, from the RTCP socket.
        let janus: SocketAddr = "10.0.0.1:40000".parse().unwrap();
        t.on_datagram(
            janus,
            &[0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
            Instant::now(),
        );
        assert_eq!(t.unrouted, 0);
        assert_eq!(t.rtcp_address(7), Some(janus));
        assert_eq!(
            t.plis,
            vec![(janus, 7)],
            "the stream's first keyframe asked for"
        );
    }

    #[test]
    fn the_payload_is_found_past_csrcs_extension_and_padding() {
        // Version 2, padding, extension, one CSRC.
        let mut p = vec![0x80 | 0x20 | 0x10 | 1, 111, 0, 1, 0, 0, 0, 0, 0, 0, 0, 7];
        p.extend_from_slice(&[1, 2, 3, 4]); // the CSRC
        p.extend_from_slice(&[0xbe, 0xde, 0, 1, 0x10, 0xff, 0, 0]); // one word of extension
        p.extend_from_slice(&[0xaa, 0xbb]); // the payload
        p.extend_from_slice(&[0, 0, 3]); // three bytes of padding
        assert_eq!(rtp_payload(&p), Some(&[0xaa, 0xbb][..]));
        // Padding longer than the packet, an extension past its end, not version 2.
        let mut bad = p.clone();
        *bad.last_mut().unwrap() = 200;
        assert_eq!(rtp_payload(&bad), None);
        assert_eq!(rtp_payload(&p[..17]), None);
        assert_eq!(rtp_payload(&[0x40; 12]), None);
        // A plain header with nothing after it: padding only, empty.
        assert_eq!(
            rtp_payload(&[0x80, 111, 0, 1, 0, 0, 0, 0, 0, 0, 0, 7]),
            Some(&[][..])
        );
    }

    #[test]
    fn opus_rtp_time_goes_on_across_its_wrap() {
        let (mut t, mut rx) = table_with("0", Codec::Opus, 7);
        let src: SocketAddr = "127.0.0.1:5000".parse().unwrap();
        let now = Instant::now();
        let start = u32::MAX - 959;
        for i in 0..3u16 {
            let ts = start.wrapping_add(960 * u32::from(i));
            t.on_datagram(src, &packet(7, i, ts, false, &[0x08]), now);
        }
        t.release(now, &mut Vec::new());
        let batch = rx.try_recv().expect("a batch");
        let times: Vec<u64> = frames(&batch).iter().map(|d| d.time.numer()).collect();
        assert_eq!(times.len(), 3);
        assert!(times.windows(2).all(|w| w[1] == w[0] + 960), "{times:?}");
    }

    #[test]
    fn sequence_numbers_extend_both_ways() {
        assert_eq!(extend_seq(None, 5), (1 << 16) + 5);
        let h = (1 << 16) + 65_530;
        assert_eq!(extend_seq(Some(h), 3), (2 << 16) + 3);
        assert_eq!(extend_seq(Some((2 << 16) + 3), 65_530), h);
    }

    #[test]
    fn loss_is_counted_in_the_statistics() {
        let (mut t, mut rx) = table_with("0", Codec::Opus, 7);
        let src: SocketAddr = "127.0.0.1:5000".parse().unwrap();
        let t0 = Instant::now();
        for seq in (0u16..10).filter(|s| *s != 4) {
            t.on_datagram(
                src,
                &packet(7, seq, 960 * u32::from(seq), false, &[0x08]),
                t0,
            );
        }
        let mut scratch = Vec::new();
        t.release(t0 + STATS_EVERY, &mut scratch);
        let batch = rx.try_recv().expect("a batch");
        let stats: Vec<_> = batch
            .iter()
            .filter_map(|e| match e {
                RtcEvent::Stats(s) => Some(*s),
                _ => None,
            })
            .collect();
        assert_eq!(stats.len(), 1);
        assert_eq!(stats[0].packets, 9);
        assert!((stats[0].loss - 0.1).abs() < 1e-6, "{:?}", stats[0]);
    }
}
