//! The builders of where messages go: `channels` (each checked against its type's descriptor in
//! the registry, `config::channel`: the keys it takes, environment variable names for secrets,
//! Slack channel names, webhook URLs, email lists) and `last_resort` (channels told when a step
//! reached no one).

use std::collections::BTreeMap;

use super::ctx::{Ctx, key_path};
use super::merge::Merged;
use crate::config::channel::{ChannelSpec, ChannelType, Form, KeyValue, channel_types};
use crate::config::routing::ChannelConfig;
use crate::domain::EmailAddress;

/// `channels`: each with exactly the keys its type takes, well-formed. Problems with the
/// registry itself (a type registered twice) are reported here too, so no policy loads over them.
pub(super) fn build_channels(ctx: &mut Ctx<'_>, m: &Merged<'_>) -> BTreeMap<String, ChannelSpec> {
    if let Some(&(fi, _)) = m.channels.values().next() {
        for problem in channel_types().problems() {
            ctx.err(fi, key_path!["channels"], problem.clone());
        }
    }
    let mut out = BTreeMap::new();
    for (&id, &(fi, c)) in &m.channels {
        if let Some(spec) = build_channel(ctx, fi, id, c) {
            out.insert(id.to_string(), spec);
        }
    }
    out
}

/// The registered type a channel names, if any (an unknown one is reported by `build_channel`).
pub(super) fn type_of(c: &ChannelConfig) -> Option<&'static ChannelType> {
    channel_types().get(&c.kind)
}

/// Checks that a channel has exactly the keys its type takes, and that they are well-formed.
fn build_channel(ctx: &mut Ctx<'_>, fi: usize, id: &str, c: &ChannelConfig) -> Option<ChannelSpec> {
    let Some(ty) = type_of(c) else {
        // Refused when the file was parsed (`routing::ChannelConfig`).
        return None;
    };
    let kind = ty.name;
    let errors_before = ctx.errors.len();
    // A key no type takes was refused when the file was parsed; one that another type takes is
    // refused here.
    for key in c.keys.keys().filter(|k| ty.key(k).is_none()) {
        ctx.err(
            fi,
            key_path!["channels", id, key.as_str()],
            format!("type {kind} does not take `{key}`"),
        );
    }
    for key in ty.keys.iter().filter(|k| k.required) {
        if !c.keys.contains_key(key.name) {
            ctx.err(
                fi,
                key_path!["channels", id],
                format!("type {kind} needs `{}`", key.name),
            );
        }
    }
    let mut values = Vec::new();
    for key in ty.keys {
        if let Some(raw) = c.keys.get(key.name)
            && let Some(value) = check_form(ctx, fi, id, key.name, key.form, raw)
        {
            values.push((key.name, value));
        }
    }
    (ctx.errors.len() == errors_before).then(|| ChannelSpec::new(ty, values))
}

