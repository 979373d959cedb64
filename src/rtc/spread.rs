//! Spreads a sending session's RTP over time, without IO: str0m (with no bandwidth
//! estimation, so with its null pacer) hands out every packet of a frame at once, and a
//! 1080p keyframe of 400-700 packets (or a 4K frame of 150) sent in one burst overflowed
//! Janus's UDP receive buffer (the kernel's default, 208 KiB: about 90 packets): at 12 Mb/s
//! 4,530 of 66,000 packets were dropped there, before Janus (its own recording has the same
//! holes), and the recording kept 120 of 407 frames (at 25 Mb/s 13-47 of 400). A browser
//! paces its packets the same way (libwebrtc at 2.5 times its target rate).
//!
//! A token bucket per session: the rate is the highest of [`FLOOR`], [`FACTOR`] times what the
//! session sent over the last second, and what sends the queued packets within
//! [`MAX_DELAY`]; up to [`BURST`] bytes go at once, so a webcam's frames (a few packets) are
//! never held. Only RTP media is spread: STUN, DTLS and RTCP go out at once.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// The slowest rate packets are spread at, in bytes a second (20 Mb/s: two full packets a
/// millisecond, which a receiver's default socket buffer takes without loss).
const FLOOR: f64 = 20e6 / 8.0;
/// The rate, as a multiple of what the session sent over the last second. libwebrtc uses 2.5;
/// lower leaves a receiver more time between reads (Janus reads each PeerConnection's socket
/// on a thread of its own, which a loaded machine may not run for tens of milliseconds: at
/// 2.5, an AV1 12 Mb/s run with a load average of 6 saw Janus drop 70 packets), and a
/// recording does not mind a keyframe taking a few hundred milliseconds more.
const FACTOR: f64 = 1.5;
/// Packets queued are sent within about this (a burst far above the recent rate speeds up).
/// Shorter sent an AV1 4K clip's first keyframe (3.4 MB, 2,900 packets) at 109 Mb/s (250 ms)
/// and Janus dropped 96-1,484 packets in two of three runs; libwebrtc's pacer lets its queue
/// grow to 2 s.
const MAX_DELAY: Duration = Duration::from_secs(1);
/// Bytes sent at once when the bucket is full (13 full packets).
const BURST: f64 = 16.0 * 1024.0;
/// The loop is woken again once this much may go (not for every packet).
const WAKE: f64 = 8.0 * 1024.0;
/// What the recent rate is measured over: two halves of a second.
const HALF: Duration = Duration::from_millis(500);
/// The span a new (or idle) session's rate is measured over at least: its first frames are
/// not taken for a rate (a first keyframe of 800 KB measured over 100 ms went out at 160 Mb/s, and
/// Janus's socket dropped 64 of its packets).
const SHORTEST: Duration = Duration::from_secs(1);

/// Whether a datagram is RTP media (not STUN, DTLS or RTCP), by its first two bytes
/// (RFC 7983; RTCP's packet types 192-223 per RFC 5761). SRTP leaves them in the clear.
pub(super) fn is_rtp_media(datagram: &[u8]) -> bool {
    match datagram {
        [first, second, ..] => (128..=191).contains(first) && !(64..=95).contains(&(second & 0x7f)),
        _ => false,
    }
}

/// A datagram waiting for its turn: the socket (by index) it leaves from and where to.
#[derive(Debug)]
pub(super) struct Held {
    pub port: usize,
    pub to: SocketAddr,
    pub data: Vec<u8>,
}

/// One session's queue of RTP to send and its token bucket.
#[derive(Debug)]
pub(super) struct Spread {
    queue: VecDeque<Held>,
    queued_bytes: usize,
    /// Bytes that may go now (negative: owed by the last packet sent).
    tokens: f64,
    refilled: Instant,
    /// Bytes queued in the current half second and the one before (None: none was, the
    /// session is new or was idle), and when the current one began.
    current: usize,
    previous: Option<usize>,
    half_began: Instant,
}

impl Spread {
    pub(super) fn new(now: Instant) -> Spread {
        Spread {
            queue: VecDeque::new(),
            queued_bytes: 0,
            tokens: BURST,
            refilled: now,
            current: 0,
            previous: None,
            half_began: now,
        }
    }

    /// Queues a datagram; [`Spread::release`] sends it when its turn comes.
    pub(super) fn push(&mut self, now: Instant, held: Held) {
        self.roll(now);
        self.current += held.data.len();
        self.queued_bytes += held.data.len();
        self.queue.push_back(held);
    }

