//! What keeps an alert from paging although it matched a rule: [`Silence`]s (maintenance
//! windows) and [`InhibitRule`]s (an open incident that explains it). Pure.
//!
//! In: an alert's labels, an instant, and (for inhibition) the labels of an open incident. Out:
//! whether the alert is silenced or inhibited. The incident flow decides what that means (the
//! alert is recorded, nobody is paged).
//!
//! Silences come from `routing/` (compiled with the policy, errors located by line) and from the
//! API (`POST /v1/silences`, through [`Silence::parse_api`]); both are checked by the same code.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::locate::{PathSeg, Problem};
use super::matcher::{MatchOp, Matcher, MatcherError, not_a_label_name};
use crate::domain::{Labels, is_label_name};

/// A maintenance window: while active, alerts whose labels match every matcher page nobody.
///
/// Serializes as a [`SilenceSpec`] (matchers as the strings they were written as), so a stored
/// silence reads back through the same checks as a new one.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(into = "SilenceSpec", try_from = "SilenceSpec")]
pub struct Silence {
    /// Stable id: as written, or derived from the matchers and the window.
    pub id: String,
    /// All must match; never empty, and never all satisfied by an alert without labels.
    pub matchers: Vec<Matcher>,
    /// First instant the silence applies.
    pub start: DateTime<Utc>,
    /// First instant it no longer applies; after `start`.
    pub end: DateTime<Utc>,
    /// Who created it.
    pub author: String,
    /// Why.
    pub comment: String,
}

/// A silence as the API receives it and the store keeps it: matchers as strings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SilenceSpec {
    /// Optional id; derived from the content when absent.
    #[serde(default)]
    pub id: Option<String>,
    /// Alertmanager matchers (`region="ap-southeast-1"`, `alarm_name=~"rds-.*"`).
    pub matchers: Vec<String>,
    /// When it starts (RFC 3339).
    pub start: DateTime<Utc>,
    /// When it ends (RFC 3339); required.
    pub end: DateTime<Utc>,
    /// Who asks for it.
    pub author: String,
    /// Why.
    pub comment: String,
}

/// Most matchers one silence may have, in `routing/` and through the API. Each regex matcher
/// is compiled and kept in memory while the silence lasts, so a silence is bounded to
/// `MAX_SILENCE_MATCHERS` × [`REGEX_SIZE_LIMIT`](super::matcher::REGEX_SIZE_LIMIT).
pub const MAX_SILENCE_MATCHERS: usize = 32;
/// Most API silences that have not ended; `POST /v1/silences` beyond it answers 422.
pub const MAX_API_SILENCES: usize = 1_000;
/// Most regex matchers (`=~`, `!~`) across all API silences that have not ended; each costs up
/// to about 150 KiB once compiled (measured near the size limit), so they stay within ~150 MiB.
pub const MAX_API_SILENCE_REGEXES: usize = 1_000;

/// Why an API silence was refused: every problem, joined by `; `, each naming its field
/// (`matchers[1]: ...`), and whether one of them is a limit (too many matchers, a regex too
/// large to compile), which the API answers with 422 rather than 400.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct SilenceError {
    pub message: String,
    pub over_limit: bool,
}

impl Silence {
    /// Checks an API-made silence.
    pub fn parse_api(spec: SilenceSpec) -> Result<Silence, SilenceError> {
        Self::build_checked(
            spec.id.as_deref(),
            &spec.matchers,
            spec.start,
            spec.end,
            &spec.author,
            &spec.comment,
        )
        .map_err(|(problems, over_limit)| SilenceError {
            message: problems
                .iter()
                .map(|(path, msg)| {
                    if path.is_empty() {
                        msg.clone()
                    } else {
                        format!("{}: {msg}", super::locate::render(path))
                    }
                })
                .collect::<Vec<_>>()
                .join("; "),
            over_limit,
        })
    }

