//! The Enrollments API parser (v3 and v2 nesting, with or without the wrapper).
#![no_main]

use libfuzzer_sys::fuzz_target;
use roster_sync::source::api::parse_enrollment_page;

fuzz_target!(|data: &[u8]| {
    let _ = parse_enrollment_page(data);
});
