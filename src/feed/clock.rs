//! When each frame happened, on one clock for every track of every feed: the room clock.
//!
//! A track's RTP clock starts at a random value and runs at the media's rate; what is needed
//! is its offset to real time. Three sources give it, best first:
//!
//! - **capture time**: the abs-capture-time RTP extension, the publisher's own capture clock
//!   on each frame (negotiated in our answer; Janus copies it through since janus-gateway
//!   PR 3161, which Janus 1.1.2 predates, so today it never comes from that version).
//! - **sender reports**: Janus's RTCP sender reports map the track's RTP time to Janus's
//!   wall clock. Janus makes them up from when it forwarded its newest packet, so each one is
//!   "arrival at Janus" plus that packet's delay; the least offset over the recent reports is
//!   the least delayed packet. Every feed of one Janus shares that clock.
//! - **arrival**: our own wall clock at each frame's arrival, the least offset over a window
//!   of frames (one packet's delay is noise; the least delay seen is the path's own).
//!
//! An audio packet leaves only once all of its samples were captured: its RTP time names the
//! first, so its length is taken off the arrival (and report) times before they are compared.
//! Offsets only move by filtering, so a track stays continuous; an RTP jump (a new SSRC, an
//! encoder restart: the offset moves by more than [`REANCHOR_AFTER`]) starts the estimate
//! again from that frame, logged once and then counted per [`JUMP_REPORT_EVERY`].
//! Times are nanoseconds since the Unix epoch (`i128`).

use std::collections::VecDeque;
use std::fmt;
use std::time::{Duration, SystemTime};

/// How far a new offset sample may lie from the estimate before the track is taken to have
/// jumped (rather than drifted) and is re-anchored on it.
pub const REANCHOR_AFTER: Duration = Duration::from_secs(5);
/// How long before its arrival a frame's abs-capture-time may be and still be believed (the
/// path's delay), and [`CAPTURE_AHEAD`] how long after. The publisher chooses it: without a
/// bound it could pin its track, and its file's name and `started_at`, to 1900 or to a
/// century ahead. A frame whose capture time is outside is placed as if it had none.
pub const CAPTURE_BEHIND: Duration = Duration::from_secs(5);
/// See [`CAPTURE_BEHIND`]: clocks a little ahead of ours are forgiven.
pub const CAPTURE_AHEAD: Duration = Duration::from_secs(1);
/// How often further clock jumps of one track are summed up in the log.
pub const JUMP_REPORT_EVERY: Duration = Duration::from_secs(60);
/// How long a track's first frames wait for a sender report before arrival time is used.
pub const WAIT_FOR_SENDER_REPORT: Duration = Duration::from_millis(3_000);
/// Sender reports whose least offset is the estimate (Janus sends about one a second).
const SR_WINDOW: usize = 10;
/// The arrival window whose least offset is the estimate.
const ARRIVAL_WINDOW: Duration = Duration::from_secs(10);

/// Which clock placed a track.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClockSource {
    CaptureTime,
    SenderReport,
    Arrival,
}

impl fmt::Display for ClockSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ClockSource::CaptureTime => "capture-time",
            ClockSource::SenderReport => "sender-report",
            ClockSource::Arrival => "arrival",
        })
    }
}

/// Nanoseconds since the Unix epoch of a wall-clock time.
pub fn unix_nanos(t: SystemTime) -> i128 {
    match t.duration_since(SystemTime::UNIX_EPOCH) {
        Ok(d) => d.as_nanos() as i128,
        Err(e) => -(e.duration().as_nanos() as i128),
    }
}

/// The wall-clock time of nanoseconds since the Unix epoch.
pub fn system_time(nanos: i128) -> SystemTime {
    let magnitude = Duration::from_nanos(nanos.unsigned_abs().min(u64::MAX as u128) as u64);
    if nanos >= 0 {
        SystemTime::UNIX_EPOCH + magnitude
    } else {
        SystemTime::UNIX_EPOCH - magnitude
    }
}

