//! The reordering rules of a forwarded stream, str0m's for a session: a packet that follows
//! the last one taken is taken at once; one after a gap is held until the gap fills, until
//! one held packet has waited `wait`, or until `hold_back` are held (then the gap is given
//! up); a packet at or before the last taken, or a duplicate, is dropped. What a packet
//! becomes is the caller's ([`super::in_order`] for Opus, [`super::vp8`] for VP8 frames):
//! only packets after a gap are kept here, so those that come in order (nearly all, from
//! Janus on this host or a private network) are not copied to be held.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// Packets held at most, whatever `hold_back` says.
const MAX_HELD: usize = 4096;

/// What to do with a packet that arrives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Arrival {
    /// It follows the last one taken: take it now.
    Next,
    /// A gap before it: [`Reorder::hold`] it.
    Early,
    /// At or before the last taken: drop it.
    Late,
}

/// One stream's sequence: the last packet taken, and those held after a gap.
#[derive(Debug)]
pub(super) struct Reorder<T> {
    last: Option<u64>,
    /// By sequence number: (sequence number, arrival, the packet).
    held: VecDeque<(u64, Instant, T)>,
    hold_back: usize,
    wait: Duration,
}

impl<T> Reorder<T> {
    /// Holds at most `hold_back` packets behind a gap, each at most `wait`.
    pub(super) fn new(hold_back: usize, wait: Duration) -> Reorder<T> {
        Reorder {
            last: None,
            held: VecDeque::new(),
            hold_back: hold_back.clamp(1, MAX_HELD),
            wait,
        }
    }

    /// Where the packet `seq` goes; [`Arrival::Next`] counts it as taken.
    pub(super) fn arrive(&mut self, seq: u64) -> Arrival {
        match self.last {
            Some(l) if seq <= l => Arrival::Late,
            Some(l) if seq > l + 1 => Arrival::Early,
            _ => {
                self.last = Some(seq);
                Arrival::Next
            }
        }
    }

    /// Keeps a packet that came after a gap (a duplicate of one held is dropped).
    pub(super) fn hold(&mut self, seq: u64, received: Instant, packet: T) {
        // Packets nearly always come in order: search from the back.
        let at = match self.held.back() {
            Some(b) if b.0 < seq => self.held.len(),
            _ => match self.held.binary_search_by_key(&seq, |h| h.0) {
                Ok(_) => return,
                Err(i) => i,
            },
        };
        self.held.insert(at, (seq, received, packet));
        if self.held.len() > MAX_HELD {
            self.held.pop_back();
        }
    }

    /// The held packet that follows the last one taken, now taken.
    pub(super) fn next_held(&mut self) -> Option<(u64, T)> {
        let &(seq, ..) = self.held.front()?;
        if self.last.is_some_and(|l| seq != l + 1) {
            return None;
        }
        self.last = Some(seq);
        self.held.pop_front().map(|(seq, _, p)| (seq, p))
    }

    /// Gives the gap before the first held packet up if it has waited long enough at `now`
    /// (true: what it broke is lost; [`Reorder::next_held`] goes on past it).
    pub(super) fn give_up(&mut self, now: Instant) -> bool {
        let Some(&(seq, received, _)) = self.held.front() else {
            return false;
        };
        let waited = now.saturating_duration_since(received) >= self.wait;
        if !waited && self.held.len() < self.hold_back {
            return false;
        }
        self.last = Some(seq - 1);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const WAIT: Duration = Duration::from_millis(100);

    /// Every packet taken, in the order taken, for arrivals at `t0` (held ones as their gap
    /// fills).
    fn taken(r: &mut Reorder<u64>, seqs: &[u64], t0: Instant) -> Vec<u64> {
        let mut out = Vec::new();
        for &seq in seqs {
            match r.arrive(seq) {
                Arrival::Next => out.push(seq),
                Arrival::Early => r.hold(seq, t0, seq),
                Arrival::Late => {}
            }
            out.extend(std::iter::from_fn(|| r.next_held()).map(|(_, p)| p));
        }
        out
    }

    #[test]
    fn packets_are_taken_in_order_once() {
        let t0 = Instant::now();
        let mut r = Reorder::new(15, WAIT);
        assert_eq!(
            taken(&mut r, &[10, 12, 11, 11, 13, 12], t0),
            vec![10, 11, 12, 13]
        );
        assert_eq!(r.arrive(12), Arrival::Late);
    }

    #[test]
    fn a_gap_is_given_up_after_the_wait_or_at_hold_back() {
        let t0 = Instant::now();
        let mut r = Reorder::new(15, WAIT);
        assert_eq!(taken(&mut r, &[1, 3, 3], t0), vec![1]);
        assert!(!r.give_up(t0), "3 waits for 2");
        assert!(r.give_up(t0 + WAIT));
        assert_eq!(r.next_held(), Some((3, 3)));
        assert_eq!(r.arrive(2), Arrival::Late);

        let mut r = Reorder::new(2, WAIT);
        assert_eq!(taken(&mut r, &[1, 3], t0), vec![1]);
        assert!(!r.give_up(t0));
        assert!(taken(&mut r, &[4], t0).is_empty());
        assert!(r.give_up(t0), "two held");
        assert_eq!(r.next_held(), Some((3, 3)));
        assert_eq!(r.next_held(), Some((4, 4)));
    }
}
