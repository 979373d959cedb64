//! The media loop: one task that owns every str0m `Rtc` of the process (recorded feeds,
//! relays, synthetic publishers) and one UDP socket per advertised address, so an operator
//! opens one UDP port (`[network] port`) whatever the number of feeds.
//!
//! - Reads are batched: `recvmmsg` through quinn-udp, which also turns on UDP GRO where the
//!   kernel has it (one read may then hold many datagrams of one sender).
//! - Each datagram goes to its session by STUN username, else by remote address
//!   ([`super::route`]); str0m's output is drained after every input, as str0m requires.
//! - One timer serves every session: deadlines are rounded up to a shared grid, so sessions
//!   whose timers are due close together are served in one wake-up.
//! - RTP to send is spread over time per session ([`super::spread`]), not sent a frame at a
//!   time: a large frame's burst overflows the receiver's socket buffer.
//! - Two paces. While any session sets up (ICE, DTLS, the first keyframe), the loop wakes
//!   for every datagram and hands events over at once. Once every session's media flows
//!   steadily ([`super::RtcSession::batch_reads`]), the loop wakes only on a 40 ms tick: it
//!   reads everything queued (hundreds of datagrams in a few `recvmmsg` calls), runs the due
//!   timers, and hands each task its frames in one batch, so neither the loop nor a feed task
//!   wakes per packet.
//!
//! Feed tasks keep the Janus signalling and their files; they talk to the loop through
//! [`super::RtcSession`]. str0m panics on internal invariant violations by design: every call
//! into it is under `catch_unwind`, and a panic ends only that session.

use foldhash::{HashMap, HashMapExt};
use std::io::{self, IoSliceMut};
use std::net::SocketAddr;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use quinn_udp::RecvMeta;
use str0m::config::DtlsCert;
use str0m::media::{KeyframeRequestKind, MediaTime, Mid, Pt};
use str0m::net::{Protocol, Receive};
use str0m::{Candidate, Event, IceConnectionState, Input, Output, Rtc};
use tokio::sync::{mpsc, oneshot};

use super::driven::DrivenRtc;
use super::pacing::{Mailbox, Outbox, Pacing};
use super::route::{Routes, RtcId, is_stun};
use super::sockets::{Bound, Port, PortSocket, readable};
use super::spread::{Held, Spread, is_rtp_media};
use super::{ReceiveStats, RtcEvent, SessionEnd};
use crate::media::Codec;
use crate::net::SocketPlan;

/// Datagrams per `recvmmsg` (quinn-udp's own batch size).
const BATCH: usize = 32;
/// Each read buffer holds a whole GRO batch (the kernel coalesces up to 64 KiB).
const READ_BUF: usize = 64 * 1024;
/// Reads per wake-up before commands and timers get their turn, while sessions set up.
const READS_PER_WAKE: usize = 8;
/// Reads per tick in the steady pace: up to 8192 datagrams, far more than 40 ms of the
/// feeds a machine carries; what is left waits in the socket buffer for the next tick.
const READS_PER_TICK: usize = 256;
/// The grid session timers are rounded up to.
const TIMER_GRID: Duration = Duration::from_millis(5);
/// The steady pace: once every session's media flows, the loop wakes on this shared tick
/// (and when a batch is due) only. 40 ms is far below what the recording cares about (a
/// session's timers, NACKs among them, run on it), and 25 wake-ups a second cost far less
/// than one per packet (measured with `scripts/bench.sh`, see the README).
const TICK: Duration = Duration::from_millis(40);
/// Event batches queued per session before the loop holds them back (5 s of the shortest
/// batches).
const EVENT_BATCHES: usize = 256;
/// Frames to send queued for the loop, all sessions together (a relay's or publisher's).
const SEND_QUEUE: usize = 8192;
/// The next instant after `now` on a grid of `step`, shared by the whole process: timers on
/// it that are multiples of one another fire in one wake-up of the runtime.
pub fn next_on_grid(now: Instant, step: Duration) -> Instant {
    static EPOCH: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    let epoch = *EPOCH.get_or_init(Instant::now);
    let step = step.as_nanos();
    let n = now.saturating_duration_since(epoch).as_nanos() / step + 1;
    // In nanoseconds: `Duration * n` takes a u32, which small steps outgrow in months.
    epoch + Duration::from_nanos((n * step) as u64)
}

