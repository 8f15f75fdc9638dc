//! The routing policy (`routing/*.yaml`): who is paged for what, how, and when.
//!
//! In: a directory. Out: a compiled, immutable [`Policy`] that `classify`, `oncall` and the
//! escalation stage read, or every [`ConfigError`] found, each with file, line and key.
//!
//! Loading runs in phases and touches nothing outside its arguments (no env lookups, no network,
//! no live state), so `vigil check`, SIGHUP and `POST /v1/admin/reload` can all call
//! [`load_dir`] and swap the result in only when it is `Ok`:
//! 1. **read** every `*.yaml` / `*.yml` file directly in the directory, sorted by file name;
//! 2. **parse** each one into a [`routing::RoutingFile`] (unknown keys, bad durations, bad phone
//!    numbers fail here, located by the YAML parser);
//! 3. **merge** the files into one policy: the maps (`severities`, `people`, `schedules`,
//!    `channels`, `policies`, `heartbeats`) are unioned and a name defined in two files is an
//!    error naming both; `timezone`, `sources`, `business_hours` and `flapping` may appear in at
//!    most one file; `rules` are concatenated in file-name order (so `10-rules.yaml` is
//!    evaluated before `20-rules.yaml`), and so are `silences` and `inhibit_rules`;
//! 4. **compile**: resolve every name, check the desk's invariants, compile matchers.
//!
//! All errors are collected before returning. When any file fails to parse, the semantic checks
//! are skipped: they would run against a policy with a file missing and report noise ("unknown
//! channel" for every channel of the broken file) that hides the real error.
//!
//! ## Rooms
//! - `load`: the read phase (the only file I/O), then hands the texts to `compile`;
//! - `routing`: the files as written (the parse model: serde structs, unknown keys refused);
//! - `channel`: channel types as plug-ins: the data part of each type's descriptor
//!   ([`ChannelType`]: routing keys and their forms, whom it reaches, limits, failover role),
//!   submitted by its file in `notify/`, the registry of them ([`channel_types`]) and a
//!   compiled channel ([`ChannelSpec`]);
//! - `templates`: the message [`templates::Templates`] of one load, read and test-rendered
//!   (rendering a message is `notify::render`'s);
//! - `compile/`: parse → merge → build each section → the desk invariants (see its module doc
//!   for its rooms: `ctx`, `merge`, `schedules`, `channels`, `escalation`, `rules`, `silences`,
//!   `sources`, `invariants`);
//! - `policy`: the compiled model every stage reads ([`Policy`] and its parts);
//! - `escalation`: when a chain's steps come due ([`EscalationPolicy::due_at`], `plan`);
//! - `error`: [`ConfigError`] and how a list of them prints;
//! - `matcher`: the Alertmanager matcher language ([`Matcher`]), used by rules, silences and
//!   inhibition rules;
//! - `suppress`: [`Silence`]s and [`InhibitRule`]s, shared by `routing/` and the API;
//! - `calendar`: weekly windows, the business-hours [`Calendar`], times written in the policy's
//!   zone;
//! - `heartbeat`, `watchdog`: the heartbeat and watchdog models and their own rules;
//! - `locate`: key paths and finding their line in the YAML text;
//! - `reload`: the live [`PolicyHandle`] and hot reload;
//! - `tests_support` (tests only): the shipped `routing/` directory, a small base policy and the
//!   table runners the section tests share.
//!
//! Imports run one way (each room names only the rooms after the arrow; none imports this file):
//! - `reload` → `load`, `templates`, `policy`, `error` (and, above config, `metrics`: see below)
//! - `load` → `compile`, `policy`, `error`
//! - `compile/` → `policy`, `channel`, `suppress`, `matcher`, `calendar`, `heartbeat`,
//!   `watchdog`, `routing`, `locate`, `error`
//! - `policy` → `channel`, `suppress`, `matcher`, `calendar`, `heartbeat`, `watchdog`
//! - `routing` → `channel` (a channel's `type` and keys are checked against the registry as the
//!   file is parsed)
//! - `templates` → `error` (and `domain`)
//! - `escalation` → `policy`
//! - `suppress` → `matcher`, `locate`
//! - `watchdog` → `routing`, `locate`
//! - `matcher`, `heartbeat`, `channel` → `domain` only; `calendar`, `locate`, `error` → nothing.
//!
//! This file only declares the rooms and re-exports their public names, so paths such as
//! `config::Policy` and `config::Matcher` stay as they were.
//!
//! ## What config must not import
//! Only `crate::domain` and crates from Cargo.toml: not `ingest` (its sibling; the label-name
//! rule both use is [`crate::domain::is_label_name`]), nor anything above (`classify`,
//! `incident`, `escalate`, `oncall`, `store`, `notify`, `pipeline`, `http`, `app`, `settings`).
//! The one exception is `reload`, which counts reloads in `crate::metrics`; it is the hot-reload
//! loop, which belongs above the stages. The templates are config's own (`templates`); channel
//! types reach config as data through the registry, never as an import of `notify`.

pub mod calendar;
pub mod channel;
pub mod compile;
pub mod error;
mod escalation;
pub mod heartbeat;
pub mod load;
pub mod locate;
pub mod matcher;
pub mod policy;
pub mod reload;
pub mod routing;
pub mod suppress;
pub mod templates;
pub mod watchdog;

#[cfg(test)]
pub(crate) mod tests_support;

pub use calendar::{Calendar, Days, WeeklyWindow};
pub use channel::{
    ChannelSpec, ChannelType, ChannelTypes, Contact, Failover, Form, Key, KeyValue, Limits, Reach,
    channel_types,
};
pub use compile::is_region_code;
pub use error::{ConfigError, format_errors};
pub use heartbeat::Heartbeat;
pub use load::load_dir;
pub use locate::{PathSeg, line_of};
pub use matcher::{MatchOp, Matcher, MatcherError, REGEX_DFA_SIZE_LIMIT, REGEX_SIZE_LIMIT};
pub use policy::{
    CompiledRule, DEFAULT_STORM_BOUND, EscalationPolicy, Layer, Override, Person, Policy,
    Reconcile, Rotation, Schedule, SeverityPolicy, Step, StormPolicy, Target,
};
pub use reload::{LastReload, PolicyHandle, ReloadOutcome};
pub use suppress::{
    InhibitRule, MAX_API_SILENCE_REGEXES, MAX_API_SILENCES, MAX_SILENCE_MATCHERS, Silence,
    SilenceError, SilenceSpec,
};
pub use watchdog::WatchdogSpec;
