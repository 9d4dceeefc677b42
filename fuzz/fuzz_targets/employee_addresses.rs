//! The HR API parser (an instructor's business addresses; an empty answer is none).
#![no_main]

use libfuzzer_sys::fuzz_target;
use roster_sync::source::api::parse_employee_addresses;

fuzz_target!(|data: &[u8]| {
    let _ = parse_employee_addresses(data);
});
