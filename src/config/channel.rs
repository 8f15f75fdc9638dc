//! Channel types as plug-ins: the data part of each type's descriptor, the registry of them, and
//! a channel as compiled ([`ChannelSpec`]).
//!
//! Each channel file in `notify/` (`notify/slack.rs`, ...) submits one [`ChannelType`] with
//! `inventory::submit!`: its name, the routing keys it takes and the form of each, whom it
//! reaches, its message limits and its part in failover. `compile` checks a channel against its
//! type, `render` cuts messages to its limits, `escalate` and `oncall` ask it whom a channel
//! reaches, and the delivery worker asks it about failover and echoes. None of them names a
//! channel type. How a channel is built from process settings is the other half of the
//! descriptor, `notify::ChannelBuilder`, submitted from the same file: config sits below notify
//! and must not see clients.
//!
//! The registry is read once per process ([`channel_types`]). A type registered twice is not
//! shadowed: both are left out of the registry and the problem is reported by every policy load
//! (`compile`) and at start-up (`notify::check_registry`).

use std::collections::BTreeMap;
use std::sync::LazyLock;

use crate::domain::EmailAddress;

/// The data part of a channel type's descriptor, submitted once per type with
/// `inventory::submit!`.
#[derive(Debug, PartialEq, Eq)]
pub struct ChannelType {
    /// The `type` as written in `routing/` (`slack`); also the name of its `templates/`
    /// directory and of its entry in `ChannelSettings::endpoints`.
    pub name: &'static str,
    /// The routing keys a channel of this type takes, besides `type`, in the order they are
    /// checked.
    pub keys: &'static [Key],
    /// Whom a channel of this type puts a message in front of.
    pub reach: Reach,
    /// The longest rendered message, in characters.
    pub limits: Limits,
    /// Its part when a critical page fails for good.
    pub failover: Failover,
    /// The `Origin` (as serialized: `pagerduty`) whose acknowledgements and resolutions are not
    /// sent back to channels of this type: the provider told vigil, so telling it back is an
    /// echo.
    pub echo: Option<&'static str>,
}

inventory::collect!(ChannelType);

/// One routing key of a channel type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Key {
    /// As written in `routing/` (`token_env`).
    pub name: &'static str,
    /// Whether a channel of this type must set it.
    pub required: bool,
    /// What its value must look like.
    pub form: Form,
}

impl Key {
    /// A key the type needs.
    pub const fn required(name: &'static str, form: Form) -> Self {
        Self {
            name,
            required: true,
            form,
        }
    }

    /// A key the type takes but does not need.
    pub const fn optional(name: &'static str, form: Form) -> Self {
        Self {
            name,
            required: false,
            form,
        }
    }
}

/// The forms a routing key's value takes; `compile` checks each with the message it always gave.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Form {
    /// The name of an environment variable (`[A-Z_][A-Z0-9_]*`) holding a secret: secrets are
    /// never written in the policy.
    EnvName,
    /// An http or https URL.
    Url,
    /// A Slack channel: `#name` in lower case, or an id (`C…`, `G…`).
    SlackChannel,
    /// A non-empty list of email addresses.
    Emails,
}

/// Whom a channel of a type reaches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reach {
    /// Each targeted person, at their phone (one delivery per person): `sms`, `phone`.
    PhonePerPerson,
    /// Each targeted person at their email address, unless the channel sets this key (a fixed
    /// list of recipients), in which case it is a destination told once per step: `email`.
    EmailPerPersonUnless(&'static str),
    /// A destination people read, told once per step who was targeted: `slack`, `pagerduty`.
    Destination,
    /// Nobody directly (a machine or a log), told once per step: `webhook`, `log`. Does not
    /// count toward the desk's "two channel types reach people" rule.
    Nobody,
}

/// A contact detail a person needs for a personal channel to reach them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Contact {
    Phone,
    Email,
}

impl Contact {
    /// How error messages name it: `a phone`, `an email address`.
    pub fn describe(self) -> &'static str {
        match self {
            Self::Phone => "a phone",
            Self::Email => "an email address",
        }
    }
}

/// The longest rendered message of a channel type, in characters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// The message body (`templates/<type>/<kind>.txt`).
    pub body: usize,
    /// The one-line title (`.subject`: email subject, PagerDuty summary).
    pub subject: usize,
}

impl Limits {
    /// For a type the registry does not know (templates rendered for a removed type).
    pub const DEFAULT: Self = Self {
        body: 4000,
        subject: 200,
    };
}

/// A channel type's part when a critical page fails for good.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failover {
    /// Takes no part.
    None,
    /// A critical page that fails for good here goes to the same people by every failover
    /// target of the policy: `pagerduty`.
    Source,
    /// Takes such pages when the channel reaches each person itself (is personal), lower ranks
    /// first: `sms` (0, the faster), `email` to each person (1).
    Target { rank: u8 },
}

