//! Wall-clock time in the policy's zone: weekly windows (layer restrictions) and the
//! business-hours [`Calendar`]. Pure; every instant is passed in.
//!
//! In: UTC instants. Out: whether a window covers them, and when the calendar next opens.
//!
//! Everything is decided on **local** date-times (`NaiveDateTime` in the policy's zone), because
//! that is what people mean by "weekdays 09:00–18:00": the same wall-clock hours in winter and
//! summer. Local times that a daylight-saving change skips or repeats are mapped to instants by
//! [`local_to_utc`].

use std::collections::BTreeSet;
use std::fmt;

use chrono::offset::LocalResult;
use chrono::{
    DateTime, Datelike, NaiveDate, NaiveDateTime, NaiveTime, TimeDelta, TimeZone, Timelike, Utc,
};
use chrono_tz::Tz;

/// A set of weekdays.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Days(u8);

impl Days {
    /// The set holding `days`.
    pub fn of(days: impl IntoIterator<Item = chrono::Weekday>) -> Self {
        Self(
            days.into_iter()
                .fold(0, |acc, d| acc | 1 << d.num_days_from_monday()),
        )
    }

    /// Whether `day` is in the set.
    pub fn contains(self, day: chrono::Weekday) -> bool {
        self.0 & (1 << day.num_days_from_monday()) != 0
    }

    /// Whether the set is empty.
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }
}

/// Hours on some days of every week, in local time. `to <= from` means the window runs
/// overnight into the next day (`days` are the days it starts on); `from == to` is 24 hours.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WeeklyWindow {
    /// Days the window starts on.
    pub days: Days,
    /// Local start (inclusive).
    pub from: NaiveTime,
    /// Local end (exclusive).
    pub to: NaiveTime,
}

impl WeeklyWindow {
    /// Whether the local date-time `t` is inside the window.
    pub fn covers_local(&self, t: NaiveDateTime) -> bool {
        let (day, time) = (t.weekday(), t.time());
        if self.from < self.to {
            self.days.contains(day) && self.from <= time && time < self.to
        } else {
            (self.days.contains(day) && time >= self.from)
                || (self.days.contains(day.pred()) && time < self.to)
        }
    }

    /// The first minute of the week (Monday 00:00 = 0) the window leaves uncovered, if any.
    /// Windows are written in whole minutes, so checking minutes is exact.
    pub fn first_gap(windows: &[WeeklyWindow]) -> Option<(chrono::Weekday, NaiveTime)> {
        // 2024-01-01 was a Monday; any week will do, only weekday and time matter.
        let monday = NaiveDate::from_ymd_opt(2024, 1, 1)?.and_time(NaiveTime::MIN);
        (0..7 * 24 * 60).find_map(|minute| {
            let t = monday + TimeDelta::minutes(minute);
            (!windows.iter().any(|w| w.covers_local(t))).then(|| (t.weekday(), t.time()))
        })
    }
}

impl fmt::Display for WeeklyWindow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let days: Vec<String> = (0..7)
            .filter_map(|i| chrono::Weekday::try_from(i).ok())
            .filter(|d| self.days.contains(*d))
            .map(|d| d.to_string().to_lowercase())
            .collect();
        write!(
            f,
            "{} {}–{}",
            days.join(","),
            self.from.format("%H:%M"),
            self.to.format("%H:%M")
        )
    }
}

/// The business-hours calendar: open on `hours.days` from `hours.from` to `hours.to` local
/// time, except on `holidays`. Compiled from the top-level `business_hours`; `from < to`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Calendar {
    /// The policy's zone; hours and holidays are local to it.
    pub timezone: Tz,
    /// Working days and hours (never overnight).
    pub hours: WeeklyWindow,
    /// Local dates the desk is closed.
    pub holidays: BTreeSet<NaiveDate>,
}

impl Calendar {
    /// Whether the desk is open at `at`.
    pub fn is_open(&self, at: DateTime<Utc>) -> bool {
        let local = at.with_timezone(&self.timezone).naive_local();
        !self.holidays.contains(&local.date()) && self.hours.covers_local(local)
    }