/// Checks one key's value against its form, reporting what is wrong at its line.
fn check_form(
    ctx: &mut Ctx<'_>,
    fi: usize,
    id: &str,
    key: &str,
    form: Form,
    raw: &yaml_serde::Value,
) -> Option<KeyValue> {
    let at = || key_path!["channels", id, key];
    let text = |ctx: &mut Ctx<'_>, raw: &yaml_serde::Value| match raw.as_str() {
        Some(s) => Some(s.to_string()),
        None => {
            ctx.err(fi, at(), "invalid type: expected a string");
            None
        }
    };
    match form {
        Form::EnvName => {
            let name = text(ctx, raw)?;
            if is_env_name(&name) {
                return Some(KeyValue::EnvName(name));
            }
            ctx.err(
                fi,
                at(),
                format!("{name:?} is not an environment variable name (^[A-Z_][A-Z0-9_]*$); secrets are never written in the policy"),
            );
            None
        }
        Form::SlackChannel => {
            let channel = text(ctx, raw)?;
            if is_slack_channel(&channel) {
                return Some(KeyValue::SlackChannel(channel));
            }
            ctx.err(
                fi,
                at(),
                format!(
                    "{channel:?} is not a Slack channel (#name in lower case, or an id like C0123ABCD)"
                ),
            );
            None
        }
        Form::Url => {
            let url = text(ctx, raw)?;
            match url::Url::parse(&url) {
                Ok(u) if matches!(u.scheme(), "http" | "https") => Some(KeyValue::Url(u)),
                Ok(_) => {
                    ctx.err(fi, at(), format!("{url:?} must be an http or https URL"));
                    None
                }
                Err(e) => {
                    ctx.err(fi, at(), format!("{url:?} is not a URL: {e}"));
                    None
                }
            }
        }
        Form::Emails => {
            let Some(items) = raw.as_sequence() else {
                ctx.err(fi, at(), "invalid type: expected a list of email addresses");
                return None;
            };
            if items.is_empty() {
                ctx.err(
                    fi,
                    at(),
                    format!("{key} must not be empty; leave it out to email each target person"),
                );
                return None;
            }
            let mut out = Vec::new();
            let mut ok = true;
            for (i, item) in items.iter().enumerate() {
                match item.as_str().map(EmailAddress::parse) {
                    Some(Ok(address)) => out.push(address),
                    Some(Err(e)) => {
                        ok = false;
                        ctx.err(fi, key_path!["channels", id, key, i], e.to_string());
                    }
                    None => {
                        ok = false;
                        ctx.err(
                            fi,
                            key_path!["channels", id, key, i],
                            "invalid type: expected a string",
                        );
                    }
                }
            }
            ok.then_some(KeyValue::Emails(out))
        }
    }
}

/// An environment variable name: `[A-Z_][A-Z0-9_]*`.
fn is_env_name(s: &str) -> bool {
    let mut chars = s.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_uppercase() || c == '_')
        && chars.all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
}

/// A Slack id: one of `prefixes`, then upper-case letters and digits (at least 3 in all).
pub(super) fn is_slack_id(s: &str, prefixes: &[char]) -> bool {
    let mut chars = s.chars();
    chars.next().is_some_and(|c| prefixes.contains(&c))
        && s.len() >= 3
        && chars.all(|c| c.is_ascii_uppercase() || c.is_ascii_digit())
}

/// A Slack channel: `#name` in lower case, or a channel id (`C…`, `G…`).
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

/// `last_resort`: channels that exist, in order, without repeats.
pub(super) fn build_last_resort(ctx: &mut Ctx<'_>, m: &Merged<'_>) -> Vec<String> {
    let mut last_resort = Vec::new();
    if let Some((fi, names)) = m.last_resort {
        for (i, name) in names.iter().enumerate() {
            if !m.channels.contains_key(name.as_str()) {
                ctx.err(
                    fi,
                    key_path!["last_resort", i],
                    format!("unknown channel {name:?}"),
                );
            } else if !last_resort.contains(name) {
                last_resort.push(name.clone());
            }
        }
    }
    last_resort
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::tests_support::*;

    /// A routing key is the name of the environment variable that holds it, never the key itself.
    #[test]
    fn secrets_are_named_by_environment_variable() {
        assert_each_edit_is_refused(&[(
            "channels.yaml",
            "VIGIL_PAGERDUTY_ROUTING_KEY",
            "vigil-pd-key",
            "not an environment variable name",
        )]);
    }

    #[test]
    fn env_and_slack_names_are_checked() {
        assert!(is_env_name("VIGIL_SLACK_BOT_TOKEN"));
        assert!(is_env_name("_X1"));
        assert!(!is_env_name("vigil_token"));
        assert!(!is_env_name("1X"));
        assert!(!is_env_name(""));
        assert!(is_slack_channel("#trading-alerts"));
        assert!(is_slack_channel("C0123ABCD"));
        assert!(!is_slack_channel("#Trading Alerts"));
    }
}
