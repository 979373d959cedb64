//! When the media loop hands events to the sessions' tasks, without IO: each session's
//! [`Outbox`] (its pending events, its batch period, when they are due, whether one is
//! urgent), and the loop's [`Pacing`] (which outboxes go now, when the next batch is due,
//! whether every session is batched: the loop's steady pace).
//!
//! A session setting up, or one whose events include something other than a frame, is
//! handed its events at the end of the loop's turn; a batched session with only frames
//! waits for its batch, on its own grid. A task that does not keep up has its events held;
//! past [`MAX_HELD`] the oldest frames are dropped, never the other events.

use std::time::{Duration, Instant};

use foldhash::HashMap;

use tokio::sync::mpsc;

use super::RtcEvent;
use super::media_loop::next_on_grid;
use super::route::RtcId;

/// The shortest period a session's frames are handed over in (a relayed feed's).
pub(super) const BATCH_MIN: Duration = Duration::from_millis(20);
/// Events held back per session (its task is stalled) before frames are dropped.
pub(super) const MAX_HELD: usize = 8192;

/// One session's events on their way to its task.
#[derive(Debug, Default)]
pub(super) struct Outbox {
    /// Events not yet handed over, oldest first.
    pending: Vec<RtcEvent>,
    /// Once batched, how often frames are handed over (at least [`BATCH_MIN`]); before,
    /// events go out at once.
    batch: Option<Duration>,
    /// When the pending frames are handed over.
    due: Option<Instant>,
    /// `pending` holds an event that is not a frame: it goes out without waiting.
    urgent: bool,
    /// Frames dropped because the task did not keep up.
    dropped: u64,
}

/// What the loop does with a session after its turn.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Hand {
    /// Nothing waits.
    Nothing,
    /// Hand over at the end of this turn.
    Now,
    /// Hand over at this instant (the batch's).
    At(Instant),
}

impl Outbox {
    /// Adds an event for the task.
    pub(super) fn push(&mut self, ev: RtcEvent) {
        // Set here, once per event, so scheduling never scans `pending`.
        self.urgent |= !matches!(ev, RtcEvent::Frame(_));
        self.pending.push(ev);
    }

    /// Batches frames every `every` (at least [`BATCH_MIN`]) from now on; true if the
    /// session was not batched before.
    pub(super) fn set_batch(&mut self, every: Duration) -> bool {
        self.batch.replace(every.max(BATCH_MIN)).is_none()
    }

    /// Whether frames wait for batches.
    pub(super) fn is_batched(&self) -> bool {
        self.batch.is_some()
    }

    /// When what is pending goes out.
    pub(super) fn schedule(&mut self, now: Instant) -> Hand {
        if self.pending.is_empty() {
            return Hand::Nothing;
        }
        match self.batch.filter(|_| !self.urgent) {
            None => Hand::Now,
            // On the session's own grid, so sessions with one pace are handed over together.
            Some(every) => Hand::At(*self.due.get_or_insert_with(|| next_on_grid(now, every))),
        }
    }

    /// Whether its batch is due at `now`.
    fn is_due(&self, now: Instant) -> bool {
        self.due.is_some_and(|d| now >= d)
    }

    /// Takes everything pending (the task asked for it).
    pub(super) fn take(&mut self) -> Vec<RtcEvent> {
        self.urgent = false;
        std::mem::take(&mut self.pending)
    }

    /// Frames dropped so far.
    pub(super) fn dropped(&self) -> u64 {
        self.dropped
    }

    /// Hands the pending events to the task through `to`. False: the task is gone. A task
    /// that does not keep up has its events held; past [`MAX_HELD`], the oldest frames are
    /// dropped (events that are not frames are always kept).
    pub(super) fn hand_over(&mut self, to: &mpsc::Sender<Vec<RtcEvent>>) -> bool {
        if self.pending.is_empty() {
            return true;
        }
        match to.try_send(std::mem::take(&mut self.pending)) {
            Ok(()) => {
                self.urgent = false;
                true
            }
            Err(mpsc::error::TrySendError::Full(back)) => {
                self.pending = back;
                if self.pending.len() > MAX_HELD {
                    let excess = self.pending.len() - MAX_HELD;
                    let mut dropped = 0;
                    self.pending.retain(|ev| {
                        let drop = dropped < excess && matches!(ev, RtcEvent::Frame(_));
                        dropped += usize::from(drop);
                        !drop
                    });
                    self.dropped += dropped as u64;
                    crate::metrics::frames_dropped(
                        crate::metrics::FrameDrop::TaskBehind,
                        dropped as u64,
                    );
                }
                true
            }
            Err(mpsc::error::TrySendError::Closed(_)) => false,
        }
    }
}

/// The loop's side: which sessions go now, when batches are due, the pace.
#[derive(Debug, Default)]
pub(super) struct Pacing {
    /// Sessions whose events go out at the end of this turn.
    urgent: Vec<RtcId>,
    /// When batched sessions' events go out next (None: none wait).
    next_flush: Option<Instant>,
    /// Sessions that are not batched (setting up, or sending: str0m's timers and the spread of
    /// what it sends (`super::spread`) run on their own deadlines, which a batch grid would
    /// slow to a crawl): while there is one, the
    /// loop wakes for every datagram and timer.
    immediate: usize,
}

