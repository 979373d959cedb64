//! ICE candidates as Janus trickles them (one `candidate:` string per line of the input) into a
//! receiving session: taken or refused with a reason, never a panic.
#![no_main]

use janus_recorder::rtc::{RtcError, RtcSetup};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let mut session = RtcSetup::offline();
    for line in text.lines() {
        // A str0m panic is caught and kills the session: for the fuzzer, still a crash.
        if let Err(e @ (RtcError::Panicked(_) | RtcError::Dead)) = session.add_remote_candidate(line) {
            panic!("{e}");
        }
    }
});
