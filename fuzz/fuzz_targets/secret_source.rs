//! A secret as the config gives it (`"..."`, `{ file }`, `{ credential }`, `{ env }`) and a
//! credential name, on arbitrary bytes: a secret or an error, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    janus_recorder::secret::fuzz_input(data);
});
