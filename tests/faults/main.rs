//! The fault campaign: hostile input against every parser (property tests) and every endpoint
//! (a generated HTTP campaign), a real `vigil serve` SIGKILLed under load, and a provider outage
//! on the injected clock. Each part prints what it counted, and also appends that line to
//! `target/fault-campaign.txt`, which `scripts/test` shows at the end (cargo test hides a passing
//! test's output).

// The API tests' helpers; this binary uses only part of them.
#[allow(dead_code)]
#[path = "../api/helpers.rs"]
mod helpers;

mod campaign;
mod http_campaign;
mod kill9;
mod outage;
mod parsers;