/// The first instant on the grid of `step` at or after `t`.
fn round_up(t: Instant, step: Duration) -> Instant {
    next_on_grid(t.checked_sub(Duration::from_nanos(1)).unwrap_or(t), step)
}

/// What a session handle asks of the loop.
pub(super) enum Control {
    Start(Box<NewSession>),
    Candidate(RtcId, Candidate),
    /// Ask the sender of `mid` for a keyframe (PLI), as soon as str0m can.
    Keyframe(RtcId, Mid),
    /// From now on, hand frames over on the shared grid of this period.
    Batch(RtcId, Duration),
    /// Everything received so far, without waiting for the tick.
    Take(RtcId, oneshot::Sender<Vec<RtcEvent>>),
    /// Accept a new SDP offer (a renegotiation); the answer goes back.
    Offer(
        RtcId,
        String,
        oneshot::Sender<Result<String, super::RtcError>>,
    ),
    Close(RtcId),
}

/// A negotiated `Rtc` handed to the loop.
pub(super) struct NewSession {
    pub id: RtcId,
    pub rtc: Rtc,
    pub ufrag: String,
    pub events: mpsc::Sender<Vec<RtcEvent>>,
}

/// What goes to the loop in send order.
pub(super) enum Media {
    Frame(Outgoing),
    /// Answered once every frame queued before it is in str0m.
    Barrier(oneshot::Sender<()>),
}

/// One frame to send (str0m packetizes it).
pub(super) struct Outgoing {
    pub id: RtcId,
    pub mid: Mid,
    pub codec: Codec,
    pub wallclock: Instant,
    pub rtp_time: MediaTime,
    pub data: Vec<u8>,
}

/// The handle to a running media loop. Cloned freely; the loop ends when the last handle
/// and the last session are gone.
#[derive(Clone)]
pub struct MediaLoop {
    pub(super) shared: Arc<Shared>,
}

impl std::fmt::Debug for MediaLoop {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MediaLoop")
            .field("candidates", &self.shared.candidates)
            .finish()
    }
}

pub(super) struct Shared {
    pub control: mpsc::UnboundedSender<Control>,
    pub media: mpsc::Sender<Media>,
    /// Our host candidates: each socket's advertised address with its port.
    pub candidates: Vec<SocketAddr>,
    /// The DTLS certificate of every session of the loop, made once: making one per session
    /// (str0m's default) cost each subscription a key generation while 50 set up at once.
    /// One certificate for many connections is what browsers do too; the keys of each
    /// connection are still its own (DTLS's ECDHE).
    pub dtls_cert: Option<DtlsCert>,
    /// `[network] candidate_networks`: the only networks Janus's candidates may be in
    /// (empty: any).
    pub candidate_networks: Vec<ipnet::IpNet>,
    next_id: AtomicU64,
}

impl Shared {
    pub fn next_id(&self) -> RtcId {
        RtcId(self.next_id.fetch_add(1, Ordering::Relaxed))
    }
}

impl MediaLoop {
    /// Binds one UDP socket per address of `plan`, all on `port` (0: one ephemeral port
    /// each), and starts the loop: a task of the current tokio runtime, or outside one a
    /// thread of its own.
    pub fn start(plan: &SocketPlan, port: u16) -> io::Result<MediaLoop> {
        MediaLoop::start_with(plan, port, Vec::new())
    }

