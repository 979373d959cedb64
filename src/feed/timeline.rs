//! One timeline for all tracks of a recording.
//!
//! Each track's RTP clock starts at a random value, so tracks are aligned by arrival: a
//! track's first frame is placed at its arrival time (relative to the recording's zero, the
//! first frame of any track), and every later frame at that point plus the RTP time elapsed
//! since (str0m extends RTP timestamps across the 32-bit wraparound). A pause in the media
//! therefore stays a pause: the sender's RTP clock keeps running while nothing is sent.
//!
//! If a track's RTP clock jumps (a publisher restarting its encoder), the RTP-derived time and
//! the arrival time disagree; past [`REANCHOR_AFTER`] the track is re-anchored on arrival.
//! A publisher whose clock jumps back and forth would do that on every frame, so the first
//! jump is logged and then only a count per [`JUMP_REPORT_EVERY`].

use std::time::{Duration, Instant};

/// How far RTP time may drift from arrival time before the track is re-anchored.
pub const REANCHOR_AFTER: Duration = Duration::from_secs(5);
/// How often further clock jumps of one track are summed up in the log.
pub const JUMP_REPORT_EVERY: Duration = Duration::from_secs(60);

#[derive(Debug, Clone, Copy)]
struct Anchor {
    /// RTP time (in clock ticks) of the anchoring frame.
    rtp: u64,
    /// Its place on the recording's timeline, in nanoseconds.
    at_nanos: i128,
}

/// Maps one track's RTP times to times on the recording's timeline.
#[derive(Debug, Clone, Default)]
pub struct TrackClock {
    anchor: Option<Anchor>,
    /// The last time handed out; the next is never earlier.
    last: Duration,
    jumps: JumpLog,
}

/// Rate-limits the log of one track's clock jumps: the first in full, then a count.
#[derive(Debug, Clone, Default)]
struct JumpLog {
    /// When the current reporting window began (the first jump, or the last count logged).
    since: Option<Instant>,
    /// Jumps in the current window not logged yet.
    unreported: u64,
}

impl JumpLog {
    fn jumped(&mut self, at: Instant, drift_ms: i128) {
        let Some(since) = self.since else {
            tracing::warn!(
                drift_ms,
                "RTP clock jumped; re-anchoring the track on arrival time (further jumps are \
                 counted once a minute)"
            );
            self.since = Some(at);
            return;
        };
        self.unreported += 1;
        if at.saturating_duration_since(since) >= JUMP_REPORT_EVERY {
            tracing::warn!(
                jumps = self.unreported,
                last_drift_ms = drift_ms,
                "RTP clock jumped again; re-anchored each time"
            );
            self.since = Some(at);
            self.unreported = 0;
        }
    }
}

impl TrackClock {
    /// Where a frame with RTP time `rtp` (ticks of `clock_rate` Hz) that arrived at `arrival`
    /// goes on the timeline that started at `zero`.
    pub fn place(
        &mut self,
        rtp: u64,
        clock_rate: u32,
        arrival: Instant,
        zero: Instant,
    ) -> Duration {
        let arrival_nanos = arrival.saturating_duration_since(zero).as_nanos() as i128;
        let rate = i128::from(clock_rate.max(1));
        let from_rtp =
            |a: Anchor| a.at_nanos + (rtp as i128 - a.rtp as i128) * 1_000_000_000 / rate;
        let anchor = *self.anchor.get_or_insert(Anchor {
            rtp,
            at_nanos: arrival_nanos,
        });
        let mut t = from_rtp(anchor);
        if (t - arrival_nanos).abs() > REANCHOR_AFTER.as_nanos() as i128 {
            self.jumps.jumped(arrival, (t - arrival_nanos) / 1_000_000);
            let a = Anchor {
                rtp,
                at_nanos: arrival_nanos,
            };
            self.anchor = Some(a);
            t = from_rtp(a);
        }
        let t = Duration::from_nanos(t.max(0) as u64).max(self.last);
        self.last = t;
        t
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(d: Duration) -> u128 {
        d.as_millis()
    }

    #[test]
    fn tracks_align_on_arrival_and_follow_rtp() {
        let zero = Instant::now();
        let mut audio = TrackClock::default();
        let mut video = TrackClock::default();
        // Audio starts at an arbitrary RTP value, arrives first.
        assert_eq!(ms(audio.place(1_000_000, 48_000, zero, zero)), 0);
        // Video's first frame arrives 120 ms later.
        let v0 = zero + Duration::from_millis(120);
        assert_eq!(ms(video.place(7_777, 90_000, v0, zero)), 120);
        // 1 s of RTP time later, whatever the jitter in arrival.
        let late = zero + Duration::from_millis(1_180);
        assert_eq!(ms(audio.place(1_048_000, 48_000, late, zero)), 1000);
        assert_eq!(ms(video.place(7_777 + 90_000, 90_000, late, zero)), 1120);
    }

    #[test]
    fn a_pause_stays_a_pause() {
        let zero = Instant::now();
        let mut audio = TrackClock::default();
        audio.place(0, 48_000, zero, zero);
        // Nothing for 3 s, then the sender resumes; its RTP clock ran on.
        let t = audio.place(48_000 * 4, 48_000, zero + Duration::from_secs(4), zero);
        assert_eq!(ms(t), 4000);
    }

    #[test]
    fn wraparound_is_continuous() {
        // str0m hands out extended (64-bit) RTP times; just past 2^32 is just later.
        let zero = Instant::now();
        let mut v = TrackClock::default();
        let before = (1u64 << 32) - 45_000;
        v.place(before, 90_000, zero, zero);
        let t = v.place(before + 90_000, 90_000, zero + Duration::from_secs(1), zero);
        assert_eq!(ms(t), 1000);
    }

    #[test]
    fn jumps_reanchor_and_time_never_goes_back() {
        let zero = Instant::now();
        let mut v = TrackClock::default();
        v.place(500_000, 90_000, zero, zero);
        // Encoder restart: RTP time leaps back by an hour at 2 s.
        let t = v.place(10, 90_000, zero + Duration::from_secs(2), zero);
        assert_eq!(ms(t), 2000);
        // Reordered older frame: clamped to the last time.
        let t2 = v.place(5, 90_000, zero + Duration::from_millis(2_010), zero);
        assert_eq!(ms(t2), 2000);
    }

    /// A log sink for one test.
    #[derive(Clone, Default)]
    struct Captured(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

    impl std::io::Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_clock_jumping_on_every_frame_is_logged_once_then_counted() {
        let log = Captured::default();
        let sink = log.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || sink.clone())
            .with_ansi(false)
            .finish();
        let zero = Instant::now();
        let mut v = TrackClock::default();
        tracing::subscriber::with_default(subscriber, || {
            // 150 s of 20 fps video whose RTP time flips between two far-apart origins.
            for i in 0..3000u64 {
                let origin = if i % 2 == 0 { 0 } else { 90_000 * 3600 };
                let arrival = zero + Duration::from_millis(50 * i);
                v.place(origin + 4_500 * i, 90_000, arrival, zero);
            }
        });
        let text = String::from_utf8(log.0.lock().unwrap().clone()).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        // The first jump, then a count at 60 s and at 120 s.
        assert_eq!(lines.len(), 3, "{text}");
        assert!(
            lines[0].contains("RTP clock jumped; re-anchoring"),
            "{text}"
        );
        assert!(lines[1].contains("jumps=1200"), "{text}");
        assert!(lines[2].contains("jumps=1200"), "{text}");
    }
}
