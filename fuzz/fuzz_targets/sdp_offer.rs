//! Hostile SDP offers through the path that answers Janus's offer: an answer or an error,
//! never a panic.
#![no_main]

use janus_recorder::rtc::RtcSetup;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(sdp) = std::str::from_utf8(data) {
        let _ = RtcSetup::answer_offline(sdp);
    }
});
