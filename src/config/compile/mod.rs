//! The **parse → merge → compile** phases of a policy load, one room per part of the work.
//!
//! In: the text of every file of the routing directory ([`SourceFile`]s, in load order). Out: a
//! [`Policy`] whose names all resolve and which keeps the desk's invariants, or every
//! [`ConfigError`] found (never just the first: an operator fixing a policy at 3 a.m. should see
//! the whole list in one `vigil check`).
//!
//! This file owns the phases and their order: parsing each file (a YAML error becomes a located
//! [`ConfigError`]) and `build`, which calls the builders and the checks in a fixed order (the
//! order errors are reported in, and so the order `vigil check` prints them). The rooms:
//! - `ctx`: what every builder shares: [`SourceFile`], the error collector `Ctx` that locates
//!   each problem by file, line and key, and the `key_path!` macro;
//! - `merge`: the files as one policy, a name defined in two files or a once-only key set twice
//!   reported with both places;
//! - `schedules`: people, schedules (layers, restrictions, overrides) and the business-hours
//!   calendar;
//! - `channels`: channels (each checked against its type's descriptor in the registry: its
//!   keys, env var names, Slack names, URLs, email lists) and `last_resort`;
//! - `escalation`: the severity table (business-hours deferral never on critical) and the
//!   escalation policies (steps, targets, repeat, `ack_timeout`);
//! - `rules`: classification rules (their matchers, labels, `group_by`, the final catch-all);
//! - `silences`: silences, inhibition rules and flapping;
//! - `sources`: `sources` (SNS topics and dead-letter queues, CloudWatch reconciliation and the
//!   watchdog), heartbeats and the storm bounds;
//! - `invariants`: the checks across sections (the desk invariants): every person a step reaches
//!   has the contact its channels need; every step of a policy critical alerts can use reaches
//!   people through two different channel types; every schedule such a step targets has someone
//!   on call at every hour of the week.
//!
//! Imports run one way: this file → the builders → `merge` → `ctx` (the builders also use `ctx`
//! directly). Among the builders,
//! `escalation` → `invariants` (the contact check, per step) → `schedules` (who a schedule can
//! put on call) → `channels` (the Slack id rule; a channel's type), and `escalation` →
//! `channels` (whom a channel reaches); no builder imports this file. Label
//! [`Matcher`](super::Matcher)s are parsed by [`super::matcher`].

use std::sync::LazyLock;

use regex::Regex;

use super::error::ConfigError;
use super::policy::Policy;
use super::routing::RoutingFile;
use ctx::{Ctx, key_path};
use merge::{Merged, merge};
use sources::Sources;

mod channels;
mod ctx;
mod escalation;
mod invariants;
mod merge;
mod rules;
mod schedules;
mod silences;
mod sources;

pub use ctx::SourceFile;
pub use sources::{
    DEFAULT_RECONCILE_INTERVAL, DEFAULT_SNS_MAX_AGE, MIN_RECONCILE_INTERVAL, is_region_code,
};

