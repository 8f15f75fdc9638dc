//! `vigil diff`: replays the same events through two policies and says what changes — severity,
//! rule, escalation policy, silences, who is paged, through which channels and at which minute —
//! per event, then in a summary ("3 alerts move from high to critical; Wei Chen is paged 5
//! minutes earlier for 12 alerts"). Pure: no store, nothing sent.
//!
//! Events come from payload files (anything `vigil simulate` accepts: SNS envelopes, EventBridge
//! events, the bot's events and batches), directories of them, or alerts exported from a running
//! vigil with `vigil export-alerts` (JSON lines, one `Alert` each, in a `.jsonl` file).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};

use super::{Effect, Outcome, outcome};
use crate::config::Policy;
use crate::domain::Alert;

/// At most this many events are replayed; more is an error (split the input).
pub const MAX_EVENTS: usize = 100_000;
/// A payload or export file larger than this is refused.
pub const MAX_FILE: u64 = 64 * 1024 * 1024;

/// One event to replay, with where it came from.
#[derive(Debug, Clone)]
pub struct Event {
    /// `path` or `path#n` for the n-th alert of a batch or an export.
    pub origin: String,
    pub alert: Alert,
}

/// The events read from `paths`, and a note for each file of a directory that was not a payload
/// (a certificate, a Slack interaction). A file named explicitly must be one.
pub fn load_events(
    paths: &[PathBuf],
    at: DateTime<Utc>,
) -> Result<(Vec<Event>, Vec<String>), String> {
    let mut events = Vec::new();
    let mut skipped = Vec::new();
    for path in paths {
        if path.is_dir() {
            let mut files: Vec<PathBuf> = std::fs::read_dir(path)
                .map_err(|e| format!("{}: {e}", path.display()))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.is_file())
                .collect();
            files.sort();
            for file in files {
                match read_file(&file, at) {
                    Ok(mut found) => events.append(&mut found),
                    Err(why) => skipped.push(format!("{}: skipped ({why})", file.display())),
                }
            }
        } else {
            let mut found =
                read_file(path, at).map_err(|why| format!("{}: {why}", path.display()))?;
            events.append(&mut found);
        }
        if events.len() > MAX_EVENTS {
            return Err(format!(
                "more than {MAX_EVENTS} events: replay them in parts"
            ));
        }
    }
    Ok((events, skipped))
}

fn read_file(path: &Path, at: DateTime<Utc>) -> Result<Vec<Event>, String> {
    let len = std::fs::metadata(path).map_err(|e| e.to_string())?.len();
    if len > MAX_FILE {
        return Err(format!("larger than {MAX_FILE} bytes"));
    }
    let body = std::fs::read(path).map_err(|e| e.to_string())?;
    let name = path.display().to_string();
    let alerts: Vec<Alert> = if path.extension().is_some_and(|x| x == "jsonl") {
        let text = String::from_utf8(body).map_err(|_| "not UTF-8".to_string())?;
        text.lines()
            .enumerate()
            .filter(|(_, l)| !l.trim().is_empty())
            .map(|(i, l)| {
                serde_json::from_str(l)
                    .map_err(|e| format!("line {}: not an exported alert: {e}", i + 1))
            })
            .collect::<Result<_, _>>()?
    } else {
        super::alerts_from_payload(&body, at)
            .map_err(|e| format!("not a payload vigil accepts: {e}"))?
    };
    let many = alerts.len() > 1;
    Ok(alerts
        .into_iter()
        .enumerate()
        .map(|(i, alert)| Event {
            origin: if many {
                format!("{name}#{}", i + 1)
            } else {
                name.clone()
            },
            alert,
        })
        .collect())
}

