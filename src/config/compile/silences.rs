//! The builders of what keeps a matched alert from paging again or at all: `silences`
//! (maintenance windows written in `routing/`), `inhibit_rules` and `flapping` (a re-firing
//! within the cool-down reopens its incident). The silence and inhibition rules themselves, shared
//! with the API, are [`crate::config::suppress`]'s.

use std::collections::HashMap;
use std::time::Duration;

use chrono::{DateTime, Utc};

use super::ctx::{Ctx, key_path, report};
use super::merge::Merged;
use crate::config::calendar::parse_instant;
use crate::config::suppress::{InhibitRule, Silence};

/// `silences` written in `routing/`: a window in the policy's zone, checked like an API silence,
/// ids unique across the files.
pub(super) fn build_silences(ctx: &mut Ctx<'_>, m: &Merged<'_>, tz: chrono_tz::Tz) -> Vec<Silence> {
    build_windows(ctx, &m.silences, "silences", tz)
}

/// `drills` written in `routing/`: windows with the very shape and checks of a silence (a drill
/// of everything is refused as a silence of everything is), ids unique across the files.
pub(super) fn build_drills(ctx: &mut Ctx<'_>, m: &Merged<'_>, tz: chrono_tz::Tz) -> Vec<Silence> {
    build_windows(ctx, &m.drills, "drills", tz)
}