    /// Builds a silence, or every problem with it (shared by `routing/` and the API).
    pub(crate) fn build(
        id: Option<&str>,
        matchers: &[String],
        start: DateTime<Utc>,
        end: DateTime<Utc>,
        author: &str,
        comment: &str,
    ) -> Result<Silence, Vec<Problem>> {
        Self::build_checked(id, matchers, start, end, author, comment).map_err(|(p, _)| p)
    }

    /// [`Silence::build`], also saying whether a limit was exceeded.
    fn build_checked(
        id: Option<&str>,
        matchers: &[String],
        start: DateTime<Utc>,
        end: DateTime<Utc>,
        author: &str,
        comment: &str,
    ) -> Result<Silence, (Vec<Problem>, bool)> {
        let key = |k: &str| vec![PathSeg::from(k)];
        if matchers.len() > MAX_SILENCE_MATCHERS {
            // Refused before any matcher is compiled.
            return Err((
                vec![(
                    key("matchers"),
                    format!(
                        "{} matchers; a silence has at most {MAX_SILENCE_MATCHERS} matchers",
                        matchers.len()
                    ),
                )],
                true,
            ));
        }
        let mut problems: Vec<Problem> = Vec::new();
        let mut over_limit = false;
        if let Some(id) = id
            && !is_id(id)
        {
            problems.push((
                key("id"),
                "an id is 1 to 128 characters without control characters".into(),
            ));
        }
        let mut parsed = Vec::with_capacity(matchers.len());
        for (i, text) in matchers.iter().enumerate() {
            match Matcher::parse(text) {
                Ok(m) => parsed.push(m),
                Err(e) => {
                    over_limit |= e == MatcherError::TooLarge;
                    problems.push((
                        vec![PathSeg::from("matchers"), PathSeg::from(i)],
                        format!("`{}`: {e}", abbreviate(text)),
                    ));
                }
            }
        }
        if matchers.is_empty() {
            problems.push((
                key("matchers"),
                "a silence needs at least one matcher (a silence of everything is refused)".into(),
            ));
        } else if parsed.len() == matchers.len() && parsed.iter().all(|m| m.matches(&Labels::new()))
        {
            // Alertmanager's rule: matchers that all hold for an alert without labels would
            // silence every alert.
            problems.push((
                key("matchers"),
                "these matchers all match an alert with no labels, so they would silence everything; add one that requires a label value".into(),
            ));
        }
        if end <= start {
            problems.push((
                key("end"),
                format!("end ({end}) must be after start ({start})"),
            ));
        }
        if author.trim().is_empty() {
            problems.push((key("author"), "author must not be empty".into()));
        }
        if comment.trim().is_empty() {
            problems.push((key("comment"), "comment must not be empty".into()));
        }
        if !problems.is_empty() {
            return Err((problems, over_limit));
        }
        Ok(Silence {
            id: id.map_or_else(|| derived_id(matchers, start, end), str::to_string),
            matchers: parsed,
            start,
            end,
            author: author.to_string(),
            comment: comment.to_string(),
        })
    }

    /// How many of its matchers are regexes (`=~`, `!~`).
    pub fn regex_count(&self) -> usize {
        self.matchers
            .iter()
            .filter(|m| matches!(m.op, MatchOp::Regex(_) | MatchOp::NotRegex(_)))
            .count()
    }

    /// Whether the silence applies at `at`: `start <= at < end`.
    pub fn is_active(&self, at: DateTime<Utc>) -> bool {
        self.start <= at && at < self.end
    }

    /// Whether every matcher holds for `labels` (regardless of time).
    pub fn matches(&self, labels: &Labels) -> bool {
        self.matchers.iter().all(|m| m.matches(labels))
    }

    /// Whether it silences an alert with `labels` at `at`.
    pub fn silences(&self, labels: &Labels, at: DateTime<Utc>) -> bool {
        self.is_active(at) && self.matches(labels)
    }
}

impl From<Silence> for SilenceSpec {
    fn from(s: Silence) -> Self {
        SilenceSpec {
            id: Some(s.id),
            matchers: s.matchers.iter().map(ToString::to_string).collect(),
            start: s.start,
            end: s.end,
            author: s.author,
            comment: s.comment,
        }
    }
}