    pub(super) fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }

    /// Hands every datagram whose turn has come to `send`; when the next may go, if any is
    /// left.
    pub(super) fn release(&mut self, now: Instant, mut send: impl FnMut(Held)) -> Option<Instant> {
        self.roll(now);
        let rate = self.rate(now);
        let elapsed = now.saturating_duration_since(self.refilled).as_secs_f64();
        self.tokens = (self.tokens + elapsed * rate).min(BURST);
        self.refilled = now;
        while self.tokens > 0.0 {
            let Some(held) = self.queue.pop_front() else {
                break;
            };
            self.tokens -= held.data.len() as f64;
            self.queued_bytes -= held.data.len();
            send(held);
        }
        if self.queue.is_empty() {
            return None;
        }
        let wanted = WAKE.min(self.queued_bytes as f64) - self.tokens;
        Some(now + Duration::from_secs_f64(wanted.max(1.0) / rate))
    }

    /// Bytes a second the queue is sent at now.
    fn rate(&self, now: Instant) -> f64 {
        let current = now.saturating_duration_since(self.half_began);
        let (bytes, span) = match self.previous {
            Some(previous) => (previous + self.current, HALF + current),
            None => (self.current, current.max(SHORTEST)),
        };
        let recent = bytes as f64 / span.as_secs_f64();
        let drain = self.queued_bytes as f64 / MAX_DELAY.as_secs_f64();
        FLOOR.max(FACTOR * recent).max(drain)
    }

    /// Starts a new half second when the current one is over.
    fn roll(&mut self, now: Instant) {
        let since = now.saturating_duration_since(self.half_began);
        if since >= HALF {
            self.previous = (since < 2 * HALF).then_some(self.current);
            self.current = 0;
            self.half_began = now;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn packet(len: usize) -> Held {
        Held {
            port: 0,
            to: "10.0.0.1:5000".parse().unwrap(),
            data: vec![0x80; len],
        }
    }

    /// Sends `frames` frames of `packets` packets of 1,200 bytes, one every 50 ms, releasing
    /// whenever the spread asks to be woken (and at each frame); returns each packet's delay
    /// and the largest number of bytes sent within `window`.
    fn run(frames: usize, packets: usize, window: Duration) -> (Vec<Duration>, usize) {
        let start = Instant::now();
        let mut s = Spread::new(start);
        let mut sent: Vec<(Instant, Instant)> = Vec::new();
        let mut queued_at: VecDeque<Instant> = VecDeque::new();
        let mut wake: Option<Instant> = None;
        for f in 0..frames {
            let frame_at = start + Duration::from_millis(50 * f as u64);
            while let Some(now) = wake.filter(|&w| w < frame_at) {
                wake = s.release(now, |_| sent.push((queued_at.pop_front().unwrap(), now)));
            }
            let now = frame_at;
            for _ in 0..packets {
                s.push(now, packet(1200));
                queued_at.push_back(now);
            }
            wake = s.release(now, |_| sent.push((queued_at.pop_front().unwrap(), now)));
        }
        while let Some(now) = wake {
            wake = s.release(now, |_| sent.push((queued_at.pop_front().unwrap(), now)));
        }
        assert_eq!(sent.len(), frames * packets);
        let delays = sent.iter().map(|(q, s)| *s - *q).collect();
        let mut most = 0;
        for (i, (_, at)) in sent.iter().enumerate() {
            let within = sent[i..]
                .iter()
                .take_while(|(_, t)| *t < *at + window)
                .count();
            most = most.max(within * 1200);
        }
        (delays, most)
    }

    /// A webcam's frames (three packets) go at once.
    #[test]
    fn small_frames_are_not_held() {
        let (delays, _) = run(40, 3, Duration::from_millis(1));
        assert!(delays.iter().all(|d| d.is_zero()), "{delays:?}");
    }

    /// 150-packet frames 20 times a second (a 4K camera at 29 Mb/s) are spread: no more than
    /// the burst and a millisecond of 1.5 times the rate in any millisecond; once the rate is
    /// known (after a second), every packet out within the frame's 50 ms.
    #[test]
    fn large_frames_are_spread_within_the_frame_interval() {
        let (delays, most) = run(60, 150, Duration::from_millis(1));
        let steady = &delays[20 * 150..];
        let worst = steady.iter().max().unwrap();
        assert!(*worst < Duration::from_millis(50), "{worst:?}");
        let worst = delays.iter().max().unwrap();
        assert!(*worst <= MAX_DELAY, "{worst:?}");
        assert!(most < 28 * 1024, "{most} bytes in a millisecond");
    }

    /// A burst far above the recent rate (a 600-packet keyframe after silence) goes within
    /// twice MAX_DELAY (the rate falls as the queue drains, to the floor), and not faster
    /// than the floor or the longest delay asks (no more than 50 packets in 10 ms).
    #[test]
    fn a_sudden_burst_goes_within_the_longest_delay() {
        let (delays, most) = run(1, 600, Duration::from_millis(10));
        let worst = delays.iter().max().unwrap();
        assert!(*worst <= MAX_DELAY * 2, "{worst:?}");
        assert!(most <= 50 * 1200, "{most} bytes in 10 ms");
    }

    #[test]
    fn only_rtp_media_is_spread() {
        let rtp = [0x80, 96, 0, 1];
        let rtp_marker = [0x80, 96 | 0x80, 0, 1];
        let sr = [0x80, 200, 0, 6];
        let rr = [0x81, 201, 0, 7];
        let stun = [0x00, 0x01, 0, 0];
        let dtls = [22, 0xfe, 0xfd];
        assert!(is_rtp_media(&rtp) && is_rtp_media(&rtp_marker));
        for other in [&sr[..], &rr, &stun, &dtls, &[0x80]] {
            assert!(!is_rtp_media(other), "{other:?}");
        }
    }
}
