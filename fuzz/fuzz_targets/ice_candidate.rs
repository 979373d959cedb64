//! ICE candidates as Janus trickles them (one `candidate:` string per line of the input) into a
//! receiving session: taken or refused with a reason, never a panic.
#![no_main]

use janus_recorder::rtc::RtcSession;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let mut session = RtcSession::offline();
    for line in text.lines() {
        if let Err(e) = session.add_remote_candidate(line) {
            // A str0m panic is caught and kills the session: for the fuzzer, still a crash.
            assert!(!e.contains("str0m panicked"), "{e}");
        }
    }
});
