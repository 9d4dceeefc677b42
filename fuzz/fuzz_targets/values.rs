//! The values loader: any text must give courses or a configuration error, quickly
//! (libFuzzer's -timeout catches a parse that is slow on its input), never a panic.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use roster_sync::config::parse_profiles;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    for key in [None, Some("custom.profiles")] {
        if let Ok(profiles) = parse_profiles(text, Path::new("values.yaml"), key) {
            for course in profiles.courses {
                // Every accepted key is a course key, so it is a safe file name.
                assert!(!course.key.contains('/') && !course.key.starts_with('.'));
            }
        }
    }
});