/// Without events: one probe alert per rule of either policy whose matchers are all equalities
/// (its labels are those values), so a change to a rule shows even with no payload at hand.
/// Rules with a regex or a negation have no such probe; the catch-all's probe has no labels.
pub fn rule_probes(policies: &[&Policy], at: DateTime<Utc>) -> Vec<Event> {
    use crate::config::MatchOp;
    let mut seen = BTreeSet::new();
    let mut out = Vec::new();
    for policy in policies {
        for rule in &policy.rules {
            if !seen.insert(rule.name.clone())
                || rule
                    .matchers
                    .iter()
                    .any(|m| !matches!(m.op, MatchOp::Equal))
            {
                continue;
            }
            let labels = rule
                .matchers
                .iter()
                .map(|m| (m.name.clone(), m.value.clone()))
                .collect();
            let Ok(fingerprint) = crate::domain::Fingerprint::parse(format!("probe/{}", rule.name))
            else {
                continue;
            };
            out.push(Event {
                origin: format!("probe of rule {}", rule.name),
                alert: Alert {
                    source: crate::domain::Source::Bot,
                    fingerprint,
                    status: crate::domain::AlertStatus::Firing,
                    summary: format!("probe for rule {}", rule.name),
                    description: None,
                    labels,
                    details: serde_json::Value::Null,
                    occurred_at: at,
                    delivery_id: None,
                    severity_override: None,
                },
            });
        }
    }
    out
}

/// What changed for one event.
#[derive(Debug, Clone)]
pub struct Change {
    pub event: Event,
    pub from: Outcome,
    pub to: Outcome,
}

/// The whole comparison.
#[derive(Debug, Clone)]
pub struct Diff {
    pub events: usize,
    pub changes: Vec<Change>,
}

impl Diff {
    pub fn is_empty(&self) -> bool {
        self.changes.is_empty()
    }
}

/// Replays `events` through both policies at `at` (each event alone: nothing else open).
pub fn diff(from: &Policy, to: &Policy, events: &[Event], at: DateTime<Utc>) -> Diff {
    let changes = events
        .iter()
        .filter_map(|e| {
            let a = outcome(from, &e.alert, at, &[]);
            let b = outcome(to, &e.alert, at, &[]);
            (a != b).then(|| Change {
                event: e.clone(),
                from: a,
                to: b,
            })
        })
        .collect();
    Diff {
        events: events.len(),
        changes,
    }
}

/// The plan's steps as lines (`+5m  loop 0 step 2  Wei Chen (person cto) via pagerduty`).
fn step_lines(o: &Outcome) -> Vec<String> {
    match &o.effect {
        Effect::Pages(plan) => plan
            .steps
            .iter()
            .map(|s| {
                format!(
                    "+{:<6} loop {} step {}  {}  via {}",
                    minutes(s.offset),
                    s.loop_,
                    s.step + 1,
                    s.people(),
                    s.via.join(", ")
                )
            })
            .collect(),
        _ => Vec::new(),
    }
}

fn minutes(d: std::time::Duration) -> String {
    let m = d.as_secs() / 60;
    let s = d.as_secs() % 60;
    if s == 0 {
        format!("{m}m")
    } else {
        format!("{m}m{s}s")
    }
}

fn effect_name(o: &Outcome) -> String {
    match &o.effect {
        Effect::MissingPolicy => format!("policy {} is missing", o.policy),
        Effect::ResolvesHalts => "resolves open trading halts".into(),
        Effect::Resolves => "resolves its incident".into(),
        Effect::Pages(p) => match &p.silenced {
            Some((id, ..)) => format!("opens, silenced by {id}"),
            None => "opens and pages".into(),
        },
    }
}

/// Each person's first page (minutes after the alert), by name.
fn first_pages(o: &Outcome) -> BTreeMap<String, u64> {
    let mut out = BTreeMap::new();
    if let Effect::Pages(plan) = &o.effect
        && plan.silenced.is_none()
    {
        for s in &plan.steps {
            for (_, who) in &s.targets {
                for name in who {
                    let m = s.offset.as_secs() / 60;
                    out.entry(name.clone())
                        .and_modify(|v: &mut u64| *v = (*v).min(m))
                        .or_insert(m);
                }
            }
        }
    }
    out
}

fn channels(o: &Outcome) -> BTreeSet<String> {
    match &o.effect {
        Effect::Pages(plan) => plan.steps.iter().flat_map(|s| s.via.clone()).collect(),
        _ => BTreeSet::new(),
    }
}

