//! str0m's one rule, kept by construction: after every input to an `Rtc`, its output is
//! drained (`poll_output`) until it names its next timeout. The media loop holds each
//! session's `Rtc` as a [`DrivenRtc`]: inputs go through [`DrivenRtc::input`], which marks
//! the session undrained until [`DrivenRtc::poll_output`] returns that timeout, and the loop
//! checks after every turn that no session is left undrained ([`DrivenRtc::undrained`]).

use str0m::{Output, Rtc, RtcError};

/// A session's `Rtc`, with whether an input still awaits its drain.
pub(super) struct DrivenRtc {
    rtc: Rtc,
    undrained: bool,
}

impl DrivenRtc {
    /// A new session has not been polled yet: it starts undrained.
    pub fn new(rtc: Rtc) -> DrivenRtc {
        DrivenRtc {
            rtc,
            undrained: true,
        }
    }

    /// Gives `f` the `Rtc` for an input (a datagram, a timeout, a candidate, a keyframe
    /// request, a frame to send, a disconnect); a drain must follow.
    pub fn input<T>(&mut self, f: impl FnOnce(&mut Rtc) -> T) -> T {
        self.undrained = true;
        f(&mut self.rtc)
    }

    /// str0m's next output; its timeout ends the drain.
    pub fn poll_output(&mut self) -> Result<Output, RtcError> {
        let out = self.rtc.poll_output();
        if matches!(out, Ok(Output::Timeout(_))) {
            self.undrained = false;
        }
        out
    }

    /// Whether an input has not been followed by a whole drain.
    pub fn undrained(&self) -> bool {
        self.undrained
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;
    use str0m::Input;

    fn drain(d: &mut DrivenRtc) -> usize {
        let mut outputs = 0;
        while !matches!(d.poll_output().unwrap(), Output::Timeout(_)) {
            outputs += 1;
        }
        outputs
    }

    #[test]
    fn an_input_is_undrained_until_the_timeout_is_polled() {
        let now = Instant::now();
        let mut d = DrivenRtc::new(Rtc::builder().build(now));
        assert!(d.undrained(), "a new session has not been polled");
        drain(&mut d);
        assert!(!d.undrained());
        d.input(|rtc| rtc.handle_input(Input::Timeout(now)))
            .unwrap();
        assert!(d.undrained());
        drain(&mut d);
        assert!(!d.undrained());
        // Polling without an input keeps it drained.
        drain(&mut d);
        assert!(!d.undrained());
    }
}
