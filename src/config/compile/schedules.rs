//! The builders of who can be on call and when the desk is open: `people`, `schedules` (a
//! `rotation` or `layers`, weekly restrictions, overrides) and the `business_hours` calendar.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use chrono::{DateTime, Utc};

use super::channels::is_slack_id;
use super::ctx::{Ctx, key_path};
use super::merge::Merged;
use crate::config::calendar::{
    Calendar, Days, WeeklyWindow, parse_date, parse_hhmm, parse_instant,
};
use crate::config::locate::PathSeg;
use crate::config::policy::{Layer, Override, Person, Rotation, Schedule};
use crate::config::routing::{DayConfig, RestrictConfig, ScheduleConfig};

/// `people`: a name, and a Slack member id when one is given.
pub(super) fn build_people(ctx: &mut Ctx<'_>, m: &Merged<'_>) -> BTreeMap<String, Person> {
    let mut out = BTreeMap::new();
    for (&id, &(fi, p)) in &m.people {
        if p.name.trim().is_empty() {
            ctx.err(
                fi,
                key_path!["people", id, "name"],
                "name must not be empty",
            );
        }
        if let Some(slack) = &p.slack
            && !is_slack_id(slack, &['U', 'W'])
        {
            ctx.err(
                fi,
                key_path!["people", id, "slack"],
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
            base: key_path!["schedules", id, "rotation"],
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
                    key_path!["schedules", id, "layers"],
                    "a schedule needs at least one layer",
                );
            }
            layers
                .iter()
                .enumerate()
                .map(|(li, l)| LayerSource {
                    base: key_path!["schedules", id, "layers", li],
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
                key_path!["schedules", id, "layers"],
                "a schedule has either `rotation` (one layer) or `layers`, not both",
            );
            Vec::new()
        }
        (None, None) => {
            ctx.err(
                fi,
                key_path!["schedules", id],
                "a schedule needs `rotation` or `layers`",
            );
            Vec::new()
        }
    }
}

