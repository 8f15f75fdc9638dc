//! The trading bot's events (`POST /v1/events`), one object or a batch.
#![no_main]
use chrono::TimeZone as _;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let now = chrono::Utc
        .with_ymd_and_hms(2026, 11, 25, 10, 0, 0)
        .unwrap();
    let _ = vigil::ingest::parse_events(data, now);
});
