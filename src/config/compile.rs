//! The **parse → merge → compile** phases of a policy load.
//!
//! In: the text of every file of the routing directory. Out: a [`Policy`] whose names all resolve
//! and which keeps the desk's invariants, or every [`ConfigError`] found (never just the first:
//! an operator fixing a policy at 3 a.m. should see the whole list in one `vigil check`).
//!
//! Checks, beyond what the YAML model enforces: the time zone exists; all four severities are
//! present and name existing policies; schedules have members who exist and a positive shift;
//! steps exist, their `after` never decreases, every target and channel exists, and every person a
//! step reaches by `sms`/`phone` has a phone (by `email` without a fixed `to`: an email) — for a
//! schedule, all of its members, since any of them may be on call when the step fires; `repeat`
//! has a `repeat_delay`; rule matchers parse, rule names are unique and the last rule is a
//! catch-all; environment variable names and SNS topic ARNs are well-formed; and the **desk
//! invariants**: every step of every policy that critical alerts can use reaches people through
//! at least two different channel types among pagerduty, sms, phone, email and slack; every
//! schedule such a step targets has someone on call at every hour of the week (its layers'
//! restrictions leave no gap); and business-hours deferral is never set on critical.
//!
//! Also checked: a schedule has either `rotation` or `layers`, layer names are unique, windows
//! and calendar times are `HH:MM`, overrides and silences end after they start, silences have a
//! matcher that needs a label value, a `group_window` comes with `group_by`, durations that must
//! be positive (`ack_timeout`, `group_window`, heartbeat `interval`, flapping `cooldown`) are.
//!
//! Also here: label [`Matcher`]s (Alertmanager syntax) and [`CompiledRule`], which `classify` uses.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::path::PathBuf;
use std::sync::LazyLock;
use std::time::Duration;

use chrono::{DateTime, NaiveDateTime, TimeZone, Utc};
use regex::Regex;

use super::calendar::{Calendar, Days, WeeklyWindow, parse_date, parse_hhmm};
use super::heartbeat::{Heartbeat, RESERVED_LABELS, is_heartbeat_name};
use super::locate::{PathSeg, line_of};
use super::routing::{
    BusinessHoursConfig, ChannelConfig, ChannelType, DayConfig, FlappingConfig, HeartbeatConfig,
    InhibitRuleConfig, PersonConfig, PolicyConfig, RestrictConfig, RoutingFile, RuleConfig,
    ScheduleConfig, SeverityConfig, SilenceConfig, SourcesConfig, StormConfig,
};
use super::suppress::{InhibitRule, Problem, Silence};
use super::{
    ChannelSpec, ConfigError, EscalationPolicy, Layer, Override, Person, Policy, Rotation,
    Schedule, SeverityPolicy, Step, StormPolicy, Target,
};
use crate::domain::{Labels, Severity};

/// One file of the routing directory, as read from disk.
#[derive(Debug, Clone)]
pub struct SourceFile {
    /// Where it was read from (shown in errors).
    pub path: PathBuf,
    /// Its full text (kept to locate errors by line).
    pub text: String,
}

/// Builds a key path: `path!["policies", name, "steps", i]`.
macro_rules! path {
    ($($seg:expr),* $(,)?) => { vec![$(PathSeg::from($seg)),*] };
}

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

/// Error collector with access to the file texts, to locate each error.
struct Ctx<'a> {
    files: &'a [SourceFile],
    errors: Vec<ConfigError>,
}

impl Ctx<'_> {
    fn err(&mut self, file: usize, path: Vec<PathSeg>, message: impl Into<String>) {
        let f = &self.files[file];
        self.errors.push(ConfigError {
            file: f.path.clone(),
            line: line_of(&f.text, &path),
            key: super::locate::render(&path),
            message: message.into(),
        });
    }

    /// `file:line` of a key, for messages that point at a second place.
    fn place(&self, file: usize, path: Vec<PathSeg>) -> String {
        let f = &self.files[file];
        match line_of(&f.text, &path) {
            Some(line) => format!("{}:{line}", f.path.display()),
            None => f.path.display().to_string(),
        }
    }
}

/// A value and the index of the file it came from.
type From<'a, T> = (usize, &'a T);

/// The whole directory as one policy, each part remembering its file.
struct Merged<'a> {
    timezone: Option<From<'a, String>>,
    sources: Option<From<'a, SourcesConfig>>,
    /// The first file with a `severities` key, to locate "missing severity" errors.
    severities_file: Option<usize>,
    severities: BTreeMap<Severity, From<'a, SeverityConfig>>,
    people: BTreeMap<&'a str, From<'a, PersonConfig>>,
    schedules: BTreeMap<&'a str, From<'a, ScheduleConfig>>,
    channels: BTreeMap<&'a str, From<'a, ChannelConfig>>,
    policies: BTreeMap<&'a str, From<'a, PolicyConfig>>,
    /// (file, index within that file's `rules`, rule), in evaluation order.
    rules: Vec<(usize, usize, &'a RuleConfig)>,
    business_hours: Option<From<'a, BusinessHoursConfig>>,
    flapping: Option<From<'a, FlappingConfig>>,
    last_resort: Option<From<'a, Vec<String>>>,
    storm: Option<From<'a, StormConfig>>,
    /// (file, index within that file's list, entry), in file order.
    silences: Vec<(usize, usize, &'a SilenceConfig)>,
    inhibit_rules: Vec<(usize, usize, &'a InhibitRuleConfig)>,
    heartbeats: BTreeMap<&'a str, From<'a, HeartbeatConfig>>,
}

fn merge<'a>(ctx: &mut Ctx<'_>, docs: &'a [RoutingFile]) -> Merged<'a> {
    let mut m = Merged {
        timezone: None,
        sources: None,
        severities_file: None,
        severities: BTreeMap::new(),
        people: BTreeMap::new(),
        schedules: BTreeMap::new(),
        channels: BTreeMap::new(),
        policies: BTreeMap::new(),
        rules: Vec::new(),
        business_hours: None,
        flapping: None,
        last_resort: None,
        storm: None,
        silences: Vec::new(),
        inhibit_rules: Vec::new(),
        heartbeats: BTreeMap::new(),
    };
    for (fi, doc) in docs.iter().enumerate() {
        set_once(ctx, &mut m.timezone, "timezone", fi, doc.timezone.as_ref());
        set_once(ctx, &mut m.sources, "sources", fi, doc.sources.as_ref());
        set_once(
            ctx,
            &mut m.business_hours,
            "business_hours",
            fi,
            doc.business_hours.as_ref(),
        );
        set_once(ctx, &mut m.flapping, "flapping", fi, doc.flapping.as_ref());
        set_once(
            ctx,
            &mut m.last_resort,
            "last_resort",
            fi,
            doc.last_resort.as_ref(),
        );
        set_once(ctx, &mut m.storm, "storm", fi, doc.storm.as_ref());
        if let Some(sev) = &doc.severities {
            m.severities_file.get_or_insert(fi);
            for (k, v) in sev {
                insert_once(ctx, &mut m.severities, "severities", fi, *k, k.as_str(), v);
            }
        }
        for (k, v) in doc.people.iter().flatten() {
            insert_once(ctx, &mut m.people, "people", fi, k.as_str(), k, v);
        }
        for (k, v) in doc.schedules.iter().flatten() {
            insert_once(ctx, &mut m.schedules, "schedules", fi, k.as_str(), k, v);
        }
        for (k, v) in doc.channels.iter().flatten() {
            insert_once(ctx, &mut m.channels, "channels", fi, k.as_str(), k, v);
        }
        for (k, v) in doc.policies.iter().flatten() {
            insert_once(ctx, &mut m.policies, "policies", fi, k.as_str(), k, v);
        }
        for (ri, rule) in doc.rules.iter().flatten().enumerate() {
            m.rules.push((fi, ri, rule));
        }
        for (i, s) in doc.silences.iter().flatten().enumerate() {
            m.silences.push((fi, i, s));
        }
        for (i, r) in doc.inhibit_rules.iter().flatten().enumerate() {
            m.inhibit_rules.push((fi, i, r));
        }
        for (k, v) in doc.heartbeats.iter().flatten() {
            insert_once(ctx, &mut m.heartbeats, "heartbeats", fi, k.as_str(), k, v);
        }
    }
    m
}

/// Takes a top-level key that at most one file may set.
fn set_once<'a, V>(
    ctx: &mut Ctx<'_>,
    slot: &mut Option<From<'a, V>>,
    key: &str,
    fi: usize,
    value: Option<&'a V>,
) {
    let Some(value) = value else { return };
    match slot {
        Some((first, _)) => {
            let at = ctx.place(*first, path![key]);
            ctx.err(
                fi,
                path![key],
                format!("{key} is already set in {at}; set it in one file only"),
            );
        }
        None => *slot = Some((fi, value)),
    }
}

/// Adds a named entry unless another file already defined the name.
fn insert_once<'a, K: Ord, V>(
    ctx: &mut Ctx<'_>,
    map: &mut BTreeMap<K, From<'a, V>>,
    section: &str,
    fi: usize,
    key: K,
    name: &str,
    value: &'a V,
) {
    if let Some(&(first, _)) = map.get(&key) {
        let at = ctx.place(first, path![section, name]);
        ctx.err(
            fi,
            path![section, name],
            format!("{name:?} is already defined in {at}; a name may be defined in one file only"),
        );
    } else {
        map.insert(key, (fi, value));
    }
}

