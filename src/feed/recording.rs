//! The rules of a feed's recording that are not about str0m or Janus, pure so that they are
//! tested on their own: how long an ending feed waits for its last packets, when a file is
//! continued in a new part, where a frame lands in its part, and the first-keyframe figure.

use std::time::{Duration, Instant};

use super::EndReason;

/// How long an ending feed waits for packets still on their way: when the publisher
/// ended, until none came for this long. 100 ms: with 40, a feed whose `leaving` came while
/// the daemon was starting five other recordings took no frame in its first grace and
/// ended without its last audio frame (tests/churn.rs, once in a full run). 300 ms: with 100,
/// one of 17 feeds leaving at once ended 106 ms after its `leaving` without its last audio
/// frame (tests/multistream.rs, once in a full run on two busy cores). A feed's file is
/// finalized that much later; nothing else waits for it.
pub const END_GRACE: Duration = Duration::from_millis(300);
/// The longest a feed whose publisher ended waits for the last packets.
pub const END_WAIT_MAX: Duration = Duration::from_secs(1);

/// The wait for the last packets after a feed was told to end. Janus sends `leaving` or
/// `unpublished` right after forwarding the publisher's last packets, and the event (TCP)
/// can overtake them (UDP): they get a moment to land. When the publisher ended, nothing
/// comes after its last packets, so the feed takes frames until a grace passes without one
/// (on a loaded machine the last ones came later than one grace: 60 ms of 8 feeds' ends at
/// 100 feeds), at most [`END_WAIT_MAX`]. Otherwise (shutdown, a lost connection) media may
/// still flow: one grace. A failed feed does not wait.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EndWait {
    publisher_ended: bool,
    give_up: Instant,
}

impl EndWait {
    /// The wait for an end for `reason` at `now`; none for a failure.
    pub fn new(reason: &EndReason, now: Instant) -> Option<EndWait> {
        let publisher_ended = match reason {
            EndReason::Failed(_) => return None,
            EndReason::Unpublished
            | EndReason::Leaving
            | EndReason::Kicked
            | EndReason::RoomDestroyed
            | EndReason::HangUp(_) => true,
            _ => false,
        };
        Some(EndWait {
            publisher_ended,
            give_up: now + END_WAIT_MAX,
        })
    }

    /// After a grace in which `frames` frames came: whether to wait one more.
    pub fn again(&self, frames: usize, now: Instant) -> bool {
        self.publisher_ended && frames > 0 && now < self.give_up
    }
}

/// Whether `split_after` asks for the next part at a frame placed at `at` on the feed's
/// timeline, in a part that starts at `part_start` (the part's length is media time, not how
/// long the file has been open), if that frame can open a part: a video keyframe, or any
/// frame of a recording without video.
pub fn split_due(
    split_after: Option<Duration>,
    part_start: Duration,
    at: Duration,
    keyframe: bool,
    has_video: bool,
) -> bool {
    split_after.is_some_and(|after| at.saturating_sub(part_start) >= after)
        && (keyframe || !has_video)
}

/// Where a frame at `t` on the room clock (ns since the epoch) lands on the feed's
/// timeline, whose zero is `zero`: never before it.
pub fn on_timeline(t: i128, zero: i128) -> Duration {
    Duration::from_nanos((t - zero).clamp(0, i128::from(u64::MAX)) as u64)
}

/// The first-keyframe figure (milliseconds from the publisher's announcement to the first
/// video frame written), if this frame gives it: the first video frame of the first part,
/// none recorded yet.
pub fn first_keyframe_ms(
    is_video: bool,
    part: u32,
    recorded: Option<u64>,
    received: Instant,
    announced: Instant,
) -> Option<u64> {
    (is_video && part == 1 && recorded.is_none())
        .then(|| received.saturating_duration_since(announced).as_millis() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::feed::Failure;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn an_ended_publisher_is_waited_for_while_frames_come() {
        let t0 = Instant::now();
        let w = EndWait::new(&EndReason::Leaving, t0).unwrap();
        assert!(w.again(3, t0 + 40 * MS), "frames came: one more grace");
        assert!(!w.again(0, t0 + 80 * MS), "a grace without frames ends it");
        assert!(!w.again(5, t0 + END_WAIT_MAX), "never past the limit");
        // A shutdown waits one grace only; a failure not at all.
        let s = EndWait::new(&EndReason::Shutdown, t0).unwrap();
        assert!(!s.again(10, t0 + 40 * MS));
        assert_eq!(
            EndWait::new(&EndReason::Failed(Failure::Write("disk".into())), t0),
            None
        );
    }

    #[test]
    fn a_part_is_split_at_media_time_on_a_keyframe() {
        let min = Duration::from_secs(60);
        let after = Some(min);
        assert!(!split_due(None, Duration::ZERO, 10 * min, true, true));
        assert!(!split_due(after, Duration::ZERO, min - MS, true, true));
        assert!(split_due(after, Duration::ZERO, min, true, true));
        assert!(
            !split_due(after, Duration::ZERO, min, false, true),
            "a delta frame cannot open a part"
        );
        assert!(
            split_due(after, Duration::ZERO, min, false, false),
            "audio only: any frame"
        );
        // The second part is measured from its own start.
        assert!(!split_due(after, min, min + min / 2, true, true));
        assert!(split_due(after, min, 2 * min, true, true));
    }

    #[test]
    fn frames_land_on_the_timeline_never_before_its_zero() {
        assert_eq!(on_timeline(1_500, 1_000), Duration::from_nanos(500));
        assert_eq!(on_timeline(900, 1_000), Duration::ZERO);
        assert_eq!(on_timeline(i128::MAX, 0), Duration::from_nanos(u64::MAX));
    }

    #[test]
    fn the_first_keyframe_figure_is_taken_once_in_the_first_part() {
        let t0 = Instant::now();
        let at = t0 + 120 * MS;
        assert_eq!(first_keyframe_ms(true, 1, None, at, t0), Some(120));
        assert_eq!(first_keyframe_ms(false, 1, None, at, t0), None, "audio");
        assert_eq!(
            first_keyframe_ms(true, 2, None, at, t0),
            None,
            "a later part"
        );
        assert_eq!(first_keyframe_ms(true, 1, Some(90), at, t0), None, "taken");
        assert_eq!(
            first_keyframe_ms(true, 1, None, t0, at),
            Some(0),
            "never negative"
        );
    }
}