    /// [`MediaLoop::start`], taking Janus's candidates only in `candidate_networks` (empty:
    /// any): STUN is never sent to a host and port outside them, whatever Janus names.
    pub fn start_with(
        plan: &SocketPlan,
        port: u16,
        candidate_networks: Vec<ipnet::IpNet>,
    ) -> io::Result<MediaLoop> {
        if plan.is_empty() {
            return Err(io::Error::other(
                "no address to offer Janus: set [network] advertise (no non-loopback interface found)",
            ));
        }
        let sockets = plan
            .iter()
            .map(|spec| Bound::bind(spec, port))
            .collect::<io::Result<Vec<_>>>()?;
        let candidates: Vec<SocketAddr> = sockets.iter().map(|s| s.advertised).collect();
        let (control_tx, control_rx) = mpsc::unbounded_channel();
        let (media_tx, media_rx) = mpsc::channel(SEND_QUEUE);
        let run = async move {
            let ports = sockets
                .into_iter()
                .map(Bound::into_port)
                .collect::<io::Result<Vec<_>>>();
            match ports {
                Ok(ports) => Loop::new(ports, control_rx, media_rx).run().await,
                Err(e) => tracing::error!(error = %e, "the media loop cannot use its sockets"),
            }
        };
        // A task of the runtime the feed tasks run on, when there is one: waking a feed task
        // is then a push on the same thread's run queue. From a thread of its own, every
        // hand-over was a cross-thread wake-up of a parked worker (system calls, context
        // switches: thousands a second at 50 feeds, measured with the benchmark).
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => drop(runtime.spawn(run)),
            Err(_) => {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()?;
                std::thread::Builder::new()
                    .name("media-loop".into())
                    .spawn(move || runtime.block_on(run))?;
            }
        }
        tracing::info!(candidates = ?candidates, "media loop started");
        Ok(MediaLoop {
            shared: Arc::new(Shared {
                control: control_tx,
                media: media_tx,
                candidates,
                dtls_cert: str0m::crypto::from_feature_flags()
                    .dtls_provider
                    .generate_certificate(),
                candidate_networks,
                next_id: AtomicU64::new(1),
            }),
        })
    }

    /// Our host candidates (the addresses Janus sends media to).
    pub fn candidates(&self) -> &[SocketAddr] {
        &self.shared.candidates
    }
}

/// One session in the loop.
struct Entry {
    rtc: DrivenRtc,
    events: mpsc::Sender<Vec<RtcEvent>>,
    /// Events on their way to the session's task.
    outbox: Outbox,
    /// When str0m next wants `Input::Timeout`.
    deadline: Instant,
    /// Keyframe requests str0m could not send yet (no remote SSRC known yet).
    keyframes: Vec<Mid>,
    /// The negotiated payload type per sending mid, looked up once.
    send_pts: Vec<(Mid, Pt)>,
    /// RTP waiting for its turn to be sent.
    spread: Spread,
}

impl Mailbox for Entry {
    fn mailbox(&mut self) -> (&mut Outbox, &mpsc::Sender<Vec<RtcEvent>>) {
        (&mut self.outbox, &self.events)
    }
}

struct Loop {
    ports: Vec<Port>,
    entries: HashMap<RtcId, Entry>,
    routes: Routes,
    control: mpsc::UnboundedReceiver<Control>,
    media: mpsc::Receiver<Media>,
    /// When events go to the sessions' tasks.
    pacing: Pacing,
    /// When the earliest session timer is due (on the grid).
    next_timer: Instant,
    /// The sockets are out of epoll (the steady pace).
    unwatched: bool,
    /// Sessions with RTP waiting to be sent, and when the next of it may go.
    releases: HashMap<RtcId, Instant>,
    /// The kernel's drop count of each socket when last read, and when that was.
    drops: Vec<u32>,
    drops_read: Instant,
    /// Drops not logged yet, and when they last were (a warning a minute at most).
    drops_unlogged: u64,
    drops_logged: Option<Instant>,
    bufs: Vec<Vec<u8>>,
    metas: Vec<RecvMeta>,
    /// What the loop did since the last report, for the debug log.
    counts: Counts,
}

/// How often the kernel's drop count of our sockets is read (on a wake-up the loop has
/// anyway: the loop wakes at least once a second).
const DROPS_EVERY: Duration = Duration::from_secs(1);
/// How often the loop logs what it did (at debug level).
const COUNTS_EVERY: Duration = Duration::from_secs(30);

