//! The HTTP API's input (path segments, query strings, request bodies) and the small parsers
//! of the security review, on arbitrary bytes: an answer or an error, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    janus_recorder::http::fuzz_input(data);
});