fn build(ctx: &mut Ctx<'_>, m: &Merged<'_>) -> Policy {
    let timezone = match m.timezone {
        None => chrono_tz::UTC,
        Some((fi, name)) => name.parse().unwrap_or_else(|_| {
            ctx.err(
                fi,
                path!["timezone"],
                format!(
                    "unknown time zone {name:?} (expected an IANA name such as Asia/Singapore)"
                ),
            );
            chrono_tz::UTC
        }),
    };
    let people = build_people(ctx, m);
    let schedules = build_schedules(ctx, m, timezone);
    let channels = build_channels(ctx, m);
    let policies = build_policies(ctx, m);
    let severities = build_severities(ctx, m);
    let rules = build_rules(ctx, m);
    let critical = critical_policies(m);
    check_critical_paths(ctx, m, &critical);
    check_schedule_coverage(ctx, m, &schedules, &critical);
    let Sources {
        sns_allowed_topics,
        sns_max_age,
        sns_dead_letter_queues,
        reconcile,
    } = build_sources(ctx, m);
    let business_hours = build_business_hours(ctx, m, timezone);
    let silences = build_silences(ctx, m, timezone);
    let inhibit_rules = build_inhibit_rules(ctx, m);
    let heartbeats = build_heartbeats(ctx, m);
    let flap_cooldown = m.flapping.map(|(fi, f)| {
        if f.cooldown.is_zero() {
            ctx.err(
                fi,
                path!["flapping", "cooldown"],
                "cooldown must be more than 0 (leave flapping out to page afresh every time)",
            );
        }
        f.cooldown
    });
    let mut last_resort = Vec::new();
    if let Some((fi, names)) = m.last_resort {
        for (i, name) in names.iter().enumerate() {
            if !m.channels.contains_key(name.as_str()) {
                ctx.err(
                    fi,
                    path!["last_resort", i],
                    format!("unknown channel {name:?}"),
                );
            } else if !last_resort.contains(name) {
                last_resort.push(name.clone());
            }
        }
    }
    let storm = build_storm(ctx, m);
    let watchdog = build_watchdog(ctx, m);

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
        inhibit_rules,
        heartbeats,
        flap_cooldown,
        last_resort,
        storm,
        watchdog,
        digest,
    }
}

/// `sources.cloudwatch.watchdog`, with its defaults; each problem located under that key.
fn build_watchdog(ctx: &mut Ctx<'_>, m: &Merged<'_>) -> Option<super::WatchdogSpec> {
    let (fi, src) = m.sources?;
    let cfg = src.cloudwatch.as_ref()?.watchdog.as_ref()?;
    let (spec, problems) = super::watchdog::compile(cfg);
    for (rest, message) in problems {
        let mut path = path!["sources", "cloudwatch", "watchdog"];
        path.extend(rest);
        ctx.err(fi, path, message);
    }
    Some(spec)
}

/// `storm`: every bound at least 1, per-source keys name sources that open incidents from
/// alerts (heartbeats are never grouped: each is its own, operator-made incident).
fn build_storm(ctx: &mut Ctx<'_>, m: &Merged<'_>) -> StormPolicy {
    let mut storm = StormPolicy::default();
    let Some((fi, cfg)) = m.storm else {
        return storm;
    };
    const AT_LEAST_ONE: &str =
        "must be at least 1 (new incidents per minute before a source's storm incident opens)";
    if let Some(n) = cfg.max_new_per_minute {
        if n == 0 {
            ctx.err(fi, path!["storm", "max_new_per_minute"], AT_LEAST_ONE);
        }
        storm.max_new_per_minute = n.max(1);
    }
    for (name, &n) in &cfg.sources {
        let source = match name.as_str() {
            "sns" => crate::domain::Source::Sns,
            "eventbridge" => crate::domain::Source::Eventbridge,
            "bot" => crate::domain::Source::Bot,
            "reconcile" => crate::domain::Source::Reconcile,
            other => {
                ctx.err(
                    fi,
                    path!["storm", "sources", name.as_str()],
                    format!(
                        "unknown source {other:?} (expected sns, eventbridge, bot or reconcile)"
                    ),
                );
                continue;
            }
        };
        if n == 0 {
            ctx.err(fi, path!["storm", "sources", name.as_str()], AT_LEAST_ONE);
        }
        storm.per_source.insert(source, n.max(1));
    }
    storm
}

fn build_severities(ctx: &mut Ctx<'_>, m: &Merged<'_>) -> BTreeMap<Severity, SeverityPolicy> {
    let mut out = BTreeMap::new();
    for sev in Severity::ALL {
        let Some(&(fi, cfg)) = m.severities.get(&sev) else {
            let fi = m.severities_file.unwrap_or(0);
            ctx.err(
                fi,
                path!["severities", sev.as_str()],
                format!(
                    "severity {sev:?} is missing; critical, high, medium and low are all required",
                    sev = sev.as_str()
                ),
            );
            continue;
        };
        let base = path!["severities", sev.as_str()];
        if cfg.respond_within.is_zero() {
            ctx.err(
                fi,
                [base.clone(), path!["respond_within"]].concat(),
                "respond_within must be more than 0",
            );
        }
        if !m.policies.contains_key(cfg.policy.as_str()) {
            ctx.err(
                fi,
                [base.clone(), path!["policy"]].concat(),
                format!("unknown policy {:?}", cfg.policy),
            );
        }
        if cfg.business_hours {
            let at = [base, path!["business_hours"]].concat();
            if sev == Severity::Critical {
                ctx.err(
                    fi,
                    at,
                    "business-hours deferral never applies to critical: a critical alert pages at once, day or night",
                );
            } else if m.business_hours.is_none() {
                ctx.err(
                    fi,
                    at,
                    "business_hours: true needs the top-level business_hours calendar (days, from, to, holidays)",
                );
            }
        }
        out.insert(
            sev,
            SeverityPolicy {
                respond_within: cfg.respond_within,
                policy: cfg.policy.clone(),
                business_hours: cfg.business_hours && sev != Severity::Critical,
            },
        );
    }
    out
}

fn build_people(ctx: &mut Ctx<'_>, m: &Merged<'_>) -> BTreeMap<String, Person> {
    let mut out = BTreeMap::new();
    for (&id, &(fi, p)) in &m.people {
        if p.name.trim().is_empty() {
            ctx.err(fi, path!["people", id, "name"], "name must not be empty");
        }
        if let Some(slack) = &p.slack
            && !is_slack_id(slack, &['U', 'W'])
        {
            ctx.err(
                fi,
                path!["people", id, "slack"],
                format!("{slack:?} is not a Slack member id (like U07QK3M2ZLP)"),
            );
        }
        out.insert(
            id.to_string(),
            Person {
                id: id.to_string(),
                name: p.name.clone(),
                phone: p.phone.clone(),
                email: p.email.clone(),
                slack: p.slack.clone(),
            },
        );
    }
    out
}

