//! The SNS HTTP-subscription envelope (`POST /v1/ingest/sns`): any bytes parse to an envelope or
//! a clear error, never a panic.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = vigil::ingest::SnsEnvelope::parse(data);
});