fn plural(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

impl std::fmt::Display for Diff {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut out = String::new();
        for c in &self.changes {
            let _ = writeln!(out, "== {}: \"{}\"", c.event.origin, c.from.summary);
            let mut field = |name: &str, a: String, b: String| {
                if a != b {
                    let _ = writeln!(out, "  {name:<10} {a} → {b}");
                }
            };
            field("rule:", c.from.rule.clone(), c.to.rule.clone());
            field(
                "severity:",
                c.from.severity.to_string(),
                c.to.severity.to_string(),
            );
            field("policy:", c.from.policy.clone(), c.to.policy.clone());
            field("effect:", effect_name(&c.from), effect_name(&c.to));
            field("key:", c.from.fingerprint.clone(), c.to.fingerprint.clone());
            let (a, b) = (step_lines(&c.from), step_lines(&c.to));
            if a != b {
                let _ = writeln!(out, "  pages:");
                for line in a.iter().filter(|l| !b.contains(l)) {
                    let _ = writeln!(out, "    - {line}");
                }
                for line in b.iter().filter(|l| !a.contains(l)) {
                    let _ = writeln!(out, "    + {line}");
                }
            }
        }
        let _ = writeln!(
            out,
            "== summary: {}, {} changed",
            plural(self.events, "event", "events"),
            self.changes.len()
        );
        // Severity moves, then each person's first page, then channels.
        let mut moves: BTreeMap<(String, String), usize> = BTreeMap::new();
        let mut people: BTreeMap<(String, String), usize> = BTreeMap::new();
        let mut rerouted = 0;
        for c in &self.changes {
            if c.from.severity != c.to.severity {
                *moves
                    .entry((c.from.severity.to_string(), c.to.severity.to_string()))
                    .or_default() += 1;
            }
            let (a, b) = (first_pages(&c.from), first_pages(&c.to));
            for name in a.keys().chain(b.keys()).collect::<BTreeSet<_>>() {
                let what = match (a.get(name), b.get(name)) {
                    (Some(x), Some(y)) if y < x => format!("{} minutes earlier", x - y),
                    (Some(x), Some(y)) if y > x => format!("{} minutes later", y - x),
                    (Some(_), None) => "no longer".into(),
                    (None, Some(_)) => "newly".into(),
                    _ => continue,
                };
                *people.entry((name.clone(), what)).or_default() += 1;
            }
            if channels(&c.from) != channels(&c.to) {
                rerouted += 1;
            }
        }
        for ((a, b), n) in &moves {
            let _ = writeln!(
                out,
                "  {} from {a} to {b}",
                plural(*n, "alert moves", "alerts move")
            );
        }
        for ((name, what), n) in &people {
            let alerts = plural(*n, "alert", "alerts");
            let _ = match what.as_str() {
                "newly" | "no longer" => writeln!(out, "  {name} is {what} paged for {alerts}"),
                _ => writeln!(out, "  {name} is paged {what} for {alerts}"),
            };
        }
        if rerouted > 0 {
            let _ = writeln!(
                out,
                "  {} through other channels",
                plural(rerouted, "alert pages", "alerts page")
            );
        }
        f.write_str(&out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::load_dir;
    use crate::config::tests_support::shipped_routing_dir;

    fn event(body: &str) -> Event {
        let at = chrono::Utc::now();
        Event {
            origin: "test".into(),
            alert: super::super::alerts_from_payload(body.as_bytes(), at)
                .unwrap()
                .remove(0),
        }
    }

    #[test]
    fn the_same_policy_changes_nothing() {
        let p = load_dir(&shipped_routing_dir()).unwrap();
        let e = event(r#"{"kind":"trading_halted","summary":"halted","dedup_key":"h1"}"#);
        let d = diff(&p, &p, &[e], chrono::Utc::now());
        assert!(d.is_empty());
        assert!(d.to_string().contains("1 event, 0 changed"), "{d}");
    }

    #[test]
    fn minutes_read_as_the_plan_says() {
        assert_eq!(minutes(std::time::Duration::from_secs(300)), "5m");
        assert_eq!(minutes(std::time::Duration::from_secs(90)), "1m30s");
    }
}