/// One layer as written: a `rotation:` or an entry of `layers:`.
struct LayerSource<'a> {
    /// Key path of the layer (`schedules.x.rotation` or `schedules.x.layers[1]`).
    base: Vec<PathSeg>,
    name: &'a str,
    members: &'a [String],
    every: Duration,
    start: &'a str,
    restrict: Option<&'a RestrictConfig>,
}

/// The layers of a schedule as written, or an error when it has neither or both forms.
fn layer_sources<'a>(
    ctx: &mut Ctx<'_>,
    fi: usize,
    id: &str,
    s: &'a ScheduleConfig,
) -> Vec<LayerSource<'a>> {
    match (&s.rotation, &s.layers) {
        (Some(r), None) => vec![LayerSource {
            base: path!["schedules", id, "rotation"],
            name: "rotation",
            members: &r.members,
            every: r.every,
            start: &r.start,
            restrict: None,
        }],
        (None, Some(layers)) => {
            if layers.is_empty() {
                ctx.err(
                    fi,
                    path!["schedules", id, "layers"],
                    "a schedule needs at least one layer",
                );
            }
            layers
                .iter()
                .enumerate()
                .map(|(li, l)| LayerSource {
                    base: path!["schedules", id, "layers", li],
                    name: &l.name,
                    members: &l.members,
                    every: l.every,
                    start: &l.start,
                    restrict: l.restrict.as_ref(),
                })
                .collect()
        }
        (Some(_), Some(_)) => {
            ctx.err(
                fi,
                path!["schedules", id, "layers"],
                "a schedule has either `rotation` (one layer) or `layers`, not both",
            );
            Vec::new()
        }
        (None, None) => {
            ctx.err(
                fi,
                path!["schedules", id],
                "a schedule needs `rotation` or `layers`",
            );
            Vec::new()
        }
    }
}

/// Every person a schedule can put on call: its layers' members and its overrides' people.
fn schedule_people(s: &ScheduleConfig) -> Vec<&str> {
    let members = s
        .rotation
        .iter()
        .flat_map(|r| r.members.iter())
        .chain(s.layers.iter().flatten().flat_map(|l| l.members.iter()))
        .chain(s.overrides.iter().map(|o| &o.person));
    let mut out: Vec<&str> = Vec::new();
    for id in members {
        if !out.contains(&id.as_str()) {
            out.push(id);
        }
    }
    out
}

fn build_schedules(
    ctx: &mut Ctx<'_>,
    m: &Merged<'_>,
    tz: chrono_tz::Tz,
) -> BTreeMap<String, Schedule> {
    let mut out = BTreeMap::new();
    for (&id, &(fi, s)) in &m.schedules {
        let mut layers = Vec::new();
        let mut names: Vec<&str> = Vec::new();
        for src in layer_sources(ctx, fi, id, s) {
            let at = |rest: Vec<PathSeg>| [src.base.clone(), rest].concat();
            if src.name.trim().is_empty() {
                ctx.err(fi, at(path!["name"]), "a layer name must not be empty");
            } else if names.contains(&src.name) {
                ctx.err(
                    fi,
                    at(path!["name"]),
                    format!("duplicate layer name {:?} in schedule {id:?}", src.name),
                );
            }
            names.push(src.name);
            if src.members.is_empty() {
                ctx.err(
                    fi,
                    at(path!["members"]),
                    "a rotation needs at least one member",
                );
            }
            for (i, member) in src.members.iter().enumerate() {
                if !m.people.contains_key(member.as_str()) {
                    ctx.err(
                        fi,
                        at(path!["members", i]),
                        format!("unknown person {member:?}"),
                    );
                }
            }
            if src.every.is_zero() {
                ctx.err(fi, at(path!["every"]), "every must be more than 0");
            }
            let start = parse_start(src.start, tz).unwrap_or_else(|msg| {
                ctx.err(fi, at(path!["start"]), msg);
                DateTime::<Utc>::UNIX_EPOCH
            });
            let restrict = src.restrict.and_then(|r| {
                window_of(
                    ctx,
                    fi,
                    at(path!["restrict"]),
                    &r.days,
                    &r.from,
                    &r.to,
                    true,
                )
            });
            layers.push(Layer {
                name: src.name.to_string(),
                rotation: Rotation {
                    members: src.members.to_vec(),
                    every: src.every,
                    start,
                    timezone: tz,
                },
                restrict,
            });
        }
        let mut overrides = Vec::with_capacity(s.overrides.len());
        for (oi, o) in s.overrides.iter().enumerate() {
            let at = |k: &str| path!["schedules", id, "overrides", oi, k];
            if !m.people.contains_key(o.person.as_str()) {
                ctx.err(fi, at("person"), format!("unknown person {:?}", o.person));
            }
            let start = parse_start(&o.start, tz).map_err(|msg| ctx.err(fi, at("start"), msg));
            let end = parse_start(&o.end, tz).map_err(|msg| ctx.err(fi, at("end"), msg));
            if let (Ok(start), Ok(end)) = (start, end) {
                if end <= start {
                    ctx.err(
                        fi,
                        at("end"),
                        format!("end ({end}) must be after start ({start})"),
                    );
                }
                overrides.push(Override {
                    schedule: id.to_string(),
                    person: o.person.clone(),
                    start,
                    end,
                    author: None,
                });
            }
        }
        out.insert(
            id.to_string(),
            Schedule {
                id: id.to_string(),
                layers,
                overrides,
            },
        );
    }
    out
}

/// Days and `HH:MM` times of a layer restriction or the business-hours calendar. Only a
/// restriction may run overnight (`to` not after `from`).
fn window_of(
    ctx: &mut Ctx<'_>,
    fi: usize,
    base: Vec<PathSeg>,
    days: &[DayConfig],
    from: &str,
    to: &str,
    overnight_ok: bool,
) -> Option<WeeklyWindow> {
    let at = |k: &str| [base.clone(), path![k]].concat();
    if days.is_empty() {
        ctx.err(
            fi,
            at("days"),
            "days must name at least one day (mon .. sun)",
        );
    }
    let from = parse_hhmm(from).map_err(|msg| ctx.err(fi, at("from"), msg));
    let to = parse_hhmm(to).map_err(|msg| ctx.err(fi, at("to"), msg));
    let (Ok(from), Ok(to)) = (from, to) else {
        return None;
    };
    if !overnight_ok && to <= from {
        ctx.err(
            fi,
            at("to"),
            format!(
                "to ({}) must be after from ({}); business hours do not run overnight",
                to.format("%H:%M"),
                from.format("%H:%M")
            ),
        );
        return None;
    }
    (!days.is_empty()).then(|| WeeklyWindow {
        days: Days::of(days.iter().map(|d| d.weekday())),
        from,
        to,
    })
}

fn build_business_hours(ctx: &mut Ctx<'_>, m: &Merged<'_>, tz: chrono_tz::Tz) -> Option<Calendar> {
    let (fi, c) = m.business_hours?;
    let hours = window_of(
        ctx,
        fi,
        path!["business_hours"],
        &c.days,
        &c.from,
        &c.to,
        false,
    );
    let mut holidays = BTreeSet::new();
    for (i, text) in c.holidays.iter().enumerate() {
        match parse_date(text) {
            Ok(d) => {
                holidays.insert(d);
            }
            Err(msg) => ctx.err(fi, path!["business_hours", "holidays", i], msg),
        }
    }
    Some(Calendar {
        timezone: tz,
        hours: hours?,
        holidays,
    })
}

/// Reports problems found by a shared builder under `base` in file `fi`.
fn report(ctx: &mut Ctx<'_>, fi: usize, base: Vec<PathSeg>, problems: Vec<Problem>) {
    for (rest, message) in problems {
        ctx.err(fi, [base.clone(), rest].concat(), message);
    }
}