impl TryFrom<SilenceSpec> for Silence {
    type Error = String;
    fn try_from(spec: SilenceSpec) -> Result<Self, Self::Error> {
        Self::parse_api(spec).map_err(|e| e.message)
    }
}

/// A matcher as quoted in an error: at most 200 characters, so refusing a huge one does not
/// echo it back in full.
fn abbreviate(text: &str) -> std::borrow::Cow<'_, str> {
    const MAX: usize = 200;
    match text.char_indices().nth(MAX) {
        None => text.into(),
        Some((cut, _)) => format!("{}…", &text[..cut]).into(),
    }
}

fn is_id(s: &str) -> bool {
    !s.is_empty() && s.len() <= 128 && !s.chars().any(char::is_control)
}

/// `s-` and 16 hex digits of sha256(matchers, start, end): stable across reloads, so the
/// timeline of an alert silenced before a reload names the same silence after it.
fn derived_id(matchers: &[String], start: DateTime<Utc>, end: DateTime<Utc>) -> String {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    for m in matchers {
        h.update(m.trim().as_bytes());
        h.update([0u8]);
    }
    h.update(start.to_rfc3339().as_bytes());
    h.update([0u8]);
    h.update(end.to_rfc3339().as_bytes());
    let hex: String = h.finalize()[..8]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("s-{hex}")
}

/// An inhibition rule (Alertmanager semantics): an open incident matching `source_matchers`
/// mutes alerts matching `target_matchers` when every label in `equal` has the same value on
/// both (a label missing on a side counts as the empty string, so missing on both is equal).
#[derive(Debug, Clone, PartialEq)]
pub struct InhibitRule {
    /// What the inhibiting (open) incident looks like; never empty.
    pub source_matchers: Vec<Matcher>,
    /// What the inhibited alert looks like; never empty.
    pub target_matchers: Vec<Matcher>,
    /// Labels that must agree, e.g. `region`.
    pub equal: Vec<String>,
}

impl InhibitRule {
    /// Builds a rule from matcher strings, or every problem (keys relative to the rule).
    pub(crate) fn build(
        source: &[String],
        target: &[String],
        equal: &[String],
    ) -> Result<InhibitRule, Vec<Problem>> {
        let mut problems: Vec<Problem> = Vec::new();
        let mut side = |name: &str, texts: &[String]| {
            if texts.is_empty() {
                problems.push((
                    vec![PathSeg::from(name)],
                    format!("{name} needs at least one matcher"),
                ));
            }
            let mut out = Vec::with_capacity(texts.len());
            for (i, text) in texts.iter().enumerate() {
                match Matcher::parse(text) {
                    Ok(m) => out.push(m),
                    Err(e) => problems.push((
                        vec![PathSeg::from(name), PathSeg::from(i)],
                        format!("`{text}`: {e}"),
                    )),
                }
            }
            out
        };
        let source_matchers = side("source_matchers", source);
        let target_matchers = side("target_matchers", target);
        for (i, label) in equal.iter().enumerate() {
            if !is_label_name(label) {
                problems.push((
                    vec![PathSeg::from("equal"), PathSeg::from(i)],
                    not_a_label_name(label),
                ));
            }
        }
        if problems.is_empty() {
            Ok(InhibitRule {
                source_matchers,
                target_matchers,
                equal: equal.to_vec(),
            })
        } else {
            Err(problems)
        }
    }