impl ChannelType {
    /// A type named `name` that reaches `reach`, with no keys, [`Limits::DEFAULT`], no part in
    /// failover and no echo rule; the `const` methods below set the rest, so a descriptor names
    /// only what is its own.
    pub const fn new(name: &'static str, reach: Reach) -> Self {
        Self {
            name,
            keys: &[],
            reach,
            limits: Limits::DEFAULT,
            failover: Failover::None,
            echo: None,
        }
    }

    /// With these routing keys.
    pub const fn keys(mut self, keys: &'static [Key]) -> Self {
        self.keys = keys;
        self
    }

    /// With these limits, in characters.
    pub const fn limits(mut self, body: usize, subject: usize) -> Self {
        self.limits = Limits { body, subject };
        self
    }

    /// With this part in failover.
    pub const fn failover(mut self, failover: Failover) -> Self {
        self.failover = failover;
        self
    }

    /// Acks and resolves that came from `origin` are not sent back to channels of this type.
    pub const fn not_echoing(mut self, origin: &'static str) -> Self {
        self.echo = Some(origin);
        self
    }

    /// The contact a person needs for a channel of this type to reach them, or `None` when it
    /// is not personal. `has_key` says whether the channel sets a routing key.
    pub fn contact(&self, has_key: impl Fn(&str) -> bool) -> Option<Contact> {
        match self.reach {
            Reach::PhonePerPerson => Some(Contact::Phone),
            Reach::EmailPerPersonUnless(key) if !has_key(key) => Some(Contact::Email),
            _ => None,
        }
    }

    /// Whether it puts a message in front of a person (what the desk invariant counts).
    pub fn reaches_people(&self) -> bool {
        self.reach != Reach::Nobody
    }

    /// The key named `name`, if this type takes it.
    pub fn key(&self, name: &str) -> Option<&'static Key> {
        self.keys.iter().find(|k| k.name == name)
    }
}

/// The registered channel types, by name.
#[derive(Debug, Default)]
pub struct ChannelTypes {
    by_name: BTreeMap<&'static str, &'static ChannelType>,
    /// The registered names, sorted (for "expected one of" errors).
    names: Vec<&'static str>,
    /// `type` and every key some registered type takes, in registration order: the fields a
    /// channel may have at all.
    fields: Vec<&'static str>,
    /// Names submitted more than once (left out of `by_name`).
    twice: Vec<&'static str>,
    /// What is wrong with the registrations (a name registered twice), for every load to report.
    problems: Vec<String>,
}

impl ChannelTypes {
    /// Builds a registry. A name submitted twice is a problem, and neither submission is used:
    /// which of two would win is not something a reader of either file could tell.
    pub fn from_types(types: impl IntoIterator<Item = &'static ChannelType>) -> Self {
        let mut by_name = BTreeMap::new();
        let mut twice = Vec::new();
        for t in types {
            if by_name.insert(t.name, t).is_some() && !twice.contains(&t.name) {
                twice.push(t.name);
            }
        }
        let mut problems = Vec::new();
        for &name in &twice {
            by_name.remove(name);
            problems.push(format!(
                "channel type {name:?} is registered twice (two `inventory::submit!` of a \
                 `config::ChannelType` with that name); neither is used"
            ));
        }
        let names = by_name.keys().copied().collect();
        let mut fields = vec!["type"];
        for t in by_name.values() {
            for k in t.keys {
                if !fields.contains(&k.name) {
                    fields.push(k.name);
                }
            }
        }
        Self {
            by_name,
            names,
            fields,
            twice,
            problems,
        }
    }

    /// The type named `name`.
    pub fn get(&self, name: &str) -> Option<&'static ChannelType> {
        self.by_name.get(name).copied()
    }

    /// Every registered type, by name.
    pub fn iter(&self) -> impl Iterator<Item = &'static ChannelType> + '_ {
        self.by_name.values().copied()
    }

    /// The registered names, sorted: for "expected one of" messages.
    pub fn names(&self) -> &[&'static str] {
        &self.names
    }

    /// `type` and every key some registered type takes: the fields a channel may have at all.
    pub fn fields(&self) -> &[&'static str] {
        &self.fields
    }

    /// Whether `name` was submitted more than once (and so left out).
    pub fn registered_twice(&self, name: &str) -> bool {
        self.twice.contains(&name)
    }

    /// Problems with the registrations; empty when every name is registered once.
    pub fn problems(&self) -> &[String] {
        &self.problems
    }

    /// The limits of type `name`, or [`Limits::DEFAULT`].
    pub fn limits(&self, name: &str) -> Limits {
        self.get(name).map_or(Limits::DEFAULT, |t| t.limits)
    }
}

/// The process's registry: every `ChannelType` submitted by the binary's crates (vigil's
/// channels, and in tests the test-only ones), read once.
pub fn channel_types() -> &'static ChannelTypes {
    static TYPES: LazyLock<ChannelTypes> =
        LazyLock::new(|| ChannelTypes::from_types(inventory::iter::<ChannelType>));
    &TYPES
}