/// A sender report: an NTP time and the 32-bit RTP time of the same instant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SenderReport {
    pub ntp_nanos: i128,
    pub rtp: u32,
}

/// What is known of one frame's time.
#[derive(Debug, Clone, Copy)]
pub struct FrameTiming {
    /// Extended RTP time (str0m carries it past the 32-bit wrap).
    pub rtp: u64,
    pub rate: u32,
    /// Our wall clock when it arrived.
    pub arrival_nanos: i128,
    /// The latest sender report of its stream, if one came yet.
    pub sender_report: Option<SenderReport>,
    /// abs-capture-time, if the frame carries it.
    pub capture_nanos: Option<i128>,
    /// How much media the frame holds when it can only be sent once all of it was captured
    /// (an audio packet: its first sample, which its RTP time names, was captured that long
    /// before the packet could leave); 0 for video, sent as soon as a picture is encoded.
    pub duration_nanos: i128,
}

impl FrameTiming {
    fn rtp_nanos(&self) -> i128 {
        i128::from(self.rtp) * 1_000_000_000 / i128::from(self.rate.max(1))
    }

    /// Our wall clock when the frame's first sample was captured, but for the path's delay.
    fn sent_for_arrival(&self) -> i128 {
        self.arrival_nanos - self.duration_nanos
    }

    /// The offset (real time minus RTP time) this frame's sender report gives.
    fn sender_report_offset(&self) -> Option<(i128, i128)> {
        let sr = self.sender_report?;
        // The report's RTP time, extended next to this frame's (they are close: the report
        // is the stream's latest).
        let delta = (self.rtp as u32).wrapping_sub(sr.rtp) as i32;
        let sr_rtp = i128::from(self.rtp) - i128::from(delta);
        let sr_rtp_nanos = sr_rtp * 1_000_000_000 / i128::from(self.rate.max(1));
        // Janus's report stands for when its newest packet came, which for audio is a
        // packet's length after that packet's RTP time was captured.
        Some((
            sr.ntp_nanos,
            sr.ntp_nanos - self.duration_nanos - sr_rtp_nanos,
        ))
    }
}

/// Maps one track's RTP times to the room clock.
#[derive(Debug, Default)]
pub struct TrackClock {
    source: Option<ClockSource>,
    /// When the track's first frame arrived (the wait for a sender report runs from it).
    first_arrival: Option<i128>,
    /// Offsets of the recent sender reports, newest last, keyed by their NTP time.
    reports: VecDeque<(i128, i128)>,
    /// (arrival, offset) of recent frames whose offset is a new least, for the sliding least.
    arrivals: VecDeque<(i128, i128)>,
    /// The capture-time offset of the latest frame that had one.
    capture: Option<i128>,
    /// The last time handed out; the next is never earlier.
    last: Option<i128>,
    jumps: JumpLog,
    /// A capture time out of bounds was seen (and logged) already.
    distrusted: bool,
    /// No sender report will come (RTP forwarders): arrival is decided at the first frame
    /// rather than after [`WAIT_FOR_SENDER_REPORT`] of frames held for nothing.
    no_reports: bool,
}

impl TrackClock {
    /// A clock for a track that gets no sender reports (see [`TrackClock::no_reports`]).
    pub fn without_sender_reports() -> TrackClock {
        TrackClock {
            no_reports: true,
            ..TrackClock::default()
        }
    }