/// The windows listed under `section` (`silences` or `drills`).
fn build_windows(
    ctx: &mut Ctx<'_>,
    list: &[(usize, usize, &crate::config::routing::SilenceConfig)],
    section: &'static str,
    tz: chrono_tz::Tz,
) -> Vec<Silence> {
    let mut out: Vec<Silence> = Vec::with_capacity(list.len());
    let mut seen: HashMap<String, (usize, usize)> = HashMap::new();
    for &(fi, si, s) in list {
        let base = key_path![section, si];
        let at = |k: &str| [base.clone(), key_path![k]].concat();
        let start = parse_instant(&s.start, tz).map_err(|msg| ctx.err(fi, at("start"), msg));
        let end = parse_instant(&s.end, tz).map_err(|msg| ctx.err(fi, at("end"), msg));
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
                    let first = ctx.place(ffi, key_path![section, fsi]);
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

/// `inhibit_rules`, in file order.
pub(super) fn build_inhibit_rules(ctx: &mut Ctx<'_>, m: &Merged<'_>) -> Vec<InhibitRule> {
    let mut out = Vec::with_capacity(m.inhibit_rules.len());
    for &(fi, ri, r) in &m.inhibit_rules {
        match InhibitRule::build(&r.source_matchers, &r.target_matchers, &r.equal) {
            Ok(rule) => out.push(rule),
            Err(problems) => report(ctx, fi, key_path!["inhibit_rules", ri], problems),
        }
    }
    out
}

/// `flapping.cooldown`; `None` when `flapping` is left out.
pub(super) fn build_flapping(ctx: &mut Ctx<'_>, m: &Merged<'_>) -> Option<Duration> {
    m.flapping.map(|(fi, f)| {
        if f.cooldown.is_zero() {
            ctx.err(
                fi,
                key_path!["flapping", "cooldown"],
                "cooldown must be more than 0 (leave flapping out to page afresh every time)",
            );
        }
        f.cooldown
    })
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use chrono::{DateTime, Utc};

    use crate::config::tests_support::*;

    /// A routing silence has an end after its start and at most 32 matchers that parse, one needing
    /// a label value.
    #[test]
    fn broken_silences_are_located() {
        assert_single_located_errors(&[
            case(
                "silence without end",
                "extra.yaml",
                extra("    end: \"2026-11-28T04:00:00\"\n", ""),
                "- matchers: ['region",
                "silences[0]",
                "missing field `end`",
            ),
            case(
                "silence ending before it starts",
                "extra.yaml",
                extra(
                    "end: \"2026-11-28T04:00:00\"",
                    "end: \"2026-11-28T02:00:00\"",
                ),
                "end: \"2026-11-28T02",
                "silences[0].end",
                "must be after start",
            ),
            case(
                "silence without matchers",
                "extra.yaml",
                extra(
                    "['region=\"ap-southeast-1\"', 'alarm_name=~\"rds-.*\"']",
                    "[]",
                ),
                "matchers: []",
                "silences[0].matchers",
                "silence of everything is refused",
            ),
            case(
                "silence with a bad matcher",
                "extra.yaml",
                extra("'alarm_name=~\"rds-.*\"'", "'alarm_name=~rds'"),
                "alarm_name=~rds",
                "silences[0].matchers[1]",
                "double quotes",
            ),
            case(
                "silence with a regex too large to compile",
                "extra.yaml",
                extra(
                    "'alarm_name=~\"rds-.*\"'",
                    "'alarm_name=~\"((a{50}){50}){50}\"'",
                ),
                "((a{50}",
                "silences[0].matchers[1]",
                "too large",
            ),
            case(
                "silence with too many matchers",
                "extra.yaml",
                extra(
                    "['region=\"ap-southeast-1\"', 'alarm_name=~\"rds-.*\"']",
                    &format!("['region=\"ap-southeast-1\"'{}]", ", 'a=\"b\"'".repeat(32)),
                ),
                "- matchers: ['region",
                "silences[0].matchers",
                "at most 32 matchers",
            ),
            case(
                "unknown key in a silence",
                "extra.yaml",
                extra(
                    "    author: mei\n",
                    "    author: mei\n    ends_at: tomorrow\n",
                ),
                "ends_at",
                "silences[0].ends_at",
                "unknown field `ends_at`",
            ),
        ]);
    }

    /// Inhibition rules have matchers that compile and label names in `equal`; a flapping cool-down
    /// is longer than 0.
    #[test]
    fn broken_inhibit_rules_and_flapping_are_located() {
        assert_single_located_errors(&[
            case(
                "inhibit rule with a regex too large to compile",
                "extra.yaml",
                extra(
                    "target_matchers: ['kind=\"cloudwatch_alarm\"']",
                    "target_matchers: ['kind=~\"x{70000}\"']",
                ),
                "x{70000}",
                "inhibit_rules[0].target_matchers[0]",
                "too large",
            ),
            case(
                "inhibit rule with a bad equal label",
                "extra.yaml",
                extra("equal: [region]", "equal: [aws-region]"),
                "equal: [aws-region]",
                "inhibit_rules[0].equal[0]",
                "not a label name",
            ),
            case(
                "flapping without a cooldown",
                "extra.yaml",
                extra("cooldown: 10m", "cooldown: 0s"),
                "cooldown: 0s",
                "flapping.cooldown",
                "more than 0",
            ),
        ]);
    }

    #[test]
    fn duplicate_silence_ids_are_refused() {
        let text = r#"silences:
  - id: s1
    matchers: ['a="b"']
    start: "2026-11-28T02:00:00"
    end: "2026-11-28T04:00:00"
    author: mei
    comment: first
  - id: s1
    matchers: ['a="c"']
    start: "2026-11-28T02:00:00"
    end: "2026-11-28T04:00:00"
    author: raj
    comment: second
"#;
        let (_dir, e) = single_error("extra.yaml", text);
        assert_eq!((e.key.as_str(), e.line), ("silences[1].id", Some(8)));
        assert!(e.message.contains(r#"duplicate silence id "s1""#), "{e}");
        assert!(e.message.contains("extra.yaml:2"), "{e}");
    }

    #[test]
    fn drill_windows_in_routing_are_checked_like_silences_and_match_by_labels_and_time() {
        let text = r#"drills:
  - id: q4
    matchers: ['service="trading-bot"']
    start: "2026-12-12T10:00:00"
    end: "2026-12-12T12:00:00"
    author: mei
    comment: Q4 DR drill
"#;
        let (_dir, policy) = load_with(&[("drills.yaml", text)]);
        let policy = policy.unwrap_or_else(|e| panic!("{}", crate::config::format_errors(&e)));
        assert_eq!(policy.drills.len(), 1);
        assert!(policy.silences.is_empty(), "a drill is no silence");
        let at = |s: &str| DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc);
        let bot = labels(&[("service", "trading-bot")]);
        // Local (Asia/Singapore) 10:00-12:00 is 02:00-04:00 UTC.
        let inside = at("2026-12-12T03:00:00Z");
        assert_eq!(
            policy.drill_for(&bot, inside, []).map(|d| d.id.as_str()),
            Some("q4")
        );
        assert!(
            policy
                .drill_for(&bot, at("2026-12-12T04:00:00Z"), [])
                .is_none()
        );
        assert!(
            policy
                .drill_for(&labels(&[("service", "other")]), inside, [])
                .is_none()
        );
        let (_dir, e) = single_error(
            "drills.yaml",
            &text.replace(
                "end: \"2026-12-12T12:00:00\"",
                "end: \"2026-12-12T09:00:00\"",
            ),
        );
        assert_eq!((e.key.as_str(), e.line), ("drills[0].end", Some(5)), "{e}");
        assert!(e.message.contains("must be after start"), "{e}");
    }

    #[test]
    fn routing_silences_read_local_times_and_inhibit_rules_keep_equal() {
        let p = extra_ok_policy();
        assert_eq!(p.silences.len(), 1);
        assert_eq!(
            p.silences[0].start,
            "2026-11-27T18:00:00Z".parse::<DateTime<Utc>>().unwrap()
        );
        assert_eq!(p.silences[0].author, "mei");
        assert_eq!(p.inhibit_rules[0].equal, ["region"]);
        // Without the section: nothing silenced.
        assert!(base_policy().silences.is_empty());
    }

    #[test]
    fn flapping_sets_the_reopen_cool_down() {
        let p = extra_ok_policy();
        assert_eq!(p.flap_cooldown, Some(Duration::from_secs(600)));
        // Without the section: no flap handling.
        assert!(base_policy().flap_cooldown.is_none());
    }
}
