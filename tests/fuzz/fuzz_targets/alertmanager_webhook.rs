//! A Prometheus Alertmanager webhook notification (`POST /v1/ingest/alertmanager`).
#![no_main]
use chrono::TimeZone as _;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let now = chrono::Utc
        .with_ymd_and_hms(2026, 11, 25, 10, 0, 0)
        .unwrap();
    let _ = vigil::ingest::alertmanager::parse_webhook(data, now);
});