    /// Takes in what one frame tells about the clocks (call for every frame, also for those
    /// held back while the source is not decided).
    pub fn observe(&mut self, f: &FrameTiming) {
        self.first_arrival.get_or_insert(f.arrival_nanos);
        if let Some(c) = f.capture_nanos {
            let before_arrival = f.arrival_nanos - c;
            let behind = CAPTURE_BEHIND.as_nanos() as i128;
            let ahead = CAPTURE_AHEAD.as_nanos() as i128;
            if (-ahead..=behind).contains(&before_arrival) {
                self.capture = Some(c - f.rtp_nanos());
            } else if !self.distrusted {
                self.distrusted = true;
                tracing::warn!(
                    off_ms = (before_arrival / 1_000_000) as i64,
                    "abs-capture-time far from the arrival time: not believed"
                );
            }
        }
        if let Some((ntp, offset)) = f.sender_report_offset()
            && self.reports.back().is_none_or(|&(last, _)| last != ntp)
        {
            if self.source == Some(ClockSource::SenderReport)
                && let Some(current) = least(&self.reports)
                && (offset - current).abs() > REANCHOR_AFTER.as_nanos() as i128
            {
                self.jumps
                    .jumped(f.arrival_nanos, (offset - current) / 1_000_000);
                self.reports.clear();
            }
            let after_ms = self
                .first_arrival
                .map(|a| (f.arrival_nanos - a) / 1_000_000);
            tracing::trace!(?after_ms, offset_us = offset / 1000, "sender report");
            self.reports.push_back((ntp, offset));
            if self.reports.len() > SR_WINDOW {
                self.reports.pop_front();
            }
        }
        let offset = f.sent_for_arrival() - f.rtp_nanos();
        if self.source == Some(ClockSource::Arrival)
            && let Some(current) = self.arrivals.front().map(|a| a.1)
            && (offset - current).abs() > REANCHOR_AFTER.as_nanos() as i128
        {
            self.jumps
                .jumped(f.arrival_nanos, (offset - current) / 1_000_000);
            self.arrivals.clear();
        }
        // A monotonic deque: the front holds the least offset of the window.
        while self.arrivals.back().is_some_and(|&(_, o)| o >= offset) {
            self.arrivals.pop_back();
        }
        self.arrivals.push_back((f.arrival_nanos, offset));
        let window = ARRIVAL_WINDOW.as_nanos() as i128;
        while self
            .arrivals
            .front()
            .is_some_and(|&(at, _)| f.arrival_nanos - at > window)
            && self.arrivals.len() > 1
        {
            self.arrivals.pop_front();
        }
    }

    /// The source, deciding it if it can be: capture time or a sender report once there is
    /// one, arrival once a track has waited [`WAIT_FOR_SENDER_REPORT`] (at `now`) without,
    /// or when `force`d (the feed is ending). Once decided it stays.
    pub fn decide(&mut self, now_nanos: i128, force: bool) -> Option<ClockSource> {
        if self.source.is_none() {
            let waited = self
                .first_arrival
                .is_some_and(|a| now_nanos - a >= WAIT_FOR_SENDER_REPORT.as_nanos() as i128);
            self.source = if self.capture.is_some() {
                Some(ClockSource::CaptureTime)
            } else if !self.reports.is_empty() {
                Some(ClockSource::SenderReport)
            } else if (waited || force || self.no_reports) && self.first_arrival.is_some() {
                Some(ClockSource::Arrival)
            } else {
                None
            };
        }
        self.source
    }

    /// The decided source, if it is.
    pub fn source(&self) -> Option<ClockSource> {
        self.source
    }

    /// Where a frame goes on the room clock (nanoseconds since the epoch); never before the
    /// track's previous frame. Call [`TrackClock::observe`] with it first, and only once a
    /// source is decided.
    pub fn place(&mut self, f: &FrameTiming) -> i128 {
        let offset = match self.source {
            Some(ClockSource::CaptureTime) => self.capture,
            Some(ClockSource::SenderReport) => least(&self.reports),
            _ => None,
        }
        .or_else(|| self.arrivals.front().map(|a| a.1))
        .unwrap_or(f.sent_for_arrival() - f.rtp_nanos());
        let t = f.rtp_nanos() + offset;
        let t = self.last.map_or(t, |l| t.max(l));
        self.last = Some(t);
        t
    }
}

fn least(reports: &VecDeque<(i128, i128)>) -> Option<i128> {
    reports.iter().map(|r| r.1).min()
}