fn build_silences(ctx: &mut Ctx<'_>, m: &Merged<'_>, tz: chrono_tz::Tz) -> Vec<Silence> {
    let mut out: Vec<Silence> = Vec::with_capacity(m.silences.len());
    let mut seen: HashMap<String, (usize, usize)> = HashMap::new();
    for &(fi, si, s) in &m.silences {
        let base = path!["silences", si];
        let at = |k: &str| [base.clone(), path![k]].concat();
        let start = parse_start(&s.start, tz).map_err(|msg| ctx.err(fi, at("start"), msg));
        let end = parse_start(&s.end, tz).map_err(|msg| ctx.err(fi, at("end"), msg));
        let window_ok = start.is_ok() && end.is_ok();
        // With a broken start or end, still check the rest against a placeholder window.
        let start = start.unwrap_or(DateTime::<Utc>::UNIX_EPOCH);
        let end = end.unwrap_or(start + chrono::TimeDelta::seconds(1));
        match Silence::build(
            s.id.as_deref(),
            &s.matchers,
            start,
            end,
            &s.author,
            &s.comment,
        ) {
            Ok(silence) if window_ok => {
                if let Some(&(ffi, fsi)) = seen.get(&silence.id) {
                    let first = ctx.place(ffi, path!["silences", fsi]);
                    ctx.err(
                        fi,
                        if s.id.is_some() {
                            at("id")
                        } else {
                            base.clone()
                        },
                        format!("duplicate silence id {:?} (first at {first})", silence.id),
                    );
                } else {
                    seen.insert(silence.id.clone(), (fi, si));
                }
                out.push(silence);
            }
            Ok(_) => {}
            Err(problems) => report(ctx, fi, base, problems),
        }
    }
    out
}

fn build_inhibit_rules(ctx: &mut Ctx<'_>, m: &Merged<'_>) -> Vec<InhibitRule> {
    let mut out = Vec::with_capacity(m.inhibit_rules.len());
    for &(fi, ri, r) in &m.inhibit_rules {
        match InhibitRule::build(&r.source_matchers, &r.target_matchers, &r.equal) {
            Ok(rule) => out.push(rule),
            Err(problems) => report(ctx, fi, path!["inhibit_rules", ri], problems),
        }
    }
    out
}

fn build_heartbeats(ctx: &mut Ctx<'_>, m: &Merged<'_>) -> BTreeMap<String, Heartbeat> {
    let mut out = BTreeMap::new();
    for (&name, &(fi, h)) in &m.heartbeats {
        let at = |k: &str| path!["heartbeats", name, k];
        if !is_heartbeat_name(name) {
            ctx.err(
                fi,
                path!["heartbeats", name],
                format!("{name:?} is not a heartbeat name (1 to 64 of a-z, 0-9, - and _)"),
            );
        }
        if h.interval.is_zero() {
            ctx.err(fi, at("interval"), "interval must be more than 0");
        }
        if h.summary.as_ref().is_some_and(|s| s.trim().is_empty()) {
            ctx.err(
                fi,
                at("summary"),
                "summary must not be empty; leave it out for the default",
            );
        }
        for key in h.labels.keys() {
            if !is_label_name(key) {
                ctx.err(
                    fi,
                    path!["heartbeats", name, "labels", key.as_str()],
                    format!("{key:?} is not a label name ([a-zA-Z_][a-zA-Z0-9_]*)"),
                );
            } else if RESERVED_LABELS.contains(&key.as_str()) {
                ctx.err(
                    fi,
                    path!["heartbeats", name, "labels", key.as_str()],
                    format!("{key:?} is set by vigil on heartbeat alerts and cannot be changed"),
                );
            }
        }
        let summary = h.summary.clone().unwrap_or_else(|| {
            format!(
                "No heartbeat from {name} for {}",
                humantime::format_duration(h.interval + h.grace)
            )
        });
        out.insert(
            name.to_string(),
            Heartbeat {
                name: name.to_string(),
                interval: h.interval,
                grace: h.grace,
                severity: h.severity,
                summary,
                labels: h.labels.clone(),
            },
        );
    }
    out
}

/// A rotation start: RFC 3339 with an offset, or a local date-time in the policy's zone. A local
/// time that occurs twice (DST fall-back) means the first; one that does not exist is an error.
fn parse_start(s: &str, tz: chrono_tz::Tz) -> Result<DateTime<Utc>, String> {
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Ok(t.with_timezone(&Utc));
    }
    let naive = ["%Y-%m-%dT%H:%M:%S", "%Y-%m-%dT%H:%M", "%Y-%m-%d %H:%M:%S", "%Y-%m-%d %H:%M"]
        .iter()
        .find_map(|f| NaiveDateTime::parse_from_str(s, f).ok())
        .ok_or_else(|| {
            format!("{s:?} is not a date-time (expected local time like 2026-11-02T09:00:00, or RFC 3339 with an offset)")
        })?;
    tz.from_local_datetime(&naive)
        .earliest()
        .map(|t| t.with_timezone(&Utc))
        .ok_or_else(|| format!("{s:?} does not exist in {tz} (a daylight-saving gap)"))
}

fn build_channels(ctx: &mut Ctx<'_>, m: &Merged<'_>) -> BTreeMap<String, ChannelSpec> {
    let mut out = BTreeMap::new();
    for (&id, &(fi, c)) in &m.channels {
        if let Some(spec) = build_channel(ctx, fi, id, c) {
            out.insert(id.to_string(), spec);
        }
    }
    out
}

/// Checks that a channel has exactly the keys its type takes, and that they are well-formed.
fn build_channel(ctx: &mut Ctx<'_>, fi: usize, id: &str, c: &ChannelConfig) -> Option<ChannelSpec> {
    let kind = c.kind.as_str();
    let (required, optional): (&[&str], &[&str]) = match c.kind {
        ChannelType::Pagerduty => (&["routing_key_env"], &[]),
        ChannelType::Sms | ChannelType::Phone | ChannelType::Log => (&[], &[]),
        ChannelType::Email => (&[], &["to"]),
        ChannelType::Slack => (&["channel", "token_env"], &[]),
        ChannelType::Webhook => (&["url"], &["token_env"]),
    };
    let present = [
        ("routing_key_env", c.routing_key_env.is_some()),
        ("to", c.to.is_some()),
        ("channel", c.channel.is_some()),
        ("token_env", c.token_env.is_some()),
        ("url", c.url.is_some()),
    ];
    let errors_before = ctx.errors.len();
    for (key, is_set) in present {
        if is_set && !required.contains(&key) && !optional.contains(&key) {
            ctx.err(
                fi,
                path!["channels", id, key],
                format!("type {kind} does not take `{key}`"),
            );
        }
    }
    for key in required {
        if !present.iter().any(|&(k, is_set)| k == *key && is_set) {
            ctx.err(
                fi,
                path!["channels", id],
                format!("type {kind} needs `{key}`"),
            );
        }
    }
    for (key, value) in [
        ("routing_key_env", &c.routing_key_env),
        ("token_env", &c.token_env),
    ] {
        if let Some(name) = value
            && !is_env_name(name)
        {
            ctx.err(
                fi,
                path!["channels", id, key],
                format!("{name:?} is not an environment variable name (^[A-Z_][A-Z0-9_]*$); secrets are never written in the policy"),
            );
        }
    }
    if c.to.as_ref().is_some_and(Vec::is_empty) {
        ctx.err(
            fi,
            path!["channels", id, "to"],
            "to must not be empty; leave it out to email each target person",
        );
    }
    if let Some(channel) = &c.channel
        && !is_slack_channel(channel)
    {
        ctx.err(
            fi,
            path!["channels", id, "channel"],
            format!(
                "{channel:?} is not a Slack channel (#name in lower case, or an id like C0123ABCD)"
            ),
        );
    }
    let url = c.url.as_ref().and_then(|url| match url::Url::parse(url) {
        Ok(u) if matches!(u.scheme(), "http" | "https") => Some(u),
        Ok(_) => {
            ctx.err(
                fi,
                path!["channels", id, "url"],
                format!("{url:?} must be an http or https URL"),
            );
            None
        }
        Err(e) => {
            ctx.err(
                fi,
                path!["channels", id, "url"],
                format!("{url:?} is not a URL: {e}"),
            );
            None
        }
    });
    if ctx.errors.len() > errors_before {
        return None;
    }
    let text = |v: &Option<String>| v.clone().unwrap_or_default();
    Some(match c.kind {
        ChannelType::Pagerduty => ChannelSpec::Pagerduty {
            routing_key_env: text(&c.routing_key_env),
        },
        ChannelType::Sms => ChannelSpec::Sms,
        ChannelType::Phone => ChannelSpec::Phone,
        ChannelType::Email => ChannelSpec::Email {
            to: c.to.clone().unwrap_or_default(),
        },
        ChannelType::Slack => ChannelSpec::Slack {
            channel: text(&c.channel),
            token_env: text(&c.token_env),
        },
        ChannelType::Webhook => ChannelSpec::Webhook {
            url: url?,
            token_env: c.token_env.clone(),
        },
        ChannelType::Log => ChannelSpec::Log,
    })
}

