//! Anything Janus (or something pretending to be Janus) may send: parsed into our enums
//! without a panic, and any display name in it sanitized into a safe file-name component.
#![no_main]

use janus_recorder::janus::messages::{Incoming, VideoRoomEvent, parse_incoming};
use janus_recorder::output::sanitize_component;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(Incoming::Event { data, .. }) = parse_incoming(text) {
        if let VideoRoomEvent::Publishers { publishers, .. } | VideoRoomEvent::Joined { publishers, .. } =
            VideoRoomEvent::parse(&data)
        {
            for p in publishers {
                if let Some(display) = p.display {
                    let safe = sanitize_component(&display, 64, "unnamed");
                    assert!(!safe.is_empty() && safe.len() <= 64);
                    assert!(!safe.contains('/') && !safe.contains("..") && safe != ".");
                    assert!(!safe.chars().any(char::is_control));
                }
            }
        }
    }
    // Display names straight from the input too.
    let safe = sanitize_component(text, 64, "unnamed");
    assert!(!safe.contains('/') && !safe.contains("..") && !safe.chars().any(char::is_control));
});
