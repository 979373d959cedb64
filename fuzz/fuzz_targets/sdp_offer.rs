//! Hostile SDP offers through the path that answers Janus's offer: an answer or an error,
//! never a panic.
#![no_main]

use janus_recorder::rtc::RtcSession;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(sdp) = std::str::from_utf8(data) {
        let _ = RtcSession::answer_offline(sdp);
    }
});
