//! The CloudWatch alarm carried in an SNS `Message` (also Route 53 health-check alarms).
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let message = String::from_utf8_lossy(data);
    let _ = vigil::ingest::cloudwatch::parse_alarm(&message, Some("fuzz-message-id".into()));
});
