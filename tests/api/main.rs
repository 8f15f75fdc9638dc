//! The API test binary: every test starts a real app on a random port (or a real `vigil`
//! process), speaks HTTP to it, and checks what a user would see.

/// The helpers every test binary shares (`tests/support`).
pub(crate) use vigil_testkit as helpers;

/// The binary under test, for the tests that run a real `vigil serve`.
pub(crate) const VIGIL: &str = env!("CARGO_BIN_EXE_vigil");

mod ack_link;
mod bad_input;
mod channels;
mod cli;
mod clocks;
mod console;
mod deploy;
mod escalation;
mod fixtures;
mod growth;
mod listeners;
mod observability;
mod operations;
mod pacing;
mod plugin_channel;
mod promise;
mod recovery;
mod reload;
mod restart;
mod slow_clients;
mod sms_reply;
mod sns;
mod sources;
mod standby;
mod standby_records;
mod standby_replicas;
mod store_failures;
mod time;
mod two_way;
mod unreached;
mod watchdog;
