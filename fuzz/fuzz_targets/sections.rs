//! The Classes API parser and the instructor rule on what it returns.
#![no_main]

use std::collections::BTreeSet;

use libfuzzer_sys::fuzz_target;
use roster_sync::source::api::{instructor_uids, parse_sections};

fuzz_target!(|data: &[u8]| {
    if let Ok(sections) = parse_sections(data) {
        let excluded = BTreeSet::from(["APRX".to_string()]);
        for uid in instructor_uids(&sections, &excluded) {
            assert!(!uid.is_empty());
        }
    }
});