impl Pacing {
    /// A session joined (not batched yet).
    pub(super) fn added(&mut self) {
        self.immediate += 1;
    }

    /// A session became batched.
    pub(super) fn batched(&mut self) {
        self.immediate -= 1;
    }

    /// A session left (`outbox`: what it had).
    pub(super) fn removed(&mut self, id: RtcId, outbox: &Outbox) {
        if !outbox.is_batched() {
            self.immediate -= 1;
        }
        self.forget(id);
    }

    /// `id` no longer goes out this turn (its events were taken, or it left).
    pub(super) fn forget(&mut self, id: RtcId) {
        self.urgent.retain(|u| *u != id);
    }

    /// Sessions not batched.
    pub(super) fn immediate(&self) -> usize {
        self.immediate
    }

    /// Whether every session is batched: the loop's steady pace.
    pub(super) fn steady(&self) -> bool {
        self.immediate == 0
    }

    /// When the next batch is due, if any waits.
    pub(super) fn next_flush(&self) -> Option<Instant> {
        self.next_flush
    }

    /// Puts a session with events in line after its turn.
    pub(super) fn schedule(&mut self, id: RtcId, outbox: &mut Outbox, now: Instant) {
        match outbox.schedule(now) {
            Hand::Nothing => {}
            Hand::Now => self.urgent.push(id),
            Hand::At(due) => {
                self.next_flush = Some(self.next_flush.map_or(due, |f| f.min(due)));
            }
        }
    }

    /// Hands events over: the urgent sessions' now, the batched ones' whose batch is due.
    /// Returns the sessions whose task is gone.
    pub(super) fn flush<S: Mailbox>(
        &mut self,
        now: Instant,
        sessions: &mut HashMap<RtcId, S>,
    ) -> Vec<RtcId> {
        let mut closed = Vec::new();
        for id in std::mem::take(&mut self.urgent) {
            if let Some(s) = sessions.get_mut(&id) {
                let (outbox, to) = s.mailbox();
                if !outbox.hand_over(to) {
                    closed.push(id);
                }
            }
        }
        if self.next_flush.is_some_and(|t| now >= t) {
            let mut next: Option<Instant> = None;
            for (&id, s) in sessions.iter_mut() {
                let (outbox, to) = s.mailbox();
                if outbox.is_due(now) {
                    outbox.due = None;
                    if !outbox.hand_over(to) {
                        closed.push(id);
                    }
                    if !outbox.pending.is_empty() {
                        // A task that did not keep up: try again soon.
                        outbox.due = Some(next_on_grid(now, BATCH_MIN));
                    }
                }
                if let Some(d) = outbox.due {
                    next = Some(next.map_or(d, |n| n.min(d)));
                }
            }
            self.next_flush = next;
        }
        closed
    }
}

/// A session as the pacing sees it: its outbox and its task's channel.
pub(super) trait Mailbox {
    fn mailbox(&mut self) -> (&mut Outbox, &mpsc::Sender<Vec<RtcEvent>>);
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use str0m::format::{CodecExtra, CodecSpec, FormatParams, PayloadParams};
    use str0m::media::{Frequency, MediaData, MediaTime, Mid};
    use str0m::rtp::{ExtensionValues, SeqNo};

    use super::*;

    /// An Opus frame, as str0m hands it over.
    fn frame(n: u64) -> RtcEvent {
        let spec = CodecSpec {
            codec: str0m::format::Codec::Opus,
            clock_rate: Frequency::FORTY_EIGHT_KHZ,
            channels: None,
            format: FormatParams::default(),
        };
        RtcEvent::Frame(Box::new(MediaData {
            mid: Mid::from("1"),
            pt: 111.into(),
            rid: None,
            params: PayloadParams::new(111.into(), None, spec),
            time: MediaTime::from_millis(n * 20),
            network_time: Instant::now(),
            seq_range: SeqNo::from(n)..=SeqNo::from(n),
            contiguous: true,
            data: Arc::from(&[0x08u8, 0, 0][..]),
            ext_vals: ExtensionValues::default(),
            codec_extra: CodecExtra::None,
            last_sender_info: None,
            audio_start_of_talk_spurt: false,
        }))
    }

    struct Session {
        outbox: Outbox,
        to: mpsc::Sender<Vec<RtcEvent>>,
    }

    impl Mailbox for Session {
        fn mailbox(&mut self) -> (&mut Outbox, &mpsc::Sender<Vec<RtcEvent>>) {
            (&mut self.outbox, &self.to)
        }
    }

