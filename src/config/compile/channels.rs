//! The builders of where messages go: `channels` (each type's required and optional keys,
//! environment variable names for secrets, Slack channel names, webhook URLs) and
//! `last_resort` (channels told when a step reached no one).

use std::collections::BTreeMap;

use super::ctx::{Ctx, key_path};
use super::merge::Merged;
use crate::config::policy::ChannelSpec;
use crate::config::routing::{ChannelConfig, ChannelType};

/// `channels`: each with exactly the keys its type takes, well-formed.
pub(super) fn build_channels(ctx: &mut Ctx<'_>, m: &Merged<'_>) -> BTreeMap<String, ChannelSpec> {
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
                key_path!["channels", id, key],
                format!("type {kind} does not take `{key}`"),
            );
        }
    }
    for key in required {
        if !present.iter().any(|&(k, is_set)| k == *key && is_set) {
            ctx.err(
                fi,
                key_path!["channels", id],
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
                key_path!["channels", id, key],
                format!("{name:?} is not an environment variable name (^[A-Z_][A-Z0-9_]*$); secrets are never written in the policy"),
            );
        }
    }
    if c.to.as_ref().is_some_and(Vec::is_empty) {
        ctx.err(
            fi,
            key_path!["channels", id, "to"],
            "to must not be empty; leave it out to email each target person",
        );
    }
    if let Some(channel) = &c.channel
        && !is_slack_channel(channel)
    {
        ctx.err(
            fi,
            key_path!["channels", id, "channel"],
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
                key_path!["channels", id, "url"],
                format!("{url:?} must be an http or https URL"),
            );
            None
        }
        Err(e) => {
            ctx.err(
                fi,
                key_path!["channels", id, "url"],
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
