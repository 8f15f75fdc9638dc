//! The `Message` of an SNS Notification from RDS or ElastiCache: straight to their parsers, and
//! through the path every Notification takes.
#![no_main]
use chrono::TimeZone as _;
use libfuzzer_sys::fuzz_target;

const TOPIC: &str = "arn:aws:sns:ap-southeast-1:123456789012:oncall-alerts";

fuzz_target!(|data: &[u8]| {
    let message = String::from_utf8_lossy(data);
    let now = chrono::Utc
        .with_ymd_and_hms(2026, 11, 25, 10, 0, 0)
        .unwrap();
    if let Ok(serde_json::Value::Object(map)) = serde_json::from_str(&message) {
        let _ = vigil::ingest::rds::parse_sns(&map, TOPIC, "fuzz-message-id", now);
        let _ = vigil::ingest::elasticache::parse_sns(&map, TOPIC, "fuzz-message-id", now);
    }
    let _ = vigil::ingest::parse_notification(
        TOPIC,
        Some("RDS Notification Message"),
        &message,
        "fuzz-message-id",
        "2026-11-20T02:15:41.452Z",
        now,
    );
});