/// What the loop did since `since`.
struct Counts {
    since: Instant,
    wakes: u64,
    datagrams: u64,
    /// Datagrams no session claimed.
    unrouted: u64,
    /// Session timers run (str0m's `Input::Timeout`).
    timers: u64,
}

impl Counts {
    fn new() -> Counts {
        Counts {
            since: Instant::now(),
            wakes: 0,
            datagrams: 0,
            unrouted: 0,
            timers: 0,
        }
    }
}

/// What a session's turn ended with: on `Err`, the session is over.
type Turn = Result<(), SessionEnd>;

impl Loop {
    fn new(
        ports: Vec<Port>,
        control: mpsc::UnboundedReceiver<Control>,
        media: mpsc::Receiver<Media>,
    ) -> Loop {
        Loop {
            drops: vec![0; ports.len()],
            ports,
            entries: HashMap::new(),
            routes: Routes::default(),
            control,
            media,
            pacing: Pacing::default(),
            next_timer: Instant::now() + Duration::from_secs(1),
            unwatched: false,
            releases: HashMap::new(),
            drops_read: Instant::now(),
            drops_unlogged: 0,
            drops_logged: None,
            bufs: (0..BATCH).map(|_| vec![0; READ_BUF]).collect(),
            metas: vec![RecvMeta::default(); BATCH],
            counts: Counts::new(),
        }
    }

    async fn run(mut self) {
        loop {
            let steady = self.steady();
            if steady != self.unwatched {
                self.unwatched = steady;
                for p in &mut self.ports {
                    p.socket = std::mem::replace(&mut p.socket, PortSocket::Lost).watch(!steady);
                }
            }
            let mut wake = self
                .pacing
                .next_flush()
                .map_or(self.next_timer, |f| f.min(self.next_timer));
            if steady {
                wake = wake.min(next_on_grid(Instant::now(), TICK));
            }
            if let Some(&release) = self.releases.values().min() {
                wake = wake.min(release);
            }
            tokio::select! {
                biased;
                c = self.control.recv() => match c {
                    Some(c) => self.on_control(c),
                    // Every handle and session is gone.
                    None => break,
                },
                i = readable(&self.ports), if !steady => self.read(i, READS_PER_WAKE),
                Some(m) = self.media.recv() => match m {
                    Media::Frame(o) => self.on_send(o),
                    Media::Barrier(reply) => drop(reply.send(())),
                },
                _ = tokio::time::sleep_until(wake.into()) => {
                    if steady {
                        for i in 0..self.ports.len() {
                            self.read(i, READS_PER_TICK);
                        }
                    }
                }
            }
            let now = Instant::now();
            if now >= self.next_timer {
                self.run_timers(now);
            }
            self.release_due(now);
            self.flush(now);
            self.check_drained();
            if now.duration_since(self.drops_read) >= DROPS_EVERY {
                self.read_drops(now);
            }
            self.counts.wakes += 1;
            if now.duration_since(self.counts.since) >= COUNTS_EVERY {
                tracing::debug!(
                    sessions = self.entries.len(),
                    immediate = self.pacing.immediate(),
                    wakes = self.counts.wakes,
                    datagrams = self.counts.datagrams,
                    unrouted = self.counts.unrouted,
                    timers = self.counts.timers,
                    secs = COUNTS_EVERY.as_secs(),
                    "media loop"
                );
                self.counts = Counts::new();
            }
        }
        tracing::debug!(unrouted = self.counts.unrouted, "media loop ended");
    }

    /// Counts the datagrams the kernel dropped on our sockets since the last read (their
    /// receive buffers were full: the loop did not read them in time, or the buffer is small).
    fn read_drops(&mut self, now: Instant) {
        self.drops_read = now;
        for (port, last) in self.ports.iter().zip(&mut self.drops) {
            let Some(drops) = port.socket.drops() else {
                continue;
            };
            let new = drops.wrapping_sub(*last);
            *last = drops;
            if new > 0 {
                crate::metrics::udp_receive_drops(new.into());
                self.drops_unlogged += u64::from(new);
            }
        }
        let quiet = self
            .drops_logged
            .is_none_or(|t| now.duration_since(t) >= Duration::from_secs(60));
        if self.drops_unlogged > 0 && quiet {
            tracing::warn!(
                dropped = self.drops_unlogged,
                "the kernel dropped media datagrams for us: the UDP receive buffer was full"
            );
            self.drops_unlogged = 0;
            self.drops_logged = Some(now);
        }
    }

