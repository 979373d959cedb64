//! The check tool's WebM reader on arbitrary bytes: a report, never a panic.
#![no_main]

use janus_recorder::check::{CheckOptions, Status, check_bytes};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let report = check_bytes(std::path::Path::new("fuzz.webm"), data, &CheckOptions::default());
    assert!(report.playable || report.status == Status::Unreadable);
});