    /// A batched session's frames wait for its batch; an event that is not a frame makes
    /// the whole outbox go at once; a session not batched yet goes at once too.
    #[test]
    fn urgent_events_skip_the_batch() {
        let now = Instant::now();
        let mut o = Outbox::default();
        assert_eq!(o.schedule(now), Hand::Nothing);
        o.push(frame(1));
        assert_eq!(o.schedule(now), Hand::Now, "not batched yet");
        assert!(o.set_batch(Duration::from_millis(5)));
        assert!(!o.set_batch(Duration::from_millis(40)), "batched once");
        let Hand::At(due) = o.schedule(now) else {
            panic!("frames wait for the batch");
        };
        assert!(due > now && due - now <= Duration::from_millis(40));
        assert_eq!(o.schedule(now), Hand::At(due), "the same batch");
        o.push(RtcEvent::Disconnected);
        assert_eq!(o.schedule(now), Hand::Now);
        assert_eq!(o.take().len(), 2);
        o.push(frame(2));
        assert!(
            matches!(o.schedule(now), Hand::At(_)),
            "urgency ends with a hand-over"
        );
    }

    /// A task that does not take its events has them held: up to MAX_HELD, then its oldest
    /// frames are dropped and counted, and its other events are all kept, in order.
    #[test]
    fn past_the_hold_limit_frames_go_and_other_events_stay() {
        let (to, mut task) = mpsc::channel(1);
        let mut o = Outbox::default();
        o.push(frame(0));
        assert!(o.hand_over(&to), "the channel takes one batch");
        o.push(RtcEvent::Disconnected);
        for n in 1..=MAX_HELD as u64 + 10 {
            o.push(frame(n));
        }
        o.push(RtcEvent::Connected);
        let recorder = metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder();
        let metrics = recorder.handle();
        let handed = metrics::with_local_recorder(&recorder, || o.hand_over(&to));
        assert!(handed, "a full channel is not a gone task");
        assert_eq!(o.dropped(), 12);
        let line = "janus_recorder_frames_dropped_total{reason=\"task-behind\"} 12";
        assert!(metrics.render().lines().any(|l| l == line), "{line}");
        let held = o.take();
        assert_eq!(held.len(), MAX_HELD);
        assert!(matches!(held[0], RtcEvent::Disconnected));
        assert!(matches!(held[held.len() - 1], RtcEvent::Connected));
        let RtcEvent::Frame(first) = &held[1] else {
            panic!("frames follow");
        };
        assert_eq!(*first.seq_range.start(), SeqNo::from(13), "the oldest went");
        drop(task.try_recv());
        drop(task);
        o.push(frame(0));
        assert!(!o.hand_over(&to), "the task is gone");
    }

    /// The loop is steady only while every session is batched; urgent sessions are handed
    /// their events at once, batched ones when their batch is due.
    #[test]
    fn steady_only_when_every_session_is_batched_and_batches_go_when_due() {
        let mut pacing = Pacing::default();
        let mut sessions: HashMap<RtcId, Session> = HashMap::default();
        let mut tasks = Vec::new();
        for id in [RtcId(1), RtcId(2)] {
            let (to, task) = mpsc::channel(8);
            tasks.push(task);
            pacing.added();
            sessions.insert(
                id,
                Session {
                    outbox: Outbox::default(),
                    to,
                },
            );
        }
        assert!(!pacing.steady());
        for id in [RtcId(1), RtcId(2)] {
            assert!(sessions.get_mut(&id).unwrap().outbox.set_batch(BATCH_MIN));
            pacing.batched();
            assert_eq!(pacing.steady(), id == RtcId(2));
        }
        let now = Instant::now();
        let s1 = sessions.get_mut(&RtcId(1)).unwrap();
        s1.outbox.push(frame(1));
        pacing.schedule(RtcId(1), &mut s1.outbox, now);
        let s2 = sessions.get_mut(&RtcId(2)).unwrap();
        s2.outbox.push(RtcEvent::Disconnected);
        pacing.schedule(RtcId(2), &mut s2.outbox, now);
        assert!(pacing.flush(now, &mut sessions).is_empty());
        assert!(
            tasks[0].try_recv().is_err(),
            "the frame waits for its batch"
        );
        assert_eq!(
            tasks[1].try_recv().unwrap().len(),
            1,
            "the urgent event went"
        );
        let due = pacing.next_flush().expect("a batch waits");
        assert!(pacing.flush(due, &mut sessions).is_empty());
        assert_eq!(
            tasks[0].try_recv().unwrap().len(),
            1,
            "the batch went when due"
        );
        assert_eq!(pacing.next_flush(), None);
        // A task gone is reported; a session removed unbatched leaves the pace steady.
        drop(tasks.remove(0));
        let s1 = sessions.get_mut(&RtcId(1)).unwrap();
        s1.outbox.push(RtcEvent::Connected);
        pacing.schedule(RtcId(1), &mut s1.outbox, now);
        assert_eq!(pacing.flush(now, &mut sessions), [RtcId(1)]);
        pacing.added();
        assert!(!pacing.steady());
        pacing.removed(RtcId(3), &Outbox::default());
        assert!(pacing.steady());
    }
}
