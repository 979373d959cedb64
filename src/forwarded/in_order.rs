//! Reordering for a stream whose every RTP packet is a whole frame (Opus): what str0m's
//! depacketizing buffer does for such a stream, without the copies. str0m keeps a copy of
//! each payload, copies it again into the frame and we a third time into the shared buffer
//! the feed takes; here the payload is copied once, from the socket's buffer into that
//! shared buffer. Audio is most of a feed's packets (50 of about 90 a second).
//!
//! The rules are str0m's ([`super::reorder`]); what comes after a gap given up is marked not
//! contiguous.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::reorder::{Arrival, Reorder};

/// One packet waiting for its turn.
#[derive(Debug, Clone)]
pub(super) struct Packet {
    /// Extended sequence number and RTP time.
    pub seq: u64,
    pub time: u64,
    pub received: Instant,
    /// The payload; `None` for a packet of padding only (it counts in the sequence, nothing
    /// is released for it).
    pub data: Option<Arc<[u8]>>,
}

/// A released frame.
#[derive(Debug, Clone)]
pub(super) struct Released {
    pub seq: u64,
    pub time: u64,
    pub received: Instant,
    pub data: Arc<[u8]>,
    /// No packet is missing between the previous frame released and this one.
    pub contiguous: bool,
}

/// One stream's packets on their way out in order.
#[derive(Debug)]
pub(super) struct InOrder {
    order: Reorder<Packet>,
    /// A gap was given up (or passed over by padding) since the last frame released.
    gap: bool,
    ready: VecDeque<Released>,
}

impl InOrder {
    /// Holds at most `hold_back` packets behind a gap, each at most `wait`.
    pub(super) fn new(hold_back: usize, wait: Duration) -> InOrder {
        InOrder {
            order: Reorder::new(hold_back, wait),
            gap: false,
            ready: VecDeque::new(),
        }
    }

    /// Takes a packet; a late one (at or before the last released) or a duplicate is dropped.
    pub(super) fn push(&mut self, packet: Packet) {
        match self.order.arrive(packet.seq) {
            Arrival::Next => {
                self.take(packet);
                self.take_held();
            }
            Arrival::Early => self.order.hold(packet.seq, packet.received, packet),
            Arrival::Late => {}
        }
    }

    /// The next frame ready at `now`: a gap that has waited long enough is given up first.
    pub(super) fn pop(&mut self, now: Instant) -> Option<Released> {
        while self.order.give_up(now) {
            self.gap = true;
            self.take_held();
        }
        self.ready.pop_front()
    }

    fn take_held(&mut self) {
        while let Some((_, packet)) = self.order.next_held() {
            self.take(packet);
        }
    }

    /// The packet that follows the last one taken: a frame, or padding that keeps the
    /// sequence (and passes a gap before it on to the next frame).
    fn take(&mut self, packet: Packet) {
        let Some(data) = packet.data else {
            return;
        };
        self.ready.push_back(Released {
            seq: packet.seq,
            time: packet.time,
            received: packet.received,
            data,
            contiguous: !std::mem::take(&mut self.gap),
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn packet(seq: u64, received: Instant) -> Packet {
        Packet {
            seq,
            time: seq * 960,
            received,
            data: Some(Arc::from(vec![seq as u8])),
        }
    }

    fn drain(o: &mut InOrder, now: Instant) -> Vec<(u64, bool)> {
        std::iter::from_fn(|| o.pop(now))
            .map(|r| (r.seq, r.contiguous))
            .collect()
    }

    const WAIT: Duration = Duration::from_millis(100);

    #[test]
    fn out_of_order_packets_come_out_in_order_and_duplicates_once() {
        let t0 = Instant::now();
        let mut o = InOrder::new(15, WAIT);
        for seq in [10, 12, 11, 11, 13, 12] {
            o.push(packet(seq, t0));
        }
        assert_eq!(
            drain(&mut o, t0),
            vec![(10, true), (11, true), (12, true), (13, true)]
        );
        // Late: before the last released.
        o.push(packet(12, t0));
        assert_eq!(drain(&mut o, t0), vec![]);
    }

    #[test]
    fn a_gap_is_waited_for_then_skipped_and_said() {
        let t0 = Instant::now();
        let mut o = InOrder::new(15, WAIT);
        o.push(packet(1, t0));
        o.push(packet(3, t0));
        assert_eq!(drain(&mut o, t0), vec![(1, true)], "3 waits for 2");
        assert_eq!(drain(&mut o, t0 + WAIT), vec![(3, false)]);
        o.push(packet(2, t0 + WAIT));
        o.push(packet(4, t0 + WAIT));
        assert_eq!(drain(&mut o, t0 + WAIT), vec![(4, true)], "2 came too late");
    }

    #[test]
    fn a_gap_is_skipped_once_hold_back_packets_wait() {
        let t0 = Instant::now();
        let mut o = InOrder::new(3, WAIT);
        o.push(packet(1, t0));
        o.push(packet(3, t0));
        o.push(packet(4, t0));
        assert_eq!(drain(&mut o, t0), vec![(1, true)]);
        o.push(packet(5, t0));
        assert_eq!(drain(&mut o, t0), vec![(3, false), (4, true), (5, true)]);
    }

    #[test]
    fn padding_keeps_the_sequence_and_passes_a_gap_on() {
        let t0 = Instant::now();
        let mut o = InOrder::new(15, WAIT);
        let pad = |seq| Packet {
            data: None,
            ..packet(seq, t0)
        };
        o.push(packet(1, t0));
        o.push(pad(2));
        o.push(packet(3, t0));
        assert_eq!(drain(&mut o, t0), vec![(1, true), (3, true)]);
        o.push(pad(5));
        o.push(packet(6, t0));
        assert_eq!(drain(&mut o, t0 + WAIT), vec![(6, false)], "4 never came");
    }
}