fn build_policies(ctx: &mut Ctx<'_>, m: &Merged<'_>) -> BTreeMap<String, EscalationPolicy> {
    let mut out = BTreeMap::new();
    for (&name, &(fi, p)) in &m.policies {
        let base = path!["policies", name];
        let at = |rest: Vec<PathSeg>| [base.clone(), rest].concat();
        if p.steps.is_empty() {
            ctx.err(fi, at(path!["steps"]), "a policy needs at least one step");
        }
        let mut steps = Vec::with_capacity(p.steps.len());
        let mut prev: Option<Duration> = None;
        for (si, step) in p.steps.iter().enumerate() {
            let step_at = |rest: Vec<PathSeg>| at([path!["steps", si], rest].concat());
            if let Some(prev) = prev
                && step.after < prev
            {
                ctx.err(
                    fi,
                    step_at(path!["after"]),
                    format!(
                        "after {} is earlier than the step before it ({}); `after` counts from the trigger and must not decrease",
                        humantime::format_duration(step.after),
                        humantime::format_duration(prev)
                    ),
                );
            }
            prev = Some(step.after);

            if step.targets.is_empty() {
                ctx.err(
                    fi,
                    step_at(path!["targets"]),
                    "a step needs at least one target",
                );
            }
            let mut targets = Vec::with_capacity(step.targets.len());
            for (ti, t) in step.targets.iter().enumerate() {
                match (&t.schedule, &t.person) {
                    (Some(s), None) => {
                        if !m.schedules.contains_key(s.as_str()) {
                            ctx.err(
                                fi,
                                step_at(path!["targets", ti, "schedule"]),
                                format!("unknown schedule {s:?}"),
                            );
                        }
                        targets.push(Target::Schedule(s.clone()));
                    }
                    (None, Some(p)) => {
                        if !m.people.contains_key(p.as_str()) {
                            ctx.err(
                                fi,
                                step_at(path!["targets", ti, "person"]),
                                format!("unknown person {p:?}"),
                            );
                        }
                        targets.push(Target::Person(p.clone()));
                    }
                    _ => ctx.err(
                        fi,
                        step_at(path!["targets", ti]),
                        "a target is exactly one of `schedule: <name>` or `person: <id>`",
                    ),
                }
            }

            if step.via.is_empty() {
                ctx.err(
                    fi,
                    step_at(path!["via"]),
                    "a step needs at least one channel in via",
                );
            }
            let mut needs_phone = None;
            let mut needs_email = None;
            for (vi, via) in step.via.iter().enumerate() {
                match m.channels.get(via.as_str()) {
                    None => ctx.err(
                        fi,
                        step_at(path!["via", vi]),
                        format!("unknown channel {via:?}"),
                    ),
                    Some((_, c)) if matches!(c.kind, ChannelType::Sms | ChannelType::Phone) => {
                        needs_phone.get_or_insert(via.as_str());
                    }
                    Some((_, c)) if c.kind == ChannelType::Email && c.to.is_none() => {
                        needs_email.get_or_insert(via.as_str());
                    }
                    Some(_) => {}
                }
            }
            check_contacts(
                ctx,
                m,
                fi,
                &step_at,
                &step.targets,
                needs_phone,
                needs_email,
            );

            steps.push(Step {
                after: step.after,
                targets,
                via: step.via.clone(),
            });
        }
        if p.repeat > 0 {
            match p.repeat_delay {
                None => ctx.err(
                    fi,
                    at(path!["repeat"]),
                    "repeat needs repeat_delay (the gap between the last step of one pass and the first of the next)",
                ),
                Some(d) if d.is_zero() => {
                    ctx.err(fi, at(path!["repeat_delay"]), "repeat_delay must be more than 0 when repeat > 0")
                }
                Some(_) => {}
            }
        }
        if p.ack_timeout.is_some_and(|d| d.is_zero()) {
            ctx.err(
                fi,
                at(path!["ack_timeout"]),
                "ack_timeout must be more than 0 (leave it out so acknowledgements do not expire)",
            );
        }
        out.insert(
            name.to_string(),
            EscalationPolicy {
                steps,
                repeat: p.repeat,
                repeat_delay: p.repeat_delay,
                ack_timeout: p.ack_timeout,
            },
        );
    }
    out
}

/// Every person a step can reach must have the contact details its channels need. For a schedule
/// that is every member: whoever is on call when the step fires must be reachable.
fn check_contacts(
    ctx: &mut Ctx<'_>,
    m: &Merged<'_>,
    fi: usize,
    step_at: &dyn Fn(Vec<PathSeg>) -> Vec<PathSeg>,
    targets: &[super::routing::TargetConfig],
    needs_phone: Option<&str>,
    needs_email: Option<&str>,
) {
    if needs_phone.is_none() && needs_email.is_none() {
        return;
    }
    for (ti, t) in targets.iter().enumerate() {
        let (who, key, members): (String, &str, Vec<&str>) = match (&t.schedule, &t.person) {
            (Some(s), None) => match m.schedules.get(s.as_str()) {
                Some((_, sc)) => (
                    format!("schedule {s:?} member "),
                    "schedule",
                    schedule_people(sc),
                ),
                None => continue,
            },
            (None, Some(p)) => (String::new(), "person", vec![p.as_str()]),
            _ => continue,
        };
        for id in members {
            let Some((_, person)) = m.people.get(id) else {
                continue;
            };
            if let Some(ch) = needs_phone
                && person.phone.is_none()
            {
                ctx.err(
                    fi,
                    step_at(path!["targets", ti, key]),
                    format!("{who}{id:?} has no phone, but this step notifies via {ch:?}"),
                );
            }
            if let Some(ch) = needs_email
                && person.email.is_none()
            {
                ctx.err(
                    fi,
                    step_at(path!["targets", ti, key]),
                    format!("{who}{id:?} has no email, but this step notifies via {ch:?} (which mails each target person)"),
                );
            }
        }
    }
}

/// The policies critical alerts can use: the severity table's, and any rule's explicit policy on
/// a critical rule. (A critical *override* on a non-critical rule uses the severity table's
/// policy; see `classify`.)
fn critical_policies<'a>(m: &Merged<'a>) -> BTreeSet<&'a str> {
    let mut used: BTreeSet<&str> = BTreeSet::new();
    if let Some((_, s)) = m.severities.get(&Severity::Critical) {
        used.insert(s.policy.as_str());
    }
    for (_, _, rule) in &m.rules {
        if rule.severity == Severity::Critical {
            if let Some(p) = &rule.policy {
                used.insert(p.as_str());
            } else if let Some((_, s)) = m.severities.get(&Severity::Critical) {
                used.insert(s.policy.as_str());
            }
        }
    }
    used
}

