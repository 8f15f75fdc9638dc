//! An AWS Health event from EventBridge (`POST /v1/ingest/eventbridge`, `source: aws.health`):
//! straight to its parser, and through the endpoint's dispatch.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(v) = serde_json::from_slice::<serde_json::Value>(data) {
        let _ = vigil::ingest::aws_health::parse_value(&v);
    }
    let _ = vigil::ingest::eventbridge::parse_event(data);
});
