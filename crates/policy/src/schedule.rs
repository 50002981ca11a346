//! Schedules: weekly time windows in the school's time zone, optionally
//! limited to term time or to holidays.
//!
//! A window runs from `start` to `end` on each of its days. When `end` is
//! earlier than `start` the window runs overnight: it starts on one of its
//! days and ends the next morning. Times are the school's local times, so
//! "09:00" stays nine o'clock across the clock changes.

use chrono::{DateTime, Datelike, NaiveDate, NaiveTime, Utc, Weekday};
use chrono_tz::Tz;

use crate::document::{ScheduleDef, Term};
use crate::error::PolicyError;

/// A compiled schedule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Schedule {
    /// Its name.
    pub name: String,
    days: [bool; 7],
    start: NaiveTime,
    end: NaiveTime,
    term_time_only: bool,
    holidays_only: bool,
}

fn parse_days(place: &str, days: &[String]) -> Result<[bool; 7], PolicyError> {
    let mut out = [false; 7];
    for d in days {
        match d.to_ascii_lowercase().as_str() {
            "weekdays" => out[..5].iter_mut().for_each(|x| *x = true),
            "weekend" => out[5..].iter_mut().for_each(|x| *x = true),
            "all" | "every day" => out.iter_mut().for_each(|x| *x = true),
            other => {
                let day: Weekday = other
                    .parse()
                    .map_err(|_| PolicyError::invalid(place, format!("{d:?} is not a day")))?;
                out[day.num_days_from_monday() as usize] = true;
            }
        }
    }
    if !out.iter().any(|x| *x) {
        return Err(PolicyError::invalid(
            place,
            "a schedule needs at least one day",
        ));
    }
    Ok(out)
}

fn parse_time(place: &str, text: &str) -> Result<NaiveTime, PolicyError> {
    if text == "24:00" {
        return NaiveTime::from_hms_nano_opt(23, 59, 59, 999_999_999)
            .ok_or_else(|| PolicyError::invalid(place, "bad time"));
    }
    NaiveTime::parse_from_str(text, "%H:%M")
        .map_err(|_| PolicyError::invalid(place, format!("{text:?} is not a time (HH:MM)")))
}

impl Schedule {
    /// Compiles a schedule definition.
    pub fn compile(def: &ScheduleDef) -> Result<Self, PolicyError> {
        let place = format!("schedule {}", def.name);
        if def.term_time_only && def.holidays_only {
            return Err(PolicyError::invalid(
                place,
                "term_time_only and holidays_only cannot both be set",
            ));
        }
        Ok(Schedule {
            name: def.name.clone(),
            days: parse_days(&place, &def.days)?,
            start: parse_time(&place, &def.start)?,
            end: parse_time(&place, &def.end)?,
            term_time_only: def.term_time_only,
            holidays_only: def.holidays_only,
        })
    }

    /// Whether the window is open at `at`.
    pub fn is_active(&self, at: DateTime<Utc>, tz: Tz, terms: &[Term]) -> bool {
        let local = at.with_timezone(&tz).naive_local();
        let time = local.time();
        let date = local.date();
        let day = |d: NaiveDate| self.days[d.weekday().num_days_from_monday() as usize];
        let started_on = if self.start <= self.end {
            (day(date) && time >= self.start && time < self.end).then_some(date)
        } else if day(date) && time >= self.start {
            Some(date)
        } else {
            date.pred_opt().filter(|y| day(*y) && time < self.end)
        };
        let Some(started_on) = started_on else {
            return false;
        };
        if self.term_time_only || self.holidays_only {
            let in_term = terms
                .iter()
                .any(|t| t.start <= started_on && started_on <= t.end);
            return if self.term_time_only {
                in_term
            } else {
                !in_term
            };
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn def(days: &[&str], start: &str, end: &str) -> ScheduleDef {
        ScheduleDef {
            name: "s".into(),
            days: days.iter().map(|d| d.to_string()).collect(),
            start: start.into(),
            end: end.into(),
            term_time_only: false,
            holidays_only: false,
        }
    }

    fn london(y: i32, m: u32, d: u32, h: u32, min: u32) -> DateTime<Utc> {
        chrono_tz::Europe::London
            .with_ymd_and_hms(y, m, d, h, min, 0)
            .single()
            .unwrap()
            .with_timezone(&Utc)
    }

    #[test]
    fn weekday_window_in_local_time() {
        let s = Schedule::compile(&def(&["weekdays"], "09:00", "15:00")).unwrap();
        let tz = chrono_tz::Europe::London;
        // Monday 2026-06-15, British Summer Time: 09:30 local is 08:30 UTC.
        assert!(s.is_active(london(2026, 6, 15, 9, 30), tz, &[]));
        assert!(!s.is_active(london(2026, 6, 15, 8, 59), tz, &[]));
        assert!(!s.is_active(london(2026, 6, 15, 15, 0), tz, &[]));
        // Saturday.
        assert!(!s.is_active(london(2026, 6, 13, 10, 0), tz, &[]));
        // Winter (GMT).
        assert!(s.is_active(london(2026, 12, 14, 9, 0), tz, &[]));
    }

    #[test]
    fn overnight_window() {
        let s = Schedule::compile(&def(&["fri"], "22:00", "06:00")).unwrap();
        let tz = chrono_tz::Europe::London;
        assert!(s.is_active(london(2026, 6, 19, 23, 0), tz, &[])); // Friday night
        assert!(s.is_active(london(2026, 6, 20, 5, 59), tz, &[])); // Saturday early
        assert!(!s.is_active(london(2026, 6, 20, 6, 0), tz, &[]));
        assert!(!s.is_active(london(2026, 6, 18, 23, 0), tz, &[])); // Thursday
        assert!(!s.is_active(london(2026, 6, 19, 5, 0), tz, &[])); // Friday early: Thursday's window
    }

    #[test]
    fn term_dates() {
        let mut d = def(&["all"], "00:00", "24:00");
        d.term_time_only = true;
        let s = Schedule::compile(&d).unwrap();
        let terms = [Term {
            name: None,
            start: NaiveDate::from_ymd_opt(2026, 9, 3).unwrap(),
            end: NaiveDate::from_ymd_opt(2026, 10, 23).unwrap(),
        }];
        let tz = chrono_tz::Europe::London;
        assert!(s.is_active(london(2026, 10, 23, 12, 0), tz, &terms));
        assert!(!s.is_active(london(2026, 10, 26, 12, 0), tz, &terms));
        d.term_time_only = false;
        d.holidays_only = true;
        let h = Schedule::compile(&d).unwrap();
        assert!(h.is_active(london(2026, 10, 26, 12, 0), tz, &terms));
    }

    #[test]
    fn refuses_bad_definitions() {
        assert!(Schedule::compile(&def(&["funday"], "09:00", "10:00")).is_err());
        assert!(Schedule::compile(&def(&[], "09:00", "10:00")).is_err());
        assert!(Schedule::compile(&def(&["mon"], "9am", "10:00")).is_err());
    }
}
