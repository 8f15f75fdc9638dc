//! Loops that talk to AWS on vigil's own initiative, beside the request path: today the
//! watchdog's heartbeat (`watchdog`).

pub mod watchdog;
