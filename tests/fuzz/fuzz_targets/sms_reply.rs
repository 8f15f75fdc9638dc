//! An inbound two-way SMS (the `Message` of an SNS Notification) and the reply's command.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let message = String::from_utf8_lossy(data);
    if let Some(Ok(sms)) = vigil::ingest::sms_reply::parse_inbound(&message) {
        let _ = vigil::ingest::sms_reply::parse_command(&sms.body);
    }
    let _ = vigil::ingest::sms_reply::parse_command(&message);
});
