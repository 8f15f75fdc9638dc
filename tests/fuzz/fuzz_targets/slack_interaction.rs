//! Slack interactivity (`POST /v1/slack/interactions`): the request signature check over the
//! headers given in the input's first two lines, and the form-encoded `payload` that follows.
#![no_main]
use libfuzzer_sys::fuzz_target;
use vigil::settings::Secret;

fuzz_target!(|data: &[u8]| {
    let mut parts = data.splitn(3, |b| *b == b'\n');
    let timestamp = parts.next().map(String::from_utf8_lossy);
    let signature = parts.next().map(String::from_utf8_lossy);
    let body = parts.next().unwrap_or_default();
    let secret = Secret::new("8f2b6c1e9d4a7f3b0e5c2d8a6b1f4e9c");
    let _ = vigil::ingest::slack::verify_request(
        &secret,
        timestamp.as_deref(),
        signature.as_deref(),
        body,
        1_764_064_800,
    );
    let _ = vigil::ingest::slack::parse_interaction(data);
    let _ = vigil::ingest::slack::parse_interaction(body);
});
