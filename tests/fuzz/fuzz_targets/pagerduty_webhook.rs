//! PagerDuty v3 webhooks (`POST /v1/pagerduty/webhook`): the `X-PagerDuty-Signature` header in
//! the input's first line (several `v1=` signatures), and the JSON body that follows.
#![no_main]
use libfuzzer_sys::fuzz_target;
use vigil::settings::Secret;

fuzz_target!(|data: &[u8]| {
    let (header, body) = match data.iter().position(|b| *b == b'\n') {
        Some(at) => (String::from_utf8_lossy(&data[..at]), &data[at + 1..]),
        None => (String::from_utf8_lossy(data), &[][..]),
    };
    let secrets = [Secret::new("pdwhsec-fuzz")];
    let _ = vigil::ingest::pagerduty::verify_signature(&secrets, Some(&header), body);
    let _ = vigil::ingest::pagerduty::parse_webhook(data);
    let _ = vigil::ingest::pagerduty::parse_webhook(body);
});