/// Parses, merges and compiles `files` (already in load order).
pub fn compile(files: &[SourceFile]) -> Result<Policy, Vec<ConfigError>> {
    let mut errors = Vec::new();
    let mut docs = Vec::with_capacity(files.len());
    for file in files {
        match parse_file(&file.text) {
            Ok(doc) => docs.push(doc),
            Err(e) => errors.push(parse_error(file, &e)),
        }
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    let mut ctx = Ctx { files, errors };
    let merged = merge(&mut ctx, &docs);
    let policy = build(&mut ctx, &merged);
    if ctx.errors.is_empty() {
        Ok(policy)
    } else {
        Err(ctx.errors)
    }
}

/// Parses one file. A file with no content (only comments) is an empty [`RoutingFile`].
fn parse_file(text: &str) -> Result<RoutingFile, yaml_serde::Error> {
    yaml_serde::from_str::<Option<RoutingFile>>(text).map(Option::unwrap_or_default)
}

/// Turns a yaml_serde error into a located [`ConfigError`]. Its message reads
/// `path.to.key: what went wrong at line L column C`: the path becomes the error's key (with the
/// offending field appended for unknown fields) and the location its line.
fn parse_error(file: &SourceFile, e: &yaml_serde::Error) -> ConfigError {
    static AT: LazyLock<Regex> =
        LazyLock::new(|| Regex::new(r" at line \d+ column \d+$").expect("static regex is valid"));
    static UNKNOWN: LazyLock<Regex> =
        LazyLock::new(|| Regex::new(r"^unknown field `([^`]*)`").expect("static regex is valid"));
    let full = e.to_string();
    let mut message = AT.replace(&full, "").into_owned();
    let mut key = String::new();
    if let Some((head, rest)) = message.split_once(": ")
        && !head.is_empty()
        && !head.contains(char::is_whitespace)
    {
        key = head.to_string();
        message = rest.to_string();
    }
    if let Some(field) = UNKNOWN.captures(&message).map(|c| c[1].to_string()) {
        key = if key.is_empty() {
            field
        } else {
            format!("{key}.{field}")
        };
    }
    ConfigError {
        file: file.path.clone(),
        line: e.location().map(|l| l.line()),
        key,
        message,
    }
}

/// Builds every section and checks the invariants across them. The order is the order errors
/// are reported in (`vigil check` prints them as found).
fn build(ctx: &mut Ctx<'_>, m: &Merged<'_>) -> Policy {
    let timezone = build_timezone(ctx, m);
    let people = schedules::build_people(ctx, m);
    let schedules = schedules::build_schedules(ctx, m, timezone);
    let channels = channels::build_channels(ctx, m);
    let policies = escalation::build_policies(ctx, m);
    let severities = escalation::build_severities(ctx, m);
    let rules = rules::build_rules(ctx, m);
    let critical = invariants::critical_policies(m);
    invariants::check_critical_paths(ctx, m, &critical);
    invariants::check_schedule_coverage(ctx, m, &schedules, &critical);
    let Sources {
        sns_allowed_topics,
        sns_max_age,
        sns_dead_letter_queues,
        reconcile,
    } = sources::build_sources(ctx, m);
    let business_hours = schedules::build_business_hours(ctx, m, timezone);
    let silences = silences::build_silences(ctx, m, timezone);
    let drills = silences::build_drills(ctx, m, timezone);
    let inhibit_rules = silences::build_inhibit_rules(ctx, m);
    let heartbeats = sources::build_heartbeats(ctx, m);
    let flap_cooldown = silences::build_flapping(ctx, m);
    let last_resort = channels::build_last_resort(ctx, m);
    let storm = sources::build_storm(ctx, m);
    let watchdog = sources::build_watchdog(ctx, m);

    let digest = {
        use sha2::{Digest, Sha256};
        let mut h = Sha256::new();
        for f in ctx.files {
            h.update(f.text.as_bytes());
        }
        h.finalize().iter().map(|b| format!("{b:02x}")).collect()
    };

    Policy {
        timezone,
        severities,
        people,
        schedules,
        channels,
        policies,
        rules,
        sns_allowed_topics,
        sns_max_age,
        sns_dead_letter_queues,
        reconcile,
        business_hours,
        silences,
        drills,
        inhibit_rules,
        heartbeats,
        flap_cooldown,
        last_resort,
        storm,
        watchdog,
        digest,
    }
}

/// `timezone`: an IANA name; UTC when no file sets it.
fn build_timezone(ctx: &mut Ctx<'_>, m: &Merged<'_>) -> chrono_tz::Tz {
    match m.timezone {
        None => chrono_tz::UTC,
        Some((fi, name)) => name.parse().unwrap_or_else(|_| {
            ctx.err(
                fi,
                key_path!["timezone"],
                format!(
                    "unknown time zone {name:?} (expected an IANA name such as Asia/Singapore)"
                ),
            );
            chrono_tz::UTC
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::super::format_errors;
    use crate::config::tests_support::*;

    /// Unknown keys (a pasted secret among them), bad durations and bad phone numbers fail in the
    /// parse phase, located by the YAML parser.
    #[test]
    fn parse_errors_name_file_line_and_key() {
        assert_single_located_errors(&[
            case(
                "unknown key",
                "policy.yaml",
                POLICY.replace("  calm:\n", "  calm:\n    repaet: 2\n"),
                "repaet",
                "policies.calm.repaet",
                "unknown field `repaet`",
            ),
            case(
                "bad duration",
                "policy.yaml",
                POLICY.replace("after: 5m", "after: 5 fortnights"),
                "5 fortnights",
                "policies.critical.steps[1].after",
                "fortnights",
            ),
            case(
                "bad phone",
                "people.yaml",
                PEOPLE.replace("+6598765432", "98765432"),
                "98765432",
                "people.raj.phone",
                "E.164",
            ),
            case(
                "a literal secret is an unknown key",
                "channels.yaml",
                CHANNELS.replace(
                    "    token_env: VIGIL_SLACK_BOT_TOKEN",
                    "    token: xoxb-1234",
                ),
                "token: xoxb",
                "channels.slack.token",
                "unknown field `token`",
            ),
        ]);
    }

    /// The time zone is an IANA name.
    #[test]
    fn an_unknown_time_zone_is_refused() {
        assert_each_edit_is_refused(&[(
            "policy.yaml",
            "timezone: Asia/Singapore",
            "timezone: Asia/Singapur",
            "unknown time zone",
        )]);
    }

    #[test]
    fn independent_errors_in_two_files_are_all_reported() {
        let policy = POLICY.replace("via: [slack]", "via: [slack, teams]");
        let rules = RULES
            .replace("timeout|http_5xx", "timeout|http_5xx|(")
            .replace(
                "  - name: catch-all\n    matchers: []\n    severity: medium\n",
                "",
            );
        let (dir, result) = load_with(&[("policy.yaml", &policy), ("rules.yaml", &rules)]);
        let errors = result.unwrap_err();
        let text = format_errors(&errors);
        assert_eq!(errors.len(), 3, "{text}");
        let found = |file: &str, key: &str, fragment: &str| {
            errors
                .iter()
                .find(|e| e.file == dir.path().join(file) && e.key == key)
                .unwrap_or_else(|| panic!("no {file} {key} in\n{text}"))
                .message
                .contains(fragment)
        };
        assert!(found(
            "policy.yaml",
            "policies.calm.steps[0].via[1]",
            r#"unknown channel "teams""#
        ));
        assert!(found(
            "rules.yaml",
            "rules[0].matchers[1]",
            "regular expression"
        ));
        assert!(found("rules.yaml", "rules[0]", "catch-all"));
    }

    #[test]
    fn parse_errors_in_every_file_are_reported() {
        let people = PEOPLE.replace("email: cto@example.com", "email: cto");
        let channels = CHANNELS.replace("type: sms", "type: carrier_pigeon");
        let (dir, result) = load_with(&[("people.yaml", &people), ("channels.yaml", &channels)]);
        let errors = result.unwrap_err();
        assert_eq!(errors.len(), 2, "{}", format_errors(&errors));
        assert_eq!(errors[0].file, dir.path().join("channels.yaml"));
        assert_eq!(errors[0].line, Some(line_with(&channels, "carrier_pigeon")));
        assert!(
            errors[0].message.contains("carrier_pigeon"),
            "{}",
            errors[0]
        );
        assert_eq!(errors[1].file, dir.path().join("people.yaml"));
        assert_eq!(errors[1].key, "people.cto.email");
        assert_eq!(errors[1].line, Some(line_with(&people, "email: cto")));
    }
}
