//! The Students API parser (an instructor's disclosed campus addresses).
#![no_main]

use libfuzzer_sys::fuzz_target;
use roster_sync::source::api::parse_student_addresses;

fuzz_target!(|data: &[u8]| {
    let _ = parse_student_addresses(data);
});
