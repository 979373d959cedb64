//! Exponential backoff between attempts that may heal by waiting (reconnecting to Janus,
//! opening the media sockets, delivering a webhook): each wait doubles the next, up to a
//! ceiling, and a success starts again from the first.

use std::time::Duration;

/// The waits between one kind of attempt.
#[derive(Debug, Clone)]
pub struct Backoff {
    first: Duration,
    max: Duration,
    next: Duration,
}

impl Backoff {
    /// Waits from `first`, doubling up to `max` (`first` is lowered to `max` if above it).
    pub fn new(first: Duration, max: Duration) -> Backoff {
        let first = first.min(max);
        Backoff {
            first,
            max,
            next: first,
        }
    }

    /// The wait before the next attempt; the one after is twice as long (up to the ceiling).
    pub fn next_wait(&mut self) -> Duration {
        let wait = self.next;
        self.next = (wait * 2).min(self.max);
        wait
    }

    /// [`Backoff::next_wait`] spread over 75-125% of it, so that many waiters (webhooks of
    /// many recorders, say) do not retry in step.
    pub fn next_jittered(&mut self) -> Duration {
        let r = (uuid::Uuid::new_v4().as_u128() % 1000) as f64 / 1000.0;
        self.next_wait().mul_f64(0.75 + r * 0.5)
    }

    /// An attempt succeeded: the next wait is the first again.
    pub fn reset(&mut self) {
        self.next = self.first;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_double_up_to_the_ceiling_and_reset() {
        let s = Duration::from_secs;
        let mut b = Backoff::new(s(1), s(5));
        let waits: Vec<_> = (0..5).map(|_| b.next_wait()).collect();
        assert_eq!(waits, [s(1), s(2), s(4), s(5), s(5)]);
        b.reset();
        assert_eq!(b.next_wait(), s(1));
        let mut high = Backoff::new(s(10), s(3));
        assert_eq!(high.next_wait(), s(3));
        // Past the ceiling every wait is 5 s, spread over 3.75-6.25 s.
        let jittered: Vec<_> = (0..100).map(|_| b.next_jittered()).skip(3).collect();
        assert!(
            jittered
                .iter()
                .all(|j| (s(5).mul_f64(0.75)..=s(5).mul_f64(1.25)).contains(j))
        );
        assert!(
            jittered.windows(2).any(|w| w[0] != w[1]),
            "spread: {jittered:?}"
        );
    }
}
