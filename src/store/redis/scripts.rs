//! The Lua scripts the Redis store runs, one file each under `lua/` (named for what it does, its
//! `KEYS`/`ARGV` at its top), loaded at build time. Every write is one script, so the version
//! guard, the indexes, the timeline and the outbox change together or not at all. Each runs by
//! its SHA1 (`EVALSHA`), loaded into Redis the first time Redis does not know it.

use ::redis::Script;

pub(super) struct Scripts {
    /// One transition, all or nothing.
    pub(super) commit: Script,
    /// The end of one delivery attempt.
    pub(super) finish: Script,
    /// Promotes due outbox rows into the stream and hands this replica its share.
    pub(super) deliveries_due: Script,
    /// The earliest `not_before` among rows not yet handed out.
    pub(super) next_delivery: Script,
    /// Newest first, from one index.
    pub(super) incidents: Script,
    /// The open incident and last change of a fingerprint.
    pub(super) fingerprint: Script,
    /// Removes idle consumers that hold nothing (at connect).
    pub(super) prune_consumers: Script,
    /// Every open incident, through the open-fingerprint index.
    pub(super) open_incidents: Script,
    /// Resolved incidents by resolve time, the latest first.
    pub(super) resolved_since: Script,
    /// One bounded prune pass.
    pub(super) prune: Script,
    /// The next step of indexing older resolved incidents in `resolvedat`.
    pub(super) backfill: Script,
}

impl Scripts {
    pub(super) fn new() -> Self {
        Self {
            commit: Script::new(include_str!("lua/commit.lua")),
            finish: Script::new(include_str!("lua/finish_delivery.lua")),
            deliveries_due: Script::new(include_str!("lua/hand_out_due_deliveries.lua")),
            next_delivery: Script::new(include_str!("lua/next_delivery.lua")),
            incidents: Script::new(include_str!("lua/list_incidents.lua")),
            fingerprint: Script::new(include_str!("lua/fingerprint_state.lua")),
            prune_consumers: Script::new(include_str!("lua/remove_idle_consumers.lua")),
            open_incidents: Script::new(include_str!("lua/open_incidents.lua")),
            resolved_since: Script::new(include_str!("lua/resolved_since.lua")),
            prune: Script::new(include_str!("lua/prune.lua")),
            backfill: Script::new(include_str!("lua/backfill_resolved_index.lua")),
        }
    }
}