    /// The first instant at or after `at` when the desk is open: `at` itself when it is open,
    /// else the next opening time on a working day that is not a holiday. Opening at 09:00
    /// local means 09:00 on the wall clock on both sides of a daylight-saving change.
    pub fn next_open(&self, at: DateTime<Utc>) -> DateTime<Utc> {
        if self.is_open(at) {
            return at;
        }
        let mut date = at.with_timezone(&self.timezone).date_naive();
        // Every 7 consecutive days hold at least one working day (`days` is never empty), and
        // each holiday removes at most one, so this many days always reach an opening.
        let horizon = 7 * (self.holidays.len() + 2);
        for _ in 0..horizon {
            if self.hours.days.contains(date.weekday()) && !self.holidays.contains(&date) {
                let opening = date.and_time(self.hours.from);
                // After a fall-back the opening may occur twice; the later one may still be ahead.
                let candidates = match self.timezone.from_local_datetime(&opening) {
                    LocalResult::Ambiguous(a, b) => [a, b].map(|t| t.with_timezone(&Utc)),
                    _ => [local_to_utc(self.timezone, opening); 2],
                };
                if let Some(t) = candidates.into_iter().find(|&t| t > at) {
                    return t;
                }
            }
            let Some(next) = date.succ_opt() else { break };
            date = next;
        }
        // Unreachable for a compiled calendar (see `horizon`); never hold an alert forever.
        at
    }
}

/// The instant a local wall-clock time in `tz` means. A time that occurs twice (the hour
/// repeated when clocks go back) is its first occurrence; a time that does not exist (skipped
/// when clocks go forward) is the moment the clocks jump, i.e. the first local minute after it
/// that exists (02:30 on a spring-forward night → 03:00 new time).
pub fn local_to_utc(tz: Tz, local: NaiveDateTime) -> DateTime<Utc> {
    if let Some(t) = tz.from_local_datetime(&local).earliest() {
        return t.with_timezone(&Utc);
    }
    let minute = local
        .with_second(0)
        .and_then(|t| t.with_nanosecond(0))
        .unwrap_or(local);
    // Gaps in the tz database are at most a day long and start on whole minutes.
    (1..=24 * 60)
        .find_map(|m| {
            tz.from_local_datetime(&(minute + TimeDelta::minutes(m)))
                .earliest()
        })
        .map_or_else(|| local.and_utc(), |t| t.with_timezone(&Utc))
}

/// Parses a local time of day written `HH:MM`.
pub fn parse_hhmm(s: &str) -> Result<NaiveTime, String> {
    NaiveTime::parse_from_str(s, "%H:%M")
        .map_err(|_| format!("{s:?} is not a time of day (expected HH:MM, like 09:00)"))
}

/// Parses a local date written `YYYY-MM-DD`.
pub fn parse_date(s: &str) -> Result<NaiveDate, String> {
    NaiveDate::parse_from_str(s, "%Y-%m-%d")
        .map_err(|_| format!("{s:?} is not a date (expected YYYY-MM-DD, like 2026-12-25)"))
}

