//! The builder of the classification rules (`rules`): what decides an alert's severity and
//! escalation policy. Compiled to [`CompiledRule`]s that `classify` evaluates first match wins.

use std::collections::HashMap;

use super::ctx::{Ctx, key_path};
use super::merge::Merged;
use crate::config::locate::PathSeg;
use crate::config::matcher::{Matcher, not_a_label_name};
use crate::config::policy::CompiledRule;
use crate::domain::is_label_name;

/// `rules`, in evaluation order: unique names, matchers that parse, label names for `labels`
/// and `group_by`, a `group_window` only with `group_by`, and a catch-all last and only last.
pub(super) fn build_rules(ctx: &mut Ctx<'_>, m: &Merged<'_>) -> Vec<CompiledRule> {
    let mut out = Vec::with_capacity(m.rules.len());
    let mut seen: HashMap<&str, (usize, usize)> = HashMap::new();
    for (n, &(fi, ri, rule)) in m.rules.iter().enumerate() {
        let at = |rest: Vec<PathSeg>| [key_path!["rules", ri], rest].concat();
        let name = rule.name.as_str();
        if name.is_empty() || name.len() > 128 || name.chars().any(char::is_control) {
            ctx.err(
                fi,
                at(key_path!["name"]),
                "a rule name is 1 to 128 characters without control characters",
            );
        }
        if let Some(&(ffi, fri)) = seen.get(name) {
            let first = ctx.place(ffi, key_path!["rules", fri, "name"]);
            ctx.err(
                fi,
                at(key_path!["name"]),
                format!("duplicate rule name {name:?} (first used at {first})"),
            );
        } else {
            seen.insert(name, (fi, ri));
        }

        let mut matchers = Vec::with_capacity(rule.matchers.len());
        for (mi, text) in rule.matchers.iter().enumerate() {
            match Matcher::parse(text) {
                Ok(matcher) => matchers.push(matcher),
                Err(e) => ctx.err(fi, at(key_path!["matchers", mi]), format!("`{text}`: {e}")),
            }
        }
        if rule.matchers.is_empty()
            && let Some(&(nfi, nri, next)) = m.rules.get(n + 1)
        {
            let next_at = ctx.place(nfi, key_path!["rules", nri]);
            ctx.err(
                fi,
                at(key_path!["matchers"]),
                format!(
                    "rule {name:?} matches every alert, so the rules after it (from {:?} at {next_at}) can never match; move it to the end",
                    next.name
                ),
            );
        }
        if let Some(p) = &rule.policy
            && !m.policies.contains_key(p.as_str())
        {
            ctx.err(fi, at(key_path!["policy"]), format!("unknown policy {p:?}"));
        }
        for key in rule.labels.keys() {
            if !is_label_name(key) {
                ctx.err(
                    fi,
                    at(key_path!["labels", key.as_str()]),
                    not_a_label_name(key),
                );
            }
        }
        for (gi, key) in rule.group_by.iter().enumerate() {
            if !is_label_name(key) {
                ctx.err(fi, at(key_path!["group_by", gi]), not_a_label_name(key));
            }
        }
        if let Some(window) = rule.group_window {
            if rule.group_by.is_empty() {
                ctx.err(
                    fi,
                    at(key_path!["group_window"]),
                    "group_window needs group_by (the labels that make alerts one group)",
                );
            } else if window.is_zero() {
                ctx.err(
                    fi,
                    at(key_path!["group_window"]),
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
            ctx.err(fi, key_path!["rules"], "there are no rules; at least a final catch-all rule (`matchers: []`) is required");
        }
        Some(&(fi, ri, rule)) if !rule.matchers.is_empty() => ctx.err(
            fi,
            key_path!["rules", ri],
            format!(
                "the last rule ({:?}) has matchers; a final catch-all rule with `matchers: []` is required so every alert is routed",
                rule.name
            ),
        ),
        Some(_) => {}
    }
    out
}

#[cfg(test)]
mod tests {
    use crate::config::format_errors;
    use crate::config::tests_support::*;

    /// The last rule is a catch-all, matchers compile, `group_window` comes with `group_by`.
    #[test]
    fn broken_rules_are_located() {
        assert_single_located_errors(&[
            case(
                "missing catch-all",
                "rules.yaml",
                RULES.replace("    matchers: []\n", "    matchers: ['kind=~\".+\"']\n"),
                "name: catch-all",
                "rules[1]",
                "catch-all rule with `matchers: []` is required",
            ),
            case(
                "bad regex",
                "rules.yaml",
                RULES.replace("timeout|http_5xx", "(timeout|http_5xx"),
                "(timeout",
                "rules[0].matchers[1]",
                "unclosed group",
            ),
            case(
                "group_window without group_by",
                "rules.yaml",
                RULES.replace(
                    "    severity: high\n",
                    "    severity: high\n    group_window: 5m\n",
                ),
                "group_window: 5m",
                "rules[0].group_window",
                "group_window needs group_by",
            ),
        ]);
    }

    /// Rule names are unique; matcher values are quoted; a regex is bounded in size.
    #[test]
    fn duplicate_names_unquoted_values_and_huge_regexes_are_refused() {
        assert_each_edit_is_refused(&[
            (
                "rules.yaml",
                "name: catch-all",
                "name: exchange",
                "duplicate rule name",
            ),
            (
                "rules.yaml",
                "'kind=\"exchange_error\"'",
                "'kind=exchange_error'",
                "double quotes",
            ),
            (
                "rules.yaml",
                "'kind=\"exchange_error\"'",
                "'kind=~\"((a{50}){50}){50}\"'",
                "too large",
            ),
        ]);
    }

    #[test]
    fn a_catch_all_above_other_rules_is_refused() {
        let rules = "rules:\n  - { name: all, matchers: [], severity: low }\n  - { name: late, matchers: ['a=\"b\"'], severity: high }\n  - { name: end, matchers: [], severity: low }\n";
        let (_dir, result) = load_with(&[("rules.yaml", rules)]);
        let errors = result.unwrap_err();
        assert_eq!(errors.len(), 1, "{}", format_errors(&errors));
        assert_eq!(
            (errors[0].key.as_str(), errors[0].line),
            ("rules[0].matchers", Some(2))
        );
        assert!(errors[0].message.contains("can never match"));
    }
}
