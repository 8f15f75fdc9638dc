//! The **merge** phase: the parsed files as one policy, each part remembering the file it came
//! from (to locate errors). The maps (`severities`, `people`, `schedules`, `channels`,
//! `policies`, `heartbeats`) are unioned and a name defined in two files is an error naming
//! both; `timezone`, `sources`, `business_hours`, `flapping`, `last_resort` and `storm` may be set
//! in one file only; `rules`, `silences` and `inhibit_rules` are concatenated in file order.

use std::collections::BTreeMap;

use super::ctx::{Ctx, InFile, key_path};
use crate::config::routing::{
    BusinessHoursConfig, ChannelConfig, FlappingConfig, HeartbeatConfig, InhibitRuleConfig,
    PersonConfig, PolicyConfig, RoutingFile, RuleConfig, ScheduleConfig, SeverityConfig,
    SilenceConfig, SourcesConfig, StormConfig,
};
use crate::domain::Severity;

/// The whole directory as one policy, each part remembering its file.
pub(super) struct Merged<'a> {
    pub(super) timezone: Option<InFile<'a, String>>,
    pub(super) sources: Option<InFile<'a, SourcesConfig>>,
    /// The first file with a `severities` key, to locate "missing severity" errors.
    pub(super) severities_file: Option<usize>,
    pub(super) severities: BTreeMap<Severity, InFile<'a, SeverityConfig>>,
    pub(super) people: BTreeMap<&'a str, InFile<'a, PersonConfig>>,
    pub(super) schedules: BTreeMap<&'a str, InFile<'a, ScheduleConfig>>,
    pub(super) channels: BTreeMap<&'a str, InFile<'a, ChannelConfig>>,
    pub(super) policies: BTreeMap<&'a str, InFile<'a, PolicyConfig>>,
    /// (file, index within that file's `rules`, rule), in evaluation order.
    pub(super) rules: Vec<(usize, usize, &'a RuleConfig)>,
    pub(super) business_hours: Option<InFile<'a, BusinessHoursConfig>>,
    pub(super) flapping: Option<InFile<'a, FlappingConfig>>,
    pub(super) last_resort: Option<InFile<'a, Vec<String>>>,
    pub(super) storm: Option<InFile<'a, StormConfig>>,
    /// (file, index within that file's list, entry), in file order.
    pub(super) silences: Vec<(usize, usize, &'a SilenceConfig)>,
    /// Drill windows, as `silences`.
    pub(super) drills: Vec<(usize, usize, &'a SilenceConfig)>,
    pub(super) inhibit_rules: Vec<(usize, usize, &'a InhibitRuleConfig)>,
    pub(super) heartbeats: BTreeMap<&'a str, InFile<'a, HeartbeatConfig>>,
}

/// Unions the files' maps, takes each once-only key from the one file that sets it, and
/// concatenates the lists in file order.
pub(super) fn merge<'a>(ctx: &mut Ctx<'_>, docs: &'a [RoutingFile]) -> Merged<'a> {
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
        drills: Vec::new(),
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
        for (i, s) in doc.drills.iter().flatten().enumerate() {
            m.drills.push((fi, i, s));
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
    slot: &mut Option<InFile<'a, V>>,
    key: &str,
    fi: usize,
    value: Option<&'a V>,
) {
    let Some(value) = value else { return };
    match slot {
        Some((first, _)) => {
            let at = ctx.place(*first, key_path![key]);
            ctx.err(
                fi,
                key_path![key],
                format!("{key} is already set in {at}; set it in one file only"),
            );
        }
        None => *slot = Some((fi, value)),
    }
}

/// Adds a named entry unless another file already defined the name.
fn insert_once<'a, K: Ord, V>(
    ctx: &mut Ctx<'_>,
    map: &mut BTreeMap<K, InFile<'a, V>>,
    section: &str,
    fi: usize,
    key: K,
    name: &str,
    value: &'a V,
) {
    if let Some(&(first, _)) = map.get(&key) {
        let at = ctx.place(first, key_path![section, name]);
        ctx.err(
            fi,
            key_path![section, name],
            format!("{name:?} is already defined in {at}; a name may be defined in one file only"),
        );
    } else {
        map.insert(key, (fi, value));
    }
}

#[cfg(test)]
mod tests {
    use crate::config::format_errors;
    use crate::config::tests_support::*;

    #[test]
    fn a_name_defined_in_two_files_names_both() {
        let (dir, result) = load_with(&[(
            "zz-extra.yaml",
            "# more channels\nchannels:\n  sms: { type: sms }\n",
        )]);
        let errors = result.unwrap_err();
        assert_eq!(errors.len(), 1, "{}", format_errors(&errors));
        let e = &errors[0];
        assert_eq!(e.file, dir.path().join("zz-extra.yaml"));
        assert_eq!(e.line, Some(3));
        assert_eq!(e.key, "channels.sms");
        let first = format!(
            "{}:{}",
            dir.path().join("channels.yaml").display(),
            line_with(CHANNELS, "sms:")
        );
        assert!(e.message.contains(&first), "{e}");
    }

    #[test]
    fn a_calendar_or_flapping_set_in_two_files_names_both() {
        let (dir, result) = load_with(&[
            ("extra.yaml", EXTRA_OK),
            (
                "zz.yaml",
                "# again\nbusiness_hours: { days: [sat], from: \"10:00\", to: \"12:00\" }\nflapping: { cooldown: 5m }\n",
            ),
        ]);
        let errors = result.unwrap_err();
        assert_eq!(errors.len(), 2, "{}", format_errors(&errors));
        for (e, key, line) in [
            (&errors[0], "business_hours", 2),
            (&errors[1], "flapping", 3),
        ] {
            assert_eq!(e.file, dir.path().join("zz.yaml"));
            assert_eq!((e.key.as_str(), e.line), (key, Some(line)));
            let first = format!(
                "{}:{}",
                dir.path().join("extra.yaml").display(),
                line_with(EXTRA_OK, &format!("{key}:"))
            );
            assert!(e.message.contains(&first), "{e}");
        }
    }
}