/// An instant as `routing/` writes one (a rotation start, an override's or a silence's start and
/// end): RFC 3339 with an offset, or a local date-time in the policy's zone. A local time that
/// occurs twice (DST fall-back) means the first; one that does not exist is an error.
pub fn parse_instant(s: &str, tz: Tz) -> Result<DateTime<Utc>, String> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Weekday;
    use chrono_tz::America::New_York;
    use chrono_tz::Asia::Singapore;

    fn hm(h: u32, m: u32) -> NaiveTime {
        NaiveTime::from_hms_opt(h, m, 0).unwrap()
    }

    fn weekdays() -> Days {
        Days::of([
            Weekday::Mon,
            Weekday::Tue,
            Weekday::Wed,
            Weekday::Thu,
            Weekday::Fri,
        ])
    }

    fn calendar(tz: Tz, holidays: &[&str]) -> Calendar {
        Calendar {
            timezone: tz,
            hours: WeeklyWindow {
                days: weekdays(),
                from: hm(9, 0),
                to: hm(18, 0),
            },
            holidays: holidays.iter().map(|d| parse_date(d).unwrap()).collect(),
        }
    }

    /// A local wall-clock time in `tz` as an instant (must exist and be unambiguous).
    fn local(tz: Tz, s: &str) -> DateTime<Utc> {
        let naive = NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M").unwrap();
        tz.from_local_datetime(&naive)
            .single()
            .unwrap()
            .with_timezone(&Utc)
    }

    #[test]
    fn friday_evening_opens_on_monday_morning_in_singapore() {
        let cal = calendar(Singapore, &[]);
        // 2026-11-27 is a Friday.
        let friday_19 = local(Singapore, "2026-11-27 19:00");
        assert!(!cal.is_open(friday_19));
        assert_eq!(
            cal.next_open(friday_19),
            local(Singapore, "2026-11-30 09:00")
        );
        // Saturday and Sunday are closed all day.
        assert!(!cal.is_open(local(Singapore, "2026-11-28 12:00")));
        assert_eq!(
            cal.next_open(local(Singapore, "2026-11-29 23:59")),
            local(Singapore, "2026-11-30 09:00")
        );
    }

    #[test]
    fn opening_and_closing_are_exact_to_the_instant() {
        let cal = calendar(Singapore, &[]);
        let open = local(Singapore, "2026-11-30 09:00");
        let close = local(Singapore, "2026-11-30 18:00");
        let tick = TimeDelta::nanoseconds(1);
        assert!(!cal.is_open(open - tick));
        assert!(cal.is_open(open));
        assert!(cal.is_open(close - tick));
        assert!(!cal.is_open(close));
        assert_eq!(cal.next_open(open - tick), open);
        // After closing: tomorrow's opening.
        assert_eq!(cal.next_open(close), local(Singapore, "2026-12-01 09:00"));
        // Before opening on a working day: today's.
        assert_eq!(cal.next_open(local(Singapore, "2026-11-30 02:00")), open);
    }

    #[test]
    fn inside_hours_the_answer_is_the_same_instant() {
        let cal = calendar(Singapore, &[]);
        let at = local(Singapore, "2026-12-02 14:37") + TimeDelta::milliseconds(123);
        assert!(cal.is_open(at));
        assert_eq!(cal.next_open(at), at);
    }

    #[test]
    fn holidays_are_skipped_even_across_a_weekend() {
        // Christmas 2026 is a Friday; with Monday the 28th also off, Thursday evening's answer
        // is Tuesday the 29th.
        let cal = calendar(Singapore, &["2026-12-25", "2026-12-28"]);
        assert!(!cal.is_open(local(Singapore, "2026-12-25 10:00")));
        assert_eq!(
            cal.next_open(local(Singapore, "2026-12-24 18:30")),
            local(Singapore, "2026-12-29 09:00")
        );
        // A holiday is a local date: 2026-12-25 00:30 Singapore is still the 24th in UTC.
        let early = local(Singapore, "2026-12-25 00:30");
        assert_eq!(
            early.date_naive(),
            NaiveDate::from_ymd_opt(2026, 12, 24).unwrap()
        );
        assert_eq!(cal.next_open(early), local(Singapore, "2026-12-29 09:00"));
    }

    #[test]
    fn next_open_keeps_local_nine_oclock_across_daylight_saving() {
        let cal = calendar(New_York, &[]);
        // Spring forward: Sunday 2026-03-08 02:00 EST → 03:00 EDT.
        let friday_evening = local(New_York, "2026-03-06 19:00");
        let monday = cal.next_open(friday_evening);
        assert_eq!(
            monday,
            "2026-03-09T13:00:00Z".parse::<DateTime<Utc>>().unwrap()
        );
        assert_eq!(monday.with_timezone(&New_York).time(), hm(9, 0));
        // The Friday before opened at 14:00 UTC (EST).
        assert_eq!(
            cal.next_open(local(New_York, "2026-03-06 08:00")),
            "2026-03-06T14:00:00Z".parse::<DateTime<Utc>>().unwrap()
        );
        // Fall back: Sunday 2026-11-01 02:00 EDT → 01:00 EST.
        let back = cal.next_open(local(New_York, "2026-10-30 18:00"));
        assert_eq!(
            back,
            "2026-11-02T14:00:00Z".parse::<DateTime<Utc>>().unwrap()
        );
        assert!(cal.is_open(back));
        assert!(!cal.is_open(back - TimeDelta::seconds(1)));
    }

    #[test]
    fn an_opening_skipped_or_repeated_by_daylight_saving_is_handled() {
        // A (contrived) desk opening at 02:30 on Sundays in New York.
        let cal = Calendar {
            timezone: New_York,
            hours: WeeklyWindow {
                days: Days::of([Weekday::Sun]),
                from: hm(2, 30),
                to: hm(5, 0),
            },
            holidays: BTreeSet::new(),
        };
        // 02:30 does not exist on 2026-03-08: it opens when the clocks jump (03:00 EDT).
        let at = local(New_York, "2026-03-07 12:00");
        assert_eq!(
            cal.next_open(at),
            "2026-03-08T07:00:00Z".parse::<DateTime<Utc>>().unwrap()
        );
        assert_eq!(
            local_to_utc(
                New_York,
                NaiveDateTime::parse_from_str("2026-03-08 02:30", "%Y-%m-%d %H:%M").unwrap()
            ),
            "2026-03-08T07:00:00Z".parse::<DateTime<Utc>>().unwrap()
        );
    }

    #[test]
    fn overnight_windows_cover_the_next_morning() {
        let nights = WeeklyWindow {
            days: Days::of([Weekday::Fri]),
            from: hm(22, 0),
            to: hm(6, 0),
        };
        let t = |s: &str| NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M").unwrap();
        // 2026-11-27 is a Friday.
        assert!(!nights.covers_local(t("2026-11-27 21:59")));
        assert!(nights.covers_local(t("2026-11-27 22:00")));
        assert!(nights.covers_local(t("2026-11-28 05:59")));
        assert!(!nights.covers_local(t("2026-11-28 06:00")));
        assert!(!nights.covers_local(t("2026-11-28 22:00")));
        assert_eq!(nights.to_string(), "fri 22:00–06:00");
    }

    #[test]
    fn gaps_in_a_week_of_windows_are_found() {
        let office = WeeklyWindow {
            days: weekdays(),
            from: hm(9, 0),
            to: hm(18, 0),
        };
        // Evenings start Sunday to Friday and run into the next morning.
        let evenings = WeeklyWindow {
            days: Days::of([
                Weekday::Sun,
                Weekday::Mon,
                Weekday::Tue,
                Weekday::Wed,
                Weekday::Thu,
                Weekday::Fri,
            ]),
            from: hm(18, 0),
            to: hm(9, 0),
        };
        assert_eq!(
            WeeklyWindow::first_gap(&[office]),
            Some((Weekday::Mon, hm(0, 0)))
        );
        // Friday's evening ends Saturday 09:00; nothing covers Saturday daytime.
        assert_eq!(
            WeeklyWindow::first_gap(&[office, evenings]),
            Some((Weekday::Sat, hm(9, 0)))
        );
        let all_week = WeeklyWindow {
            days: Days::of([
                Weekday::Mon,
                Weekday::Tue,
                Weekday::Wed,
                Weekday::Thu,
                Weekday::Fri,
                Weekday::Sat,
                Weekday::Sun,
            ]),
            from: hm(9, 0),
            to: hm(9, 0),
        };
        assert_eq!(WeeklyWindow::first_gap(&[all_week]), None);
    }

    #[test]
    fn instants_accept_local_time_or_an_offset() {
        let sg = chrono_tz::Asia::Singapore;
        let want = "2026-11-02T01:00:00Z".parse::<DateTime<Utc>>().unwrap();
        assert_eq!(parse_instant("2026-11-02T09:00:00", sg).unwrap(), want);
        assert_eq!(
            parse_instant("2026-11-02T09:00:00+08:00", sg).unwrap(),
            want
        );
        assert!(parse_instant("next monday", sg).is_err());
        // 02:30 does not exist in New York on 2026-03-08 (spring forward).
        assert!(parse_instant("2026-03-08T02:30:00", chrono_tz::America::New_York).is_err());
    }
}