    /// Whether every session is batched: the loop's steady pace.
    fn steady(&self) -> bool {
        self.pacing.steady()
    }

    /// The grid timers are rounded up to: the tick in the steady pace.
    fn grid(&self) -> Duration {
        if self.steady() { TICK } else { TIMER_GRID }
    }

    /// Reads what is queued on port `i`, `batches` reads at most.
    fn read(&mut self, i: usize, batches: usize) {
        let now = Instant::now();
        for _ in 0..batches {
            let port = &self.ports[i];
            let mut it = self.bufs.iter_mut();
            let mut iovs: [IoSliceMut; BATCH] =
                std::array::from_fn(|_| IoSliceMut::new(it.next().expect("BATCH buffers")));
            let read = port.socket.recv(&port.state, &mut iovs, &mut self.metas);
            let n = match read {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) => {
                    tracing::debug!(error = %e, "UDP receive error");
                    return;
                }
            };
            for j in 0..n {
                let meta = self.metas[j];
                let data = std::mem::take(&mut self.bufs[j]);
                // A GRO read holds several datagrams of `stride` bytes (the last may be shorter).
                for datagram in data[..meta.len].chunks(meta.stride.max(1)) {
                    self.on_datagram(i, meta.addr, datagram, now);
                }
                self.bufs[j] = data;
            }
            if n < BATCH {
                return;
            }
        }
    }

    fn on_datagram(&mut self, port: usize, source: SocketAddr, data: &[u8], now: Instant) {
        self.counts.datagrams += 1;
        let Some(id) = self.routes.route(port, source, data) else {
            self.counts.unrouted += 1;
            return;
        };
        let destination = self.ports[port].advertised;
        let turn = match self.entries.get_mut(&id) {
            Some(e) => {
                let Ok(input) = Receive::new(Protocol::Udp, source, destination, data) else {
                    return; // not STUN/DTLS/RTP: a stray datagram
                };
                let rtc = &mut e.rtc;
                match catch_unwind(AssertUnwindSafe(|| {
                    rtc.input(|rtc| rtc.handle_input(Input::Receive(now, input)))
                })) {
                    Ok(Ok(())) => Ok(()),
                    // A bad packet (e.g. failed SRTP auth) is not the end of the session.
                    Ok(Err(e)) => {
                        tracing::debug!(error = %e, "str0m rejected a datagram");
                        Ok(())
                    }
                    Err(p) => Err(SessionEnd::panicked(p)),
                }
            }
            None => return,
        };
        self.after(id, turn, now);
    }

    /// Drains a session's output after an input, or ends it.
    fn after(&mut self, id: RtcId, turn: Turn, now: Instant) {
        let turn = turn.and_then(|()| self.drain(id, now));
        match turn {
            Ok(()) => {
                if let Some(e) = self.entries.get(&id) {
                    self.next_timer = self.next_timer.min(round_up(e.deadline, self.grid()));
                    self.schedule(id, now);
                }
            }
            Err(reason) => self.end(id, reason),
        }
    }

    /// Sends what str0m wants sent and queues its events, until it names its next timeout.
    fn drain(&mut self, id: RtcId, now: Instant) -> Turn {
        let Some(e) = self.entries.get_mut(&id) else {
            return Ok(());
        };
        // Keyframe requests are inputs too: made before polling, so the PLI leaves in this
        // drain and str0m's next timeout accounts for it (made after, they waited for the
        // session's next input or timer, with str0m's deadline already stale).
        if !e.keyframes.is_empty() {
            let rtc = &mut e.rtc;
            let keyframes = &mut e.keyframes;
            catch_unwind(AssertUnwindSafe(|| {
                rtc.input(|rtc| keyframes.retain(|&mid| !request_keyframe(rtc, mid)))
            }))
            .map_err(SessionEnd::panicked)?;
        }
        loop {
            let out = match catch_unwind(AssertUnwindSafe(|| e.rtc.poll_output())) {
                Ok(Ok(out)) => out,
                Ok(Err(err)) => return Err(SessionEnd::Str0m(err.to_string())),
                Err(p) => return Err(SessionEnd::panicked(p)),
            };
            match out {
                Output::Timeout(t) => {
                    // str0m says "far future" when idle; wake at least every second anyway.
                    e.deadline = t.min(now + Duration::from_secs(1));
                    break;
                }
                Output::Transmit(t) => {
                    let i = self
                        .ports
                        .iter()
                        .position(|p| p.advertised == t.source)
                        .unwrap_or(0);
                    if is_stun(&t.contents) {
                        // Our check goes there: its answer (no username) comes back from there.
                        self.routes.learn(i, t.destination, id);
                    }
                    if is_rtp_media(&t.contents) {
                        let held = Held {
                            port: i,
                            to: t.destination,
                            data: t.contents.into(),
                        };
                        e.spread.push(now, held);
                    } else {
                        send(&self.ports, i, t.destination, &t.contents);
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
                        Event::Closed => return Err(SessionEnd::PeerClosed),
                        other => {
                            tracing::trace!(event = ?other, "str0m event");
                            continue;
                        }
                    };
                    e.outbox.push(ev);
                }
            }
        }
        // What may go of the RTP just queued goes now, in the same turn.
        release(id, e, &self.ports, &mut self.releases, now);
        Ok(())
    }

    /// Sends the session's RTP whose turn has come; notes when the rest may go.
    fn release(&mut self, id: RtcId, now: Instant) {
        if let Some(e) = self.entries.get_mut(&id) {
            release(id, e, &self.ports, &mut self.releases, now);
        }
    }

    /// Sends the RTP of every session whose turn has come.
    fn release_due(&mut self, now: Instant) {
        let due: Vec<RtcId> = self
            .releases
            .iter()
            .filter(|&(_, &t)| t <= now)
            .map(|(&id, _)| id)
            .collect();
        for id in due {
            self.release(id, now);
        }
    }

    /// Puts a session with events in line: now while it sets up or when something other
    /// than a frame happened, else on its batch.
    fn schedule(&mut self, id: RtcId, now: Instant) {
        if let Some(e) = self.entries.get_mut(&id) {
            self.pacing.schedule(id, &mut e.outbox, now);
        }
    }

    /// Hands events over: the urgent ones now, the batched ones when their batch is due.
    fn flush(&mut self, now: Instant) {
        for id in self.pacing.flush(now, &mut self.entries) {
            // The session's task is gone (its handle was dropped).
            self.remove(id);
        }
    }

    /// Lets every session whose timer is due run it.
    fn run_timers(&mut self, now: Instant) {
        let due: Vec<RtcId> = self
            .entries
            .iter()
            .filter(|(_, e)| e.deadline <= now)
            .map(|(&id, _)| id)
            .collect();
        self.counts.timers += due.len() as u64;
        for id in due {
            let timeout = self.with_rtc(id, |rtc| {
                rtc.handle_input(Input::Timeout(now))
                    .map_err(|err| SessionEnd::Str0m(err.to_string()))
            });
            if let Some(turn) = timeout {
                self.after(id, turn, now);
            }
        }
        let earliest = self
            .entries
            .values()
            .map(|e| e.deadline)
            .min()
            .unwrap_or(now + Duration::from_secs(1));
        // Rounded up to the grid: sessions due close together share one wake-up.
        self.next_timer = round_up(earliest, self.grid());
    }

    fn on_control(&mut self, c: Control) {
        let now = Instant::now();
        match c {
            Control::Start(new) => {
                let NewSession {
                    id,
                    rtc,
                    ufrag,
                    events,
                } = *new;
                self.routes.add_session(id, &ufrag);
                self.pacing.added();
                self.entries.insert(
                    id,
                    Entry {
                        rtc: DrivenRtc::new(rtc),
                        events,
                        outbox: Outbox::default(),
                        deadline: now,
                        keyframes: Vec::new(),
                        send_pts: Vec::new(),
                        spread: Spread::new(now),
                    },
                );
                self.after(id, Ok(()), now);
            }
            Control::Candidate(id, c) => {
                let turn = self.with_rtc(id, |rtc| {
                    rtc.add_remote_candidate(c);
                    Ok(())
                });
                if let Some(turn) = turn {
                    self.after(id, turn, now);
                }
            }
            Control::Keyframe(id, mid) => {
                if let Some(e) = self.entries.get_mut(&id)
                    && !e.keyframes.contains(&mid)
                {
                    e.keyframes.push(mid);
                    self.after(id, Ok(()), now);
                }
            }
            Control::Batch(id, every) => {
                if let Some(e) = self.entries.get_mut(&id)
                    && e.outbox.set_batch(every)
                {
                    self.pacing.batched();
                }
            }
            Control::Take(id, reply) => {
                // Whatever waits on the sockets may be this session's: read it all first.
                for i in 0..self.ports.len() {
                    self.read(i, READS_PER_TICK);
                }
                self.pacing.forget(id);
                let events = self
                    .entries
                    .get_mut(&id)
                    .map(|e| e.outbox.take())
                    .unwrap_or_default();
                let _ = reply.send(events);
            }
            Control::Offer(id, sdp, reply) => {
                // What waits on the sockets came before the offer: it goes to str0m under the
                // old layout (a stream the offer removes may still have packets there).
                for i in 0..self.ports.len() {
                    self.read(i, READS_PER_TICK);
                }
                let mut answer = Err(super::RtcError::Dead);
                let turn = self.with_rtc(id, |rtc| {
                    answer = super::accept_offer(rtc, &sdp);
                    Ok(())
                });
                if let Some(turn) = turn {
                    if let Err(e) = &turn {
                        answer = Err(super::RtcError::Panicked(e.to_string()));
                    }
                    self.after(id, turn, now);
                }
                let _ = reply.send(answer);
            }
            Control::Close(id) => {
                // RTCP BYE / DTLS close_notify, best effort.
                let disconnected = self.with_rtc(id, |rtc| {
                    rtc.disconnect();
                    Ok(())
                });
                if let Some(Ok(())) = disconnected {
                    let _ = self.drain(id, now);
                }
                self.remove(id);
            }
        }
    }

    /// Gives a session's `Rtc` an input under the panic guard (the caller drains it after);
    /// None: no such session.
    fn with_rtc(&mut self, id: RtcId, f: impl FnOnce(&mut Rtc) -> Turn) -> Option<Turn> {
        let e = self.entries.get_mut(&id)?;
        let rtc = &mut e.rtc;
        Some(
            catch_unwind(AssertUnwindSafe(|| rtc.input(f)))
                .unwrap_or_else(|p| Err(SessionEnd::panicked(p))),
        )
    }

    /// str0m's rule, checked after every turn of the loop: no session may be left with an
    /// input not followed by a whole drain. A break of it is a bug in this module: in a debug
    /// build (every test) it panics, in a release build it is logged.
    fn check_drained(&self) {
        if let Some((id, _)) = self.entries.iter().find(|(_, e)| e.rtc.undrained()) {
            if cfg!(debug_assertions) {
                panic!("session {id:?} took an input without a drain after it");
            }
            tracing::error!(session = ?id, "a session took an input without a drain after it");
        }
    }

    fn on_send(&mut self, o: Outgoing) {
        let now = Instant::now();
        let Outgoing {
            id,
            mid,
            codec,
            wallclock,
            rtp_time,
            data,
        } = o;
        let Some(e) = self.entries.get_mut(&id) else {
            return;
        };
        let cached = e
            .send_pts
            .iter()
            .find(|(m, _)| *m == mid)
            .map(|&(_, pt)| pt);
        let rtc = &mut e.rtc;
        let written = catch_unwind(AssertUnwindSafe(|| {
            rtc.input(|rtc| {
                let writer = rtc.writer(mid)?;
                let pt = match cached {
                    Some(pt) => pt,
                    None => writer
                        .payload_params()
                        .find(|p| p.spec().codec == codec.to_str0m())
                        .map(|p| p.pt())?,
                };
                Some(writer.write(pt, wallclock, rtp_time, data).map(|()| pt))
            })
        }));
        let turn = match written {
            Ok(Some(Ok(pt))) => {
                if cached.is_none() {
                    e.send_pts.push((mid, pt));
                }
                Ok(())
            }
            Ok(Some(Err(err))) => {
                tracing::debug!(error = %err, %mid, "str0m did not send a frame");
                Ok(())
            }
            Ok(None) => {
                tracing::debug!(%mid, %codec, "no media to send this frame on");
                Ok(())
            }
            Err(p) => Err(SessionEnd::panicked(p)),
        };
        self.after(id, turn, now);
    }

    /// Ends a session: its task hears why, and nothing is called on its `Rtc` again.
    fn end(&mut self, id: RtcId, reason: SessionEnd) {
        if let Some(e) = self.entries.get_mut(&id) {
            e.outbox.push(RtcEvent::Failed(reason));
            // Best effort: if its queue is full, the task sees the channel close instead.
            e.outbox.hand_over(&e.events);
        }
        self.remove(id);
    }

    fn remove(&mut self, id: RtcId) {
        if let Some(e) = self.entries.remove(&id) {
            self.pacing.removed(id, &e.outbox);
            if e.outbox.dropped() > 0 {
                tracing::warn!(
                    dropped = e.outbox.dropped(),
                    "frames were dropped: the feed's task did not keep up"
                );
            }
        }
        self.routes.remove_session(id);
        self.pacing.forget(id);
        self.releases.remove(&id);
    }
}