/// Every person a schedule can put on call: its layers' members and its overrides' people.
pub(super) fn schedule_people(s: &ScheduleConfig) -> Vec<&str> {
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

/// `schedules`: layers (members who exist, a positive shift, a start in the policy's zone, an
/// optional weekly restriction) and overrides that end after they start.
pub(super) fn build_schedules(
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
                ctx.err(fi, at(key_path!["name"]), "a layer name must not be empty");
            } else if names.contains(&src.name) {
                ctx.err(
                    fi,
                    at(key_path!["name"]),
                    format!("duplicate layer name {:?} in schedule {id:?}", src.name),
                );
            }
            names.push(src.name);
            if src.members.is_empty() {
                ctx.err(
                    fi,
                    at(key_path!["members"]),
                    "a rotation needs at least one member",
                );
            }
            for (i, member) in src.members.iter().enumerate() {
                if !m.people.contains_key(member.as_str()) {
                    ctx.err(
                        fi,
                        at(key_path!["members", i]),
                        format!("unknown person {member:?}"),
                    );
                }
            }
            if src.every.is_zero() {
                ctx.err(fi, at(key_path!["every"]), "every must be more than 0");
            }
            let start = parse_instant(src.start, tz).unwrap_or_else(|msg| {
                ctx.err(fi, at(key_path!["start"]), msg);
                DateTime::<Utc>::UNIX_EPOCH
            });
            let restrict = src.restrict.and_then(|r| {
                window_of(
                    ctx,
                    fi,
                    at(key_path!["restrict"]),
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
            let at = |k: &str| key_path!["schedules", id, "overrides", oi, k];
            if !m.people.contains_key(o.person.as_str()) {
                ctx.err(fi, at("person"), format!("unknown person {:?}", o.person));
            }
            let start = parse_instant(&o.start, tz).map_err(|msg| ctx.err(fi, at("start"), msg));
            let end = parse_instant(&o.end, tz).map_err(|msg| ctx.err(fi, at("end"), msg));
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
    let at = |k: &str| [base.clone(), key_path![k]].concat();
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

/// `business_hours`: days, opening hours (not overnight) and holidays, in the policy's zone.
pub(super) fn build_business_hours(
    ctx: &mut Ctx<'_>,
    m: &Merged<'_>,
    tz: chrono_tz::Tz,
) -> Option<Calendar> {
    let (fi, c) = m.business_hours?;
    let hours = window_of(
        ctx,
        fi,
        key_path!["business_hours"],
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
            Err(msg) => ctx.err(fi, key_path!["business_hours", "holidays", i], msg),
        }
    }
    Some(Calendar {
        timezone: tz,
        hours: hours?,
        holidays,
    })
}

#[cfg(test)]
mod tests {
    use crate::config::tests_support::*;

    /// Business hours: known keys and days, HH:MM times, not overnight, holidays that are dates.
    #[test]
    fn broken_calendars_are_located() {
        assert_single_located_errors(&[
            case(
                "unknown key in business hours",
                "extra.yaml",
                extra("  holidays:", "  hollidays:"),
                "hollidays",
                "business_hours.hollidays",
                "unknown field `hollidays`",
            ),
            case(
                "closing before opening",
                "extra.yaml",
                extra("to: \"18:00\"", "to: \"08:00\""),
                "to: \"08:00\"",
                "business_hours.to",
                "must be after from",
            ),
            case(
                "a holiday that is not a date",
                "extra.yaml",
                extra("2026-12-25", "2026-12-32"),
                "2026-12-32",
                "business_hours.holidays[0]",
                "not a date",
            ),
            case(
                "a day that does not exist",
                "extra.yaml",
                extra("days: [mon,", "days: [mun,"),
                "days: [mun,",
                "business_hours.days[0]",
                "unknown variant `mun`",
            ),
        ]);
    }

    /// Schedules: `rotation` or `layers` (not both), known keys, HH:MM restrictions, overrides with
    /// an end after the start.
    #[test]
    fn broken_schedules_are_located() {
        assert_single_located_errors(&[
            case(
                "an override ending before it starts",
                "people.yaml",
                PEOPLE.replace(
                    "    rotation: { members: [mei, raj], every: 1w, start: \"2026-11-02T09:00:00\" }\n",
                    "    rotation: { members: [mei, raj], every: 1w, start: \"2026-11-02T09:00:00\" }\n    overrides:\n      - person: raj\n        start: \"2026-12-24T18:00:00\"\n        end: \"2026-12-24T09:00:00\"\n",
                ),
                "end: \"2026-12-24T09",
                "schedules.primary.overrides[0].end",
                "must be after start",
            ),
            case(
                "an override without end",
                "people.yaml",
                PEOPLE.replace(
                    "    rotation: { members: [mei, raj], every: 1w, start: \"2026-11-02T09:00:00\" }\n",
                    "    rotation: { members: [mei, raj], every: 1w, start: \"2026-11-02T09:00:00\" }\n    overrides:\n      - { person: raj, start: \"2026-12-24T18:00:00\" }\n",
                ),
                "- { person: raj",
                "schedules.primary.overrides[0]",
                "missing field `end`",
            ),
            case(
                "an unknown key in a layer",
                "people.yaml",
                PEOPLE.replace(
                    "    rotation: { members: [mei, raj], every: 1w, start: \"2026-11-02T09:00:00\" }\n",
                    "    layers:\n      - name: weekly\n        members: [mei, raj]\n        every: 1w\n        start: \"2026-11-02T09:00:00\"\n        restirct: { days: [sat], from: \"09:00\", to: \"18:00\" }\n",
                ),
                "restirct",
                "schedules.primary.layers[0].restirct",
                "unknown field `restirct`",
            ),
            case(
                "rotation and layers together",
                "people.yaml",
                PEOPLE.replace(
                    "    rotation: { members: [mei, raj], every: 1w, start: \"2026-11-02T09:00:00\" }\n",
                    "    rotation: { members: [mei, raj], every: 1w, start: \"2026-11-02T09:00:00\" }\n    layers:\n      - { name: weekly, members: [mei], every: 1w, start: \"2026-11-02T09:00:00\" }\n",
                ),
                "layers:",
                "schedules.primary.layers",
                "either `rotation` (one layer) or `layers`",
            ),
            case(
                "a restriction time that is not HH:MM",
                "people.yaml",
                PEOPLE.replace(
                    "    rotation: { members: [mei, raj], every: 1w, start: \"2026-11-02T09:00:00\" }\n",
                    "    layers:\n      - { name: weekly, members: [mei, raj], every: 1w, start: \"2026-11-02T09:00:00\" }\n      - name: office\n        members: [cto]\n        every: 1w\n        start: \"2026-11-02T09:00:00\"\n        restrict:\n          days: [mon]\n          from: 9am\n          to: \"18:00\"\n",
                ),
                "from: 9am",
                "schedules.primary.layers[1].restrict.from",
                "not a time of day",
            ),
        ]);
    }

    /// A rotation has members, all of them known people, and a shift longer than 0.
    #[test]
    fn rotations_need_known_members_and_a_positive_shift() {
        assert_each_edit_is_refused(&[
            (
                "people.yaml",
                "members: [mei, raj]",
                "members: [mei, rja]",
                r#"unknown person "rja""#,
            ),
            (
                "people.yaml",
                "members: [mei, raj]",
                "members: []",
                "at least one member",
            ),
            (
                "people.yaml",
                "every: 1w",
                "every: 0s",
                "every must be more than 0",
            ),
        ]);
    }

    #[test]
    fn business_hours_compile_in_the_policy_zone_with_holidays() {
        let p = extra_ok_policy();
        let cal = p.business_hours.as_ref().unwrap();
        assert_eq!(cal.timezone, chrono_tz::Asia::Singapore);
        assert_eq!(cal.holidays.len(), 2);
        // Without the section: no calendar.
        assert!(base_policy().business_hours.is_none());
    }
}