/// The desk invariant "no step points at an empty schedule", for critical paths: a schedule a
/// critical step targets must have someone on call at every minute of the week, i.e. an
/// unrestricted layer or restrictions that together cover the week. (Overrides do not count:
/// they end.) Schedules only quieter severities use may have gaps (a weekday-only schedule).
fn check_schedule_coverage(
    ctx: &mut Ctx<'_>,
    m: &Merged<'_>,
    schedules: &BTreeMap<String, Schedule>,
    critical: &BTreeSet<&str>,
) {
    let mut targeted: BTreeMap<&str, &str> = BTreeMap::new();
    for &name in critical {
        let Some((_, p)) = m.policies.get(name) else {
            continue;
        };
        for t in p.steps.iter().flat_map(|s| &s.targets) {
            if let (Some(s), None) = (&t.schedule, &t.person) {
                targeted.entry(s.as_str()).or_insert(name);
            }
        }
    }
    for (id, policy) in targeted {
        let (Some(&(fi, _)), Some(schedule)) = (m.schedules.get(id), schedules.get(id)) else {
            continue;
        };
        if schedule.layers.is_empty() || schedule.layers.iter().any(|l| l.restrict.is_none()) {
            continue;
        }
        let windows: Vec<WeeklyWindow> =
            schedule.layers.iter().filter_map(|l| l.restrict).collect();
        if let Some((day, time)) = WeeklyWindow::first_gap(&windows) {
            ctx.err(
                fi,
                path!["schedules", id, "layers"],
                format!(
                    "schedule {id:?} is paged for critical alerts (policy {policy:?}) but nobody is on call from {} {} local time; add an unrestricted layer as the first (lowest) one, or widen the restrictions",
                    day.to_string().to_lowercase(),
                    time.format("%H:%M")
                ),
            );
        }
    }
}

/// The desk invariant: a critical alert must reach a human through two independent channel types
/// at every step, so one provider outage (PagerDuty down, SMS throttled) never leaves it unseen.
/// Checked for every policy critical alerts can use ([`critical_policies`]).
fn check_critical_paths(ctx: &mut Ctx<'_>, m: &Merged<'_>, used: &BTreeSet<&str>) {
    for &name in used {
        let Some(&(fi, p)) = m.policies.get(name) else {
            continue;
        };
        for (si, step) in p.steps.iter().enumerate() {
            if step
                .via
                .iter()
                .any(|v| !m.channels.contains_key(v.as_str()))
            {
                // Already reported as an unknown channel; counting without it would add noise.
                continue;
            }
            let kinds: BTreeSet<&str> = step
                .via
                .iter()
                .filter_map(|v| m.channels.get(v.as_str()))
                .map(|(_, c)| c.kind)
                .filter(|k| !matches!(k, ChannelType::Log | ChannelType::Webhook))
                .map(ChannelType::as_str)
                .collect();
            if kinds.len() < 2 {
                let found = if kinds.is_empty() {
                    "none".to_string()
                } else {
                    kinds.into_iter().collect::<Vec<_>>().join(", ")
                };
                ctx.err(
                    fi,
                    path!["policies", name, "steps", si, "via"],
                    format!(
                        "policy {name:?} is used for critical alerts, so every step must reach people through at least two different channel types among pagerduty, sms, phone, email and slack; this step has: {found}"
                    ),
                );
            }
        }
    }
}

fn build_rules(ctx: &mut Ctx<'_>, m: &Merged<'_>) -> Vec<CompiledRule> {
    let mut out = Vec::with_capacity(m.rules.len());
    let mut seen: HashMap<&str, (usize, usize)> = HashMap::new();
    for (n, &(fi, ri, rule)) in m.rules.iter().enumerate() {
        let at = |rest: Vec<PathSeg>| [path!["rules", ri], rest].concat();
        let name = rule.name.as_str();
        if name.is_empty() || name.len() > 128 || name.chars().any(char::is_control) {
            ctx.err(
                fi,
                at(path!["name"]),
                "a rule name is 1 to 128 characters without control characters",
            );
        }
        if let Some(&(ffi, fri)) = seen.get(name) {
            let first = ctx.place(ffi, path!["rules", fri, "name"]);
            ctx.err(
                fi,
                at(path!["name"]),
                format!("duplicate rule name {name:?} (first used at {first})"),
            );
        } else {
            seen.insert(name, (fi, ri));
        }

        let mut matchers = Vec::with_capacity(rule.matchers.len());
        for (mi, text) in rule.matchers.iter().enumerate() {
            match Matcher::parse(text) {
                Ok(matcher) => matchers.push(matcher),
                Err(e) => ctx.err(fi, at(path!["matchers", mi]), format!("`{text}`: {e}")),
            }
        }
        if rule.matchers.is_empty()
            && let Some(&(nfi, nri, next)) = m.rules.get(n + 1)
        {
            let next_at = ctx.place(nfi, path!["rules", nri]);
            ctx.err(
                fi,
                at(path!["matchers"]),
                format!(
                    "rule {name:?} matches every alert, so the rules after it (from {:?} at {next_at}) can never match; move it to the end",
                    next.name
                ),
            );
        }
        if let Some(p) = &rule.policy
            && !m.policies.contains_key(p.as_str())
        {
            ctx.err(fi, at(path!["policy"]), format!("unknown policy {p:?}"));
        }
        for key in rule.labels.keys() {
            if !is_label_name(key) {
                ctx.err(
                    fi,
                    at(path!["labels", key.as_str()]),
                    format!("{key:?} is not a label name ([a-zA-Z_][a-zA-Z0-9_]*)"),
                );
            }
        }
        for (gi, key) in rule.group_by.iter().enumerate() {
            if !is_label_name(key) {
                ctx.err(
                    fi,
                    at(path!["group_by", gi]),
                    format!("{key:?} is not a label name ([a-zA-Z_][a-zA-Z0-9_]*)"),
                );
            }
        }
        if let Some(window) = rule.group_window {
            if rule.group_by.is_empty() {
                ctx.err(
                    fi,
                    at(path!["group_window"]),
                    "group_window needs group_by (the labels that make alerts one group)",
                );
            } else if window.is_zero() {
                ctx.err(
                    fi,
                    at(path!["group_window"]),
                    "group_window must be more than 0",
                );
            }
        }
        out.push(CompiledRule {
            name: rule.name.clone(),
            matchers,
            severity: rule.severity,
            policy: rule.policy.clone(),
            labels: rule.labels.clone(),
            group_by: rule.group_by.clone(),
            group_window: rule.group_window,
        });
    }
    match m.rules.last() {
        None => {
            let fi = 0;
            ctx.err(fi, path!["rules"], "there are no rules; at least a final catch-all rule (`matchers: []`) is required");
        }
        Some(&(fi, ri, rule)) if !rule.matchers.is_empty() => ctx.err(
            fi,
            path!["rules", ri],
            format!(
                "the last rule ({:?}) has matchers; a final catch-all rule with `matchers: []` is required so every alert is routed",
                rule.name
            ),
        ),
        Some(_) => {}
    }
    out
}

/// Default `sources.sns.max_age`: SNS retries an HTTP(S) delivery for at most 3,600 s.
pub const DEFAULT_SNS_MAX_AGE: Duration = Duration::from_secs(60 * 60);

/// Default `sources.cloudwatch.reconcile.interval`.
pub const DEFAULT_RECONCILE_INTERVAL: Duration = Duration::from_secs(60);
/// The shortest reconciliation interval: a pass reads every alarm of every region, and
/// DescribeAlarms is limited to 9 requests per second per account and region.
pub const MIN_RECONCILE_INTERVAL: Duration = Duration::from_secs(10);

/// What `sources` compiles to.
struct Sources {
    sns_allowed_topics: Vec<String>,
    sns_max_age: Duration,
    sns_dead_letter_queues: Vec<String>,
    reconcile: Option<super::Reconcile>,
}

/// An AWS region code: `ap-southeast-1`, `us-gov-west-1`, `cn-north-1`.
pub fn is_region_code(s: &str) -> bool {
    static REGION: LazyLock<Regex> = LazyLock::new(|| {
        Regex::new(r"^[a-z]{2}(-[a-z]+)+-\d{1,2}$").expect("static regex is valid")
    });
    REGION.is_match(s)
}