    /// Whether an open incident with `source_labels` inhibits an alert with `target_labels`.
    /// The caller never asks an incident about its own alerts.
    pub fn inhibits(&self, source_labels: &Labels, target_labels: &Labels) -> bool {
        let value = |l: &Labels, k: &str| l.get(k).map_or("", String::as_str).to_string();
        self.source_matchers
            .iter()
            .all(|m| m.matches(source_labels))
            && self
                .target_matchers
                .iter()
                .all(|m| m.matches(target_labels))
            && self
                .equal
                .iter()
                .all(|k| value(source_labels, k) == value(target_labels, k))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::tests_support::labels;

    fn at(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    fn spec(matchers: &[&str]) -> SilenceSpec {
        SilenceSpec {
            id: None,
            matchers: matchers.iter().map(ToString::to_string).collect(),
            start: at("2026-11-28T01:00:00Z"),
            end: at("2026-11-28T03:00:00Z"),
            author: "mei".into(),
            comment: "RDS maintenance, CHG-1234".into(),
        }
    }

    #[test]
    fn a_silence_applies_only_inside_its_window_and_to_matching_alerts() {
        let s = Silence::parse_api(spec(&[
            r#"region="ap-southeast-1""#,
            r#"alarm_name=~"rds-.*""#,
        ]))
        .unwrap();
        let rds = labels(&[("region", "ap-southeast-1"), ("alarm_name", "rds-cpu")]);
        let eks = labels(&[("region", "ap-southeast-1"), ("alarm_name", "eks-cpu")]);
        let elsewhere = labels(&[("region", "eu-west-1"), ("alarm_name", "rds-cpu")]);
        assert!(s.matches(&rds));
        assert!(!s.matches(&eks));
        assert!(!s.matches(&elsewhere));
        let tick = chrono::TimeDelta::nanoseconds(1);
        assert!(!s.is_active(s.start - tick));
        assert!(s.is_active(s.start));
        assert!(s.is_active(s.end - tick));
        assert!(!s.is_active(s.end));
        assert!(s.silences(&rds, at("2026-11-28T02:00:00Z")));
        assert!(!s.silences(&rds, at("2026-11-28T04:00:00Z")));
        assert!(s.id.starts_with("s-") && s.id.len() == 18, "{}", s.id);
    }

    #[test]
    fn silences_round_trip_through_json_with_matcher_strings() {
        let mut sp = spec(&[r#"alarm_name!~"x\\.y""#, r#"team = "db""#]);
        sp.id = Some("maint-42".into());
        let s = Silence::parse_api(sp).unwrap();
        let json = serde_json::to_value(&s).unwrap();
        assert_eq!(json["matchers"][0], r#"alarm_name!~"x\\.y""#);
        assert_eq!(json["matchers"][1], r#"team="db""#);
        assert_eq!(json["id"], "maint-42");
        let back: Silence = serde_json::from_value(json).unwrap();
        assert_eq!(back, s);
        // A stored silence that no longer validates does not read back silently.
        let bad = serde_json::json!({
            "matchers": [], "start": "2026-11-28T01:00:00Z", "end": "2026-11-28T03:00:00Z",
            "author": "mei", "comment": "x"
        });
        assert!(serde_json::from_value::<Silence>(bad).is_err());
        let unknown = serde_json::json!({
            "matchers": ["a=\"b\""], "start": "2026-11-28T01:00:00Z", "end": "2026-11-28T03:00:00Z",
            "author": "mei", "comment": "x", "ends_at": "2026-11-28T03:00:00Z"
        });
        assert!(serde_json::from_value::<Silence>(unknown).is_err());
    }

    #[test]
    fn bad_api_silences_name_every_problem() {
        let mut sp = spec(&[r#"region="a""#, "region=a"]);
        sp.end = sp.start;
        sp.author = " ".into();
        let err = Silence::parse_api(sp).unwrap_err().message;
        assert!(
            err.contains("matchers[1]: `region=a`: the value must be in double quotes"),
            "{err}"
        );
        assert!(
            err.contains("end: end (2026-11-28 01:00:00 UTC) must be after start"),
            "{err}"
        );
        assert!(err.contains("author: author must not be empty"), "{err}");

        let err = Silence::parse_api(spec(&[])).unwrap_err().message;
        assert!(err.contains("at least one matcher"), "{err}");
        let err = Silence::parse_api(spec(&[r#"region=~".*""#, r#"x!="y""#]))
            .unwrap_err()
            .message;
        assert!(err.contains("silence everything"), "{err}");
        // One matcher that needs a value is enough.
        assert!(Silence::parse_api(spec(&[r#"region=~".*""#, r#"x="y""#])).is_ok());
    }

    #[test]
    fn silences_over_the_limits_are_refused_as_limits() {
        // The pathological POST: 600 nested repetitions, refused on the count before any is
        // compiled.
        let mut sp = spec(&[]);
        sp.matchers = vec![r#"a=~"((a{50}){50}){50}""#.to_string(); 600];
        let err = Silence::parse_api(sp).unwrap_err();
        assert!(err.over_limit, "{err}");
        assert_eq!(
            err.message,
            "matchers: 600 matchers; a silence has at most 32 matchers"
        );
        // One such regex is refused by its compiled size.
        let err =
            Silence::parse_api(spec(&[r#"region="x""#, r#"a=~"((a{50}){50}){50}""#])).unwrap_err();
        assert!(err.over_limit, "{err}");
        assert!(
            err.message.starts_with("matchers[1]: `a=~\"((a{50}){50}){50}\"`: the regular expression is too large: it compiles to more than 64 KiB"),
            "{err}"
        );
        // A huge matcher is not echoed back in full.
        let long = format!(r#"a=~"{}x{{100000}}""#, "y".repeat(1000));
        let err = Silence::parse_api(spec(&[&long])).unwrap_err();
        assert!(err.over_limit && err.message.len() < 500, "{err}");
        // Exactly the limit is fine; a plain mistake is a 400, not a limit.
        let names: Vec<String> = (0..MAX_SILENCE_MATCHERS)
            .map(|i| format!(r#"l{i}=~"v{i}|w""#))
            .collect();
        let names: Vec<&str> = names.iter().map(String::as_str).collect();
        assert_eq!(Silence::parse_api(spec(&names)).unwrap().matchers.len(), 32);
        assert!(
            !Silence::parse_api(spec(&["region=a"]))
                .unwrap_err()
                .over_limit
        );
    }

    fn rule(equal: &[&str]) -> InhibitRule {
        InhibitRule::build(
            &[r#"kind="route53_health_check""#.into()],
            &[r#"kind="cloudwatch_alarm""#.into()],
            &equal.iter().map(ToString::to_string).collect::<Vec<_>>(),
        )
        .unwrap()
    }

    #[test]
    fn inhibition_needs_both_sides_to_match_and_equal_labels_to_agree() {
        let r = rule(&["region"]);
        let down = labels(&[
            ("kind", "route53_health_check"),
            ("region", "ap-southeast-1"),
        ]);
        let eks = labels(&[("kind", "cloudwatch_alarm"), ("region", "ap-southeast-1")]);
        let eks_eu = labels(&[("kind", "cloudwatch_alarm"), ("region", "eu-west-1")]);
        let no_region = labels(&[("kind", "cloudwatch_alarm")]);
        assert!(r.inhibits(&down, &eks));
        assert!(!r.inhibits(&down, &eks_eu));
        assert!(!r.inhibits(&down, &no_region));
        // The sides are not interchangeable.
        assert!(!r.inhibits(&eks, &down));
        // A label missing on both sides is equal (as the empty string).
        let down_nowhere = labels(&[("kind", "route53_health_check")]);
        assert!(r.inhibits(&down_nowhere, &no_region));
        // ... and so is missing on one side and empty on the other (Alertmanager).
        let empty_region = labels(&[("kind", "cloudwatch_alarm"), ("region", "")]);
        assert!(r.inhibits(&down_nowhere, &empty_region));
        // Without `equal`, any target is inhibited.
        assert!(rule(&[]).inhibits(&down, &eks_eu));
        // Several equal labels must all agree.
        let r2 = rule(&["region", "account"]);
        let mut eks_other = eks.clone();
        eks_other.insert("account".into(), "2".into());
        assert!(!r2.inhibits(&down, &eks_other));
    }

    #[test]
    fn bad_inhibit_rules_report_each_problem() {
        let problems =
            InhibitRule::build(&[], &["kind=x".into()], &["re-gion".into()]).unwrap_err();
        let keys: Vec<String> = problems
            .iter()
            .map(|(p, _)| super::super::locate::render(p))
            .collect();
        assert_eq!(keys, ["source_matchers", "target_matchers[0]", "equal[0]"]);
    }
}