/// Rate-limits the log of one track's clock jumps: the first in full, then a count.
#[derive(Debug, Clone, Default)]
struct JumpLog {
    /// When the current reporting window began (the first jump, or the last count logged).
    since: Option<i128>,
    /// Jumps in the current window not logged yet.
    unreported: u64,
}

impl JumpLog {
    fn jumped(&mut self, at: i128, drift_ms: i128) {
        let Some(since) = self.since else {
            tracing::warn!(
                drift_ms,
                "RTP clock jumped; re-anchoring the track (further jumps are counted once a \
                 minute)"
            );
            self.since = Some(at);
            return;
        };
        self.unreported += 1;
        if at - since >= JUMP_REPORT_EVERY.as_nanos() as i128 {
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

#[cfg(test)]
mod tests {
    use super::*;

    const MS: i128 = 1_000_000;
    const T0: i128 = 1_764_000_000_000 * MS;

    fn frame(rtp: u64, rate: u32, arrival_ms: i128) -> FrameTiming {
        FrameTiming {
            rtp,
            rate,
            arrival_nanos: T0 + arrival_ms * MS,
            sender_report: None,
            capture_nanos: None,
            duration_nanos: 0,
        }
    }

    fn placed_ms(c: &mut TrackClock, f: FrameTiming) -> i128 {
        c.observe(&f);
        c.decide(f.arrival_nanos, true).expect("decided");
        (c.place(&f) - T0) / MS
    }

    /// Arrival: the least delay over the window, not the first packet's.
    #[test]
    fn arrival_uses_the_least_delay_seen() {
        let mut c = TrackClock::default();
        // 50 audio frames, 20 ms apart; the first arrives 30 ms late, one 2 ms late.
        let delays = |i: u64| {
            if i == 0 {
                30
            } else if i == 25 {
                2
            } else {
                10
            }
        };
        for i in 0..50u64 {
            c.observe(&frame(960 * i, 48_000, 20 * i as i128 + delays(i)));
        }
        let now = T0 + 3_500 * MS;
        assert_eq!(c.decide(now, false), Some(ClockSource::Arrival));
        // Frame 10 (sent at 200 ms) lands at 202: the least delay, not the first one's 30.
        assert_eq!((c.place(&frame(9_600, 48_000, 215)) - T0) / MS, 202);
    }

    /// A sender report decides the source at once; its offset wins over arrival's.
    #[test]
    fn sender_reports_map_rtp_to_janus_clock_least_delay_first() {
        let mut c = TrackClock::default();
        let rate = 90_000;
        let sr = |ntp_ms: i128, rtp: u64| SenderReport {
            ntp_nanos: T0 + ntp_ms * MS,
            rtp: rtp as u32,
        };
        let mut f = frame(900_000, rate, 150);
        assert_eq!(c.decide(f.arrival_nanos, false), None);
        // Janus says RTP 900_000 was at 100 ms (its newest packet left 5 ms late).
        f.sender_report = Some(sr(105, 900_000));
        assert_eq!(placed_ms(&mut c, f), 105);
        // A later report with less delay lowers the estimate; one with more does not raise it.
        let mut g = frame(900_000 + 90_000, rate, 1_150);
        g.sender_report = Some(sr(1_101, 900_000 + 90_000));
        assert_eq!(placed_ms(&mut c, g), 1_101);
        let mut h = frame(900_000 + 180_000, rate, 2_150);
        h.sender_report = Some(sr(2_140, 900_000 + 180_000));
        assert_eq!(placed_ms(&mut c, h), 2_101);
        assert_eq!(c.source, Some(ClockSource::SenderReport));
    }

    /// A report's 32-bit RTP time is extended next to the frame's, across the wrap.
    #[test]
    fn sender_reports_across_the_rtp_wrap() {
        let mut c = TrackClock::default();
        let before_wrap = (1u64 << 32) - 9_000;
        let mut f = frame(before_wrap + 18_000, 90_000, 300);
        f.sender_report = Some(SenderReport {
            ntp_nanos: T0 + 100 * MS,
            rtp: before_wrap as u32,
        });
        // 18_000 ticks (200 ms) after the report.
        assert_eq!(placed_ms(&mut c, f), 300);
    }

    /// An audio packet leaves once its last sample is captured: a 20 ms packet is placed
    /// 20 ms before its arrival.
    #[test]
    fn an_audio_packets_length_is_taken_off_its_arrival() {
        let mut c = TrackClock::default();
        let mut f = frame(48_000, 48_000, 1_025);
        f.duration_nanos = 20 * MS;
        assert_eq!(placed_ms(&mut c, f), 1_005);
    }

    #[test]
    fn without_a_report_arrival_is_used_after_the_wait_and_times_never_go_back() {
        let mut c = TrackClock::default();
        let f = frame(0, 48_000, 0);
        c.observe(&f);
        assert_eq!(c.decide(f.arrival_nanos, false), None);
        let wait = WAIT_FOR_SENDER_REPORT.as_millis() as i128;
        assert_eq!(c.decide(T0 + wait * MS, false), Some(ClockSource::Arrival));
        assert_eq!((c.place(&f) - T0) / MS, 0);
        // A reordered older frame: clamped to the last time.
        assert_eq!(placed_ms(&mut c, frame(48_000, 48_000, 1_000)), 1_000);
        assert_eq!(placed_ms(&mut c, frame(47_040, 48_000, 1_005)), 1_000);
    }

    /// Without sender reports to wait for, arrival is the source from the first frame.
    #[test]
    fn a_track_without_reports_uses_arrival_at_once() {
        let mut c = TrackClock::without_sender_reports();
        assert_eq!(c.decide(T0, false), None, "no frame yet");
        let f = frame(0, 48_000, 0);
        c.observe(&f);
        assert_eq!(c.decide(f.arrival_nanos, false), Some(ClockSource::Arrival));
    }

    #[test]
    fn a_jump_reanchors_and_a_pause_stays_a_pause() {
        let mut c = TrackClock::default();
        assert_eq!(placed_ms(&mut c, frame(500_000, 90_000, 0)), 0);
        // Nothing for 3 s, then the sender resumes; its RTP clock ran on.
        assert_eq!(
            placed_ms(&mut c, frame(500_000 + 4 * 90_000, 90_000, 4_000)),
            4_000
        );
        // Encoder restart: RTP time leaps back by an hour at 6 s.
        assert_eq!(placed_ms(&mut c, frame(10, 90_000, 6_000)), 6_000);
        assert_eq!(placed_ms(&mut c, frame(90_010, 90_000, 7_001)), 7_000);
    }

    /// A publisher's abs-capture-time far from the arrival (a century ahead, or 1900) is not
    /// believed: the track is placed by its arrival.
    #[test]
    fn capture_times_far_from_arrival_are_ignored() {
        let century = 100 * 365 * 86_400 * 1_000 * MS;
        for capture in [T0 + century, T0 - century, T0 + 80 * MS + 2_000 * MS] {
            let mut c = TrackClock::default();
            let mut f = frame(0, 90_000, 80);
            f.capture_nanos = Some(capture);
            assert_eq!(placed_ms(&mut c, f), 80);
            assert_eq!(c.source, Some(ClockSource::Arrival));
        }
    }

    #[test]
    fn capture_time_wins_when_present() {
        let mut c = TrackClock::default();
        let mut f = frame(0, 90_000, 80);
        f.capture_nanos = Some(T0 + 10 * MS);
        assert_eq!(placed_ms(&mut c, f), 10);
        assert_eq!(c.source, Some(ClockSource::CaptureTime));
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
        let mut v = TrackClock::default();
        tracing::subscriber::with_default(subscriber, || {
            // 150 s of 20 fps video whose RTP time flips between two far-apart origins.
            for i in 0..3000u64 {
                let origin = if i % 2 == 0 { 0 } else { 90_000 * 3600 };
                let f = frame(origin + 4_500 * i, 90_000, 50 * i as i128);
                v.observe(&f);
                v.decide(f.arrival_nanos, true);
                v.place(&f);
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