fn build_sources(ctx: &mut Ctx<'_>, m: &Merged<'_>) -> Sources {
    static ARN: LazyLock<Regex> = LazyLock::new(|| {
        Regex::new(
            r"^arn:aws(-[a-z]+)*:sns:[a-z]{2}(-[a-z]+)+-\d+:\d{12}:[A-Za-z0-9_-]{1,256}(\.fifo)?$",
        )
        .expect("static regex is valid")
    });
    let mut out = Sources {
        sns_allowed_topics: Vec::new(),
        sns_max_age: DEFAULT_SNS_MAX_AGE,
        sns_dead_letter_queues: Vec::new(),
        reconcile: None,
    };
    let Some((fi, src)) = m.sources else {
        return out;
    };
    if let Some(sns) = &src.sns {
        if sns.max_age.is_some_and(|a| a.is_zero()) {
            ctx.err(
                fi,
                path!["sources", "sns", "max_age"],
                "max_age must be more than 0",
            );
        }
        for (i, arn) in sns.allowed_topics.iter().enumerate() {
            if !ARN.is_match(arn) {
                ctx.err(
                    fi,
                    path!["sources", "sns", "allowed_topics", i],
                    format!("{arn:?} is not an SNS topic ARN (arn:aws:sns:<region>:<12-digit account>:<topic>)"),
                );
            }
        }
        for (i, queue) in sns.dead_letter_queues.iter().enumerate() {
            if let Err(why) = check_queue_url(queue) {
                ctx.err(fi, path!["sources", "sns", "dead_letter_queues", i], why);
            } else if out.sns_dead_letter_queues.contains(queue) {
                ctx.err(
                    fi,
                    path!["sources", "sns", "dead_letter_queues", i],
                    format!("{queue:?} is listed twice"),
                );
            } else {
                out.sns_dead_letter_queues.push(queue.clone());
            }
        }
        out.sns_allowed_topics = sns.allowed_topics.clone();
        out.sns_max_age = sns.max_age.unwrap_or(DEFAULT_SNS_MAX_AGE);
    }
    if let Some(rec) = src.cloudwatch.as_ref().and_then(|c| c.reconcile.as_ref()) {
        let mut regions = Vec::new();
        if rec.regions.is_empty() {
            ctx.err(
                fi,
                path!["sources", "cloudwatch", "reconcile", "regions"],
                "name at least one region (e.g. ap-southeast-1), or leave reconcile out",
            );
        }
        for (i, region) in rec.regions.iter().enumerate() {
            if !is_region_code(region) {
                ctx.err(
                    fi,
                    path!["sources", "cloudwatch", "reconcile", "regions", i],
                    format!("{region:?} is not an AWS region code (e.g. ap-southeast-1)"),
                );
            } else if !regions.contains(region) {
                regions.push(region.clone());
            }
        }
        let interval = rec.interval.unwrap_or(DEFAULT_RECONCILE_INTERVAL);
        if interval < MIN_RECONCILE_INTERVAL {
            ctx.err(
                fi,
                path!["sources", "cloudwatch", "reconcile", "interval"],
                format!(
                    "must be at least {} (DescribeAlarms allows 9 requests per second per region)",
                    humantime::format_duration(MIN_RECONCILE_INTERVAL)
                ),
            );
        }
        out.reconcile = Some(super::Reconcile {
            regions,
            interval: interval.max(MIN_RECONCILE_INTERVAL),
        });
    }
    out
}

/// An SQS queue URL: `https://sqs.<region>.amazonaws.com/<account>/<queue>` in production;
/// any http(s) URL whose path is `/<12-digit account>/<queue name>` (an emulator) is accepted.
fn check_queue_url(raw: &str) -> Result<(), String> {
    let bad = |why: &str| {
        Err(format!(
            "{raw:?} is not an SQS queue URL ({why}; expected https://sqs.<region>.amazonaws.com/<account>/<queue>)"
        ))
    };
    let Ok(url) = url::Url::parse(raw) else {
        return bad("not a URL");
    };
    if !matches!(url.scheme(), "https" | "http") || url.host_str().is_none() {
        return bad("not an http(s) URL");
    }
    if url.query().is_some() || url.fragment().is_some() {
        return bad("it has a query or fragment");
    }
    let parts: Vec<&str> = url.path().trim_matches('/').split('/').collect();
    match parts.as_slice() {
        [account, name]
            if account.len() == 12
                && account.bytes().all(|b| b.is_ascii_digit())
                && (1..=80).contains(&name.len())
                && name
                    .trim_end_matches(".fifo")
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') =>
        {
            Ok(())
        }
        _ => bad("its path is not /<12-digit account>/<queue name>"),
    }
}

fn is_env_name(s: &str) -> bool {
    let mut chars = s.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_uppercase() || c == '_')
        && chars.all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
}

/// A Prometheus/Alertmanager label name: `[a-zA-Z_][a-zA-Z0-9_]*`.
pub fn is_label_name(s: &str) -> bool {
    let mut chars = s.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn is_slack_id(s: &str, prefixes: &[char]) -> bool {
    let mut chars = s.chars();
    chars.next().is_some_and(|c| prefixes.contains(&c))
        && s.len() >= 3
        && chars.all(|c| c.is_ascii_uppercase() || c.is_ascii_digit())
}

fn is_slack_channel(s: &str) -> bool {
    match s.strip_prefix('#') {
        Some(name) => {
            (1..=80).contains(&name.len())
                && name
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
        }
        None => is_slack_id(s, &['C', 'G']),
    }
}

/// A classification rule, ready to evaluate.
#[derive(Debug, Clone)]
pub struct CompiledRule {
    /// Unique rule name.
    pub name: String,
    /// All must match; empty = catch-all.
    pub matchers: Vec<Matcher>,
    /// Severity for matching alerts.
    pub severity: Severity,
    /// Explicit policy, else the severity's.
    pub policy: Option<String>,
    /// Labels added to matching alerts.
    pub labels: Labels,
    /// Labels whose values (with the rule name) form the fingerprint, when non-empty.
    pub group_by: Vec<String>,
    /// How long alerts of one group are collected together; only with `group_by`.
    pub group_window: Option<Duration>,
}

impl CompiledRule {
    /// Whether every matcher holds for `labels`.
    pub fn matches(&self, labels: &Labels) -> bool {
        self.matchers.iter().all(|m| m.matches(labels))
    }
}

/// One Alertmanager label matcher: `name="v"`, `name!="v"`, `name=~"re"`, `name!~"re"`.
#[derive(Debug, Clone)]
pub struct Matcher {
    /// Label name.
    pub name: String,
    /// Operator (with the compiled regex for `=~`/`!~`).
    pub op: MatchOp,
    /// The value as written (unescaped), also the regex source for `=~`/`!~`.
    pub value: String,
}

/// A matcher operator.
#[derive(Debug, Clone)]
pub enum MatchOp {
    /// `=`
    Equal,
    /// `!=`
    NotEqual,
    /// `=~`: the whole value must match (anchored as `^(?:re)$`, like Alertmanager).
    Regex(Regex),
    /// `!~`
    NotRegex(Regex),
}

/// Why a matcher did not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MatcherError {
    #[error("expected a label name ([a-zA-Z_][a-zA-Z0-9_]*) at the start")]
    Name,
    #[error("expected =, !=, =~ or !~ after the label name")]
    Operator,
    #[error("the value must be in double quotes, like name=\"value\"")]
    Unquoted,
    #[error("the quoted value has no closing quote")]
    Unterminated,
    #[error("unknown escape \\{0} in the value (only \\\" and \\\\ are allowed)")]
    Escape(char),
    #[error("unexpected text after the closing quote: {0:?}")]
    Trailing(String),
    #[error("invalid regular expression: {0}")]
    Regex(String),
    /// Over [`REGEX_SIZE_LIMIT`]: a pathological pattern such as `((a{50}){50}){50}`.
    #[error(
        "the regular expression is too large: it compiles to more than {} KiB (the limit); write a simpler pattern (fewer or smaller repetitions; ASCII classes such as [a-z0-9_] rather than Unicode \\w)",
        REGEX_SIZE_LIMIT / 1024
    )]
    TooLarge,
}

