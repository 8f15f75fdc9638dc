//! The `Message` of an SNS Notification: a CloudWatch alarm (also Route 53 health-check alarms),
//! and the same text through the path every Notification takes, alarm or not.
#![no_main]
use chrono::TimeZone as _;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let message = String::from_utf8_lossy(data);
    let _ = vigil::ingest::cloudwatch::parse_alarm(&message, Some("fuzz-message-id".into()), None);
    let now = chrono::Utc
        .with_ymd_and_hms(2026, 11, 25, 10, 0, 0)
        .unwrap();
    let _ = vigil::ingest::parse_notification(
        "arn:aws:sns:ap-southeast-1:123456789012:oncall-alerts",
        None,
        &message,
        "fuzz-message-id",
        "2026-11-20T02:15:41.452Z",
        now,
    );
});