/// A routing key's value, checked against its [`Form`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyValue {
    /// [`Form::EnvName`]: the variable's name (never its value).
    EnvName(String),
    /// [`Form::Url`].
    Url(url::Url),
    /// [`Form::SlackChannel`].
    SlackChannel(String),
    /// [`Form::Emails`].
    Emails(Vec<EmailAddress>),
}

/// A named destination, checked at load against its type: the type and the values of the keys
/// it sets. Tokens are referenced by environment variable name and read when the notifier is
/// built, never here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChannelSpec {
    kind: &'static ChannelType,
    values: BTreeMap<&'static str, KeyValue>,
}

impl ChannelSpec {
    /// A channel of type `kind` with checked `values` (`compile` builds these; tests too).
    pub fn new(
        kind: &'static ChannelType,
        values: impl IntoIterator<Item = (&'static str, KeyValue)>,
    ) -> Self {
        Self {
            kind,
            values: values.into_iter().collect(),
        }
    }

    /// The `type` as written in YAML.
    pub fn kind(&self) -> &'static str {
        self.kind.name
    }

    /// Its type's descriptor.
    pub fn channel_type(&self) -> &'static ChannelType {
        self.kind
    }

    /// Whether the channel sets `key`.
    pub fn has(&self, key: &str) -> bool {
        self.values.contains_key(key)
    }

    /// The environment variable named by an [`Form::EnvName`] key.
    pub fn env_name(&self, key: &str) -> Option<&str> {
        match self.values.get(key) {
            Some(KeyValue::EnvName(s)) => Some(s),
            _ => None,
        }
    }

    /// A [`Form::Url`] key.
    pub fn url(&self, key: &str) -> Option<&url::Url> {
        match self.values.get(key) {
            Some(KeyValue::Url(u)) => Some(u),
            _ => None,
        }
    }

    /// A [`Form::SlackChannel`] key.
    pub fn slack_channel(&self, key: &str) -> Option<&str> {
        match self.values.get(key) {
            Some(KeyValue::SlackChannel(s)) => Some(s),
            _ => None,
        }
    }

    /// A [`Form::Emails`] key; empty when not set.
    pub fn emails(&self, key: &str) -> &[EmailAddress] {
        match self.values.get(key) {
            Some(KeyValue::Emails(v)) => v,
            _ => &[],
        }
    }

    /// Whether the channel puts a message in front of a person: `log` and `webhook` do not.
    pub fn reaches_people(&self) -> bool {
        self.kind.reaches_people()
    }

    /// The contact a person needs for this channel to reach them; `None` when the channel is a
    /// destination told once per step.
    pub fn contact(&self) -> Option<Contact> {
        self.kind.contact(|k| self.has(k))
    }

    /// Whether it pages each targeted person (one delivery per person).
    pub fn is_personal(&self) -> bool {
        self.contact().is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    static A: ChannelType = ChannelType::new("a", Reach::Nobody);
    static A_AGAIN: ChannelType = ChannelType::new("a", Reach::PhonePerPerson);
    static B: ChannelType = ChannelType::new("b", Reach::Destination);

    #[test]
    fn a_type_registered_twice_is_reported_and_neither_is_used() {
        let types = ChannelTypes::from_types([&A, &B, &A_AGAIN]);
        assert_eq!(types.names(), ["b"]);
        assert!(types.get("a").is_none());
        assert_eq!(types.problems().len(), 1, "{:?}", types.problems());
        assert!(
            types.problems()[0].contains("\"a\" is registered twice"),
            "{:?}",
            types.problems()
        );
    }

    #[test]
    fn every_shipped_channel_type_is_registered_once() {
        let types = channel_types();
        assert!(types.problems().is_empty(), "{:?}", types.problems());
        for name in [
            "email",
            "log",
            "pagerduty",
            "phone",
            "slack",
            "sms",
            "webhook",
        ] {
            assert!(types.get(name).is_some(), "{name} is not registered");
        }
    }

    #[test]
    fn email_is_personal_only_without_a_fixed_list() {
        static EMAIL: ChannelType = ChannelType::new("email", Reach::EmailPerPersonUnless("to"));
        let to = EmailAddress::parse("desk@example.com").expect("a valid address");
        let listed = ChannelSpec::new(&EMAIL, [("to", KeyValue::Emails(vec![to]))]);
        let each = ChannelSpec::new(&EMAIL, []);
        assert_eq!(listed.contact(), None);
        assert_eq!(each.contact(), Some(Contact::Email));
        assert!(each.is_personal() && !listed.is_personal());
        assert!(ChannelSpec::new(&A, []).contact().is_none());
        assert!(!ChannelSpec::new(&A, []).reaches_people());
    }
}