/// Most memory one matcher's regular expression may compile to (the regex crate's `size_limit`),
/// for `routing/` and API-made matchers alike. Ordinary label patterns (`rds-.*`,
/// `timeout|http_5xx`) take a few KiB at most.
pub const REGEX_SIZE_LIMIT: usize = 64 * 1024;
/// Most memory one matcher's lazy DFA may cache (the regex crate's `dfa_size_limit`); past it
/// the regex crate falls back to a slower engine rather than growing.
pub const REGEX_DFA_SIZE_LIMIT: usize = 256 * 1024;

impl Matcher {
    /// Parses Alertmanager matcher syntax. Spaces around the operator are allowed.
    pub fn parse(s: &str) -> Result<Self, MatcherError> {
        let s = s.trim();
        let name_len = s
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(s.len());
        let name = &s[..name_len];
        if !is_label_name(name) {
            return Err(MatcherError::Name);
        }
        let rest = s[name_len..].trim_start();
        let (op, rest) = ["=~", "!~", "!=", "="]
            .iter()
            .find_map(|op| rest.strip_prefix(op).map(|r| (*op, r)))
            .ok_or(MatcherError::Operator)?;
        let rest = rest.trim_start();
        let quoted = rest.strip_prefix('"').ok_or(MatcherError::Unquoted)?;
        let mut value = String::new();
        let mut chars = quoted.char_indices();
        let end = loop {
            match chars.next() {
                None => return Err(MatcherError::Unterminated),
                Some((i, '"')) => break i,
                Some((_, '\\')) => match chars.next() {
                    Some((_, c @ ('"' | '\\'))) => value.push(c),
                    Some((_, c)) => return Err(MatcherError::Escape(c)),
                    None => return Err(MatcherError::Unterminated),
                },
                Some((_, c)) => value.push(c),
            }
        };
        let trailing = quoted[end + 1..].trim();
        if !trailing.is_empty() {
            return Err(MatcherError::Trailing(trailing.to_string()));
        }
        let anchored = || {
            regex::RegexBuilder::new(&format!("^(?:{value})$"))
                .size_limit(REGEX_SIZE_LIMIT)
                .dfa_size_limit(REGEX_DFA_SIZE_LIMIT)
                .build()
                .map_err(|e| match e {
                    regex::Error::CompiledTooBig(_) => MatcherError::TooLarge,
                    e => MatcherError::Regex(regex_message(&e)),
                })
        };
        let op = match op {
            "=" => MatchOp::Equal,
            "!=" => MatchOp::NotEqual,
            "=~" => MatchOp::Regex(anchored()?),
            _ => MatchOp::NotRegex(anchored()?),
        };
        Ok(Self {
            name: name.to_string(),
            op,
            value,
        })
    }

    /// Evaluates against `labels`; a missing label matches as the empty string (Alertmanager).
    pub fn matches(&self, labels: &Labels) -> bool {
        let v = labels.get(&self.name).map_or("", String::as_str);
        match &self.op {
            MatchOp::Equal => v == self.value,
            MatchOp::NotEqual => v != self.value,
            MatchOp::Regex(re) => re.is_match(v),
            MatchOp::NotRegex(re) => !re.is_match(v),
        }
    }
}

/// Two matchers are equal when they are written the same (same name, operator and value).
impl PartialEq for Matcher {
    fn eq(&self, other: &Self) -> bool {
        self.to_string() == other.to_string()
    }
}

impl fmt::Display for Matcher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let op = match self.op {
            MatchOp::Equal => "=",
            MatchOp::NotEqual => "!=",
            MatchOp::Regex(_) => "=~",
            MatchOp::NotRegex(_) => "!~",
        };
        let escaped = self.value.replace('\\', "\\\\").replace('"', "\\\"");
        write!(f, "{}{op}\"{escaped}\"", self.name)
    }
}

/// regex errors span several lines (pattern, caret, message); keep the message line.
fn regex_message(e: &regex::Error) -> String {
    let s = e.to_string();
    s.lines()
        .find_map(|l| l.trim().strip_prefix("error: "))
        .map(str::to_string)
        .unwrap_or_else(|| s.split_whitespace().collect::<Vec<_>>().join(" "))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> Labels {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn matchers_evaluate_like_alertmanager() {
        let l = labels(&[
            ("kind", "exchange_error"),
            ("error", "http_5xx"),
            ("path", r#"a"b\c"#),
        ]);
        let cases: &[(&str, bool)] = &[
            (r#"kind="exchange_error""#, true),
            (r#"kind="exchange""#, false),
            (r#"kind!="exchange""#, true),
            (r#"kind!="exchange_error""#, false),
            (r#"error=~"timeout|http_5xx""#, true),
            (r#"error=~"http""#, false), // anchored: no substring match
            (r#"error=~"http_.*""#, true),
            (r#"error!~"timeout|http_5xx""#, false),
            (r#"error!~"rate_.*""#, true),
            (r#"missing="""#, true), // a missing label is ""
            (r#"missing!="""#, false),
            (r#"missing=~".*""#, true),
            (r#"missing=~".+""#, false),
            (r#"missing!="x""#, true),
            (r#"path="a\"b\\c""#, true),
            (r#"  kind = "exchange_error"  "#, true),
        ];
        for (text, want) in cases {
            let m = Matcher::parse(text).unwrap_or_else(|e| panic!("{text}: {e}"));
            assert_eq!(m.matches(&l), *want, "{text}");
        }
    }

    #[test]
    fn bad_matchers_say_what_is_wrong() {
        let cases: &[(&str, MatcherError)] = &[
            (r#"1kind="x""#, MatcherError::Name),
            (r#"="x""#, MatcherError::Name),
            (r#"kind"#, MatcherError::Operator),
            (r#"kind=="x""#, MatcherError::Unquoted),
            (r#"kind=x"#, MatcherError::Unquoted),
            (r#"kind="x"#, MatcherError::Unterminated),
            (r#"kind="\d""#, MatcherError::Escape('d')),
            (r#"kind="x" y"#, MatcherError::Trailing("y".into())),
        ];
        for (text, want) in cases {
            assert_eq!(Matcher::parse(text).unwrap_err(), *want, "{text}");
        }
        let Err(MatcherError::Regex(msg)) = Matcher::parse(r#"error=~"(timeout""#) else {
            panic!("an unclosed group is a regex error");
        };
        assert!(msg.contains("unclosed group"), "{msg}");
        assert!(!msg.contains('\n'));
    }

    #[test]
    fn matchers_display_in_the_syntax_they_were_written_in() {
        for text in [r#"kind="x""#, r#"a!="b\"c""#, r#"e=~"t|h""#, r#"e!~"\\.""#] {
            assert_eq!(Matcher::parse(text).unwrap().to_string(), text);
        }
    }

    #[test]
    fn env_and_label_names_are_checked() {
        assert!(is_env_name("VIGIL_SLACK_BOT_TOKEN"));
        assert!(is_env_name("_X1"));
        assert!(!is_env_name("vigil_token"));
        assert!(!is_env_name("1X"));
        assert!(!is_env_name(""));
        assert!(is_label_name("alarm_name"));
        assert!(!is_label_name("alarm-name"));
        assert!(is_slack_channel("#trading-alerts"));
        assert!(is_slack_channel("C0123ABCD"));
        assert!(!is_slack_channel("#Trading Alerts"));
    }

    #[test]
    fn rotation_starts_accept_local_time_or_an_offset() {
        let sg = chrono_tz::Asia::Singapore;
        let want = "2026-11-02T01:00:00Z".parse::<DateTime<Utc>>().unwrap();
        assert_eq!(parse_start("2026-11-02T09:00:00", sg).unwrap(), want);
        assert_eq!(parse_start("2026-11-02T09:00:00+08:00", sg).unwrap(), want);
        assert!(parse_start("next monday", sg).is_err());
        // 02:30 does not exist in New York on 2026-03-08 (spring forward).
        assert!(parse_start("2026-03-08T02:30:00", chrono_tz::America::New_York).is_err());
    }
}
