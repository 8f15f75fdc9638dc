//! An EventBridge "CloudWatch Alarm State Change" event (`POST /v1/ingest/eventbridge`).
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = vigil::ingest::eventbridge::parse_event(data);
});
