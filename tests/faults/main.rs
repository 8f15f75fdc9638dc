//! The fault campaign: hostile input against every parser (property tests) and every endpoint
//! (a generated HTTP campaign), a real `vigil serve` SIGKILLed under load, and a provider outage
//! on the injected clock. Each part prints what it counted, and also appends that line to
//! `target/fault-campaign.txt`, which `scripts/test` shows at the end (cargo test hides a passing
//! test's output).

/// The helpers every test binary shares (`tests/support`).
pub(crate) use vigil_testkit as helpers;

/// The binary under test, for the tests that run a real `vigil serve`.
pub(crate) const VIGIL: &str = env!("CARGO_BIN_EXE_vigil");

mod campaign;
mod http_campaign;
mod kill9;
mod outage;
mod parsers;
