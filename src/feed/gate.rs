//! Keyframe gating, one type for the recording and the relay: video waits for a keyframe at
//! the start and after every break in the packet sequence (a decoder cannot continue across
//! lost frames); and the pacing of the keyframe requests (PLIs) sent to the publisher for it,
//! one pacer per feed whichever side asks.

use std::time::{Duration, Instant};

/// Whether video frames may pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyframeGate {
    waiting: bool,
}

impl KeyframeGate {
    /// A gate that waits for the first keyframe (`waiting`), or lets everything through
    /// until the first break.
    pub fn new(waiting: bool) -> KeyframeGate {
        KeyframeGate { waiting }
    }

    /// Waits for a keyframe again (a new receiver joined the stream).
    pub fn restart(&mut self) {
        self.waiting = true;
    }

    pub fn is_waiting(&self) -> bool {
        self.waiting
    }

    /// Whether a frame passes: after a break (`contiguous` false) the gate closes, and only
    /// a keyframe opens it.
    pub fn admit(&mut self, contiguous: bool, keyframe: bool) -> bool {
        if !contiguous {
            self.waiting = true;
        }
        if self.waiting && keyframe {
            self.waiting = false;
        }
        !self.waiting
    }
}

/// Paces keyframe requests: a PLI goes out only if the last one is at least `gap` old.
#[derive(Debug, Clone, Copy, Default)]
pub struct RequestPacer {
    last: Option<Instant>,
}

impl RequestPacer {
    /// Whether a request may go out at `now`; if so, it counts as sent.
    pub fn try_request(&mut self, now: Instant, gap: Duration) -> bool {
        let due = self
            .last
            .is_none_or(|t| now.saturating_duration_since(t) >= gap);
        if due {
            self.last = Some(now);
        }
        due
    }

    /// The next request may go out at once (the stream broke: waiting costs frames).
    pub fn reset(&mut self) {
        self.last = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_gate_opens_on_a_keyframe_and_closes_on_a_break() {
        let mut g = KeyframeGate::new(true);
        assert!(!g.admit(true, false));
        assert!(g.admit(true, true));
        assert!(g.admit(true, false));
        // A break: the next delta frame cannot be decoded.
        assert!(!g.admit(false, false));
        assert!(!g.admit(true, false));
        assert!(g.admit(true, true));
        // A keyframe right after a break passes.
        assert!(g.admit(false, true));
        g.restart();
        assert!(g.is_waiting());
        assert!(!g.admit(true, false));
        // An open gate passes delta frames from the start.
        assert!(KeyframeGate::new(false).admit(true, false));
    }

    #[test]
    fn requests_are_paced() {
        let t0 = Instant::now();
        let gap = Duration::from_millis(500);
        let mut p = RequestPacer::default();
        assert!(p.try_request(t0, gap));
        assert!(!p.try_request(t0 + Duration::from_millis(499), gap));
        assert!(p.try_request(t0 + gap, gap));
        p.reset();
        assert!(p.try_request(t0 + gap, gap));
    }
}