/// Sends the session's RTP whose turn has come; notes in `releases` when the rest may go.
fn release(
    id: RtcId,
    e: &mut Entry,
    ports: &[Port],
    releases: &mut HashMap<RtcId, Instant>,
    now: Instant,
) {
    if e.spread.is_empty() {
        return;
    }
    match e
        .spread
        .release(now, |h| send(ports, h.port, h.to, &h.data))
    {
        Some(next) => releases.insert(id, next),
        None => releases.remove(&id),
    };
}

/// Sends a datagram from port `i`. UDP: a full socket buffer drops it, as the network would.
fn send(ports: &[Port], i: usize, to: SocketAddr, data: &[u8]) {
    if let Err(err) = ports[i].socket.send_to(data, to) {
        tracing::debug!(error = %err, len = data.len(), "UDP send failed");
    }
}

/// Asks the sender of `mid` for a keyframe with a PLI; false when str0m cannot yet.
fn request_keyframe(rtc: &mut Rtc, mid: Mid) -> bool {
    let Some(mut w) = rtc.writer(mid) else {
        return false;
    };
    w.is_request_keyframe_possible(KeyframeRequestKind::Pli)
        && w.request_keyframe(None, KeyframeRequestKind::Pli).is_ok()
}

/// The per-session channel of event batches.
pub(super) fn event_channel() -> (mpsc::Sender<Vec<RtcEvent>>, mpsc::Receiver<Vec<RtcEvent>>) {
    mpsc::channel(EVENT_BATCHES)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Grid instants are shared, always ahead of `now`.
    #[test]
    fn the_grid_is_shared_and_ahead() {
        for step in [TIMER_GRID, TICK] {
            let a = next_on_grid(Instant::now(), step);
            for later in [
                Duration::ZERO,
                Duration::from_millis(7),
                Duration::from_secs(86_400 * 1000),
            ] {
                let now = a + later;
                let t = next_on_grid(now, step);
                assert!(t > now && t - now <= step, "{later:?}");
                assert_eq!((t - a).as_nanos() % step.as_nanos(), 0, "{later:?}");
            }
        }
    }
}
