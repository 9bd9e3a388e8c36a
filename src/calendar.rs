//! Trading calendars, used by the quality gate to tell a missing session from a holiday.

use chrono::{Datelike, Duration, NaiveDate, Weekday};

use crate::config::CalendarKind;

/// Whether `d` is a session of the calendar.
pub fn is_session(kind: CalendarKind, d: NaiveDate) -> bool {
    match kind {
        CalendarKind::Daily | CalendarKind::None => true,
        CalendarKind::Weekdays => !matches!(d.weekday(), Weekday::Sat | Weekday::Sun),
        CalendarKind::Nyse => {
            !matches!(d.weekday(), Weekday::Sat | Weekday::Sun) && !is_nyse_holiday(d)
        }
    }
}

/// Sessions strictly between two dates (0 when `b <= a` or the calendar is `None`).
/// Bounded at 400 so that a decade-long hole costs no more than a year's walk.
pub fn sessions_between(kind: CalendarKind, a: NaiveDate, b: NaiveDate) -> u32 {
    if kind == CalendarKind::None || b <= a {
        return 0;
    }
    let mut n = 0;
    let mut d = a + Duration::days(1);
    while d < b && n < 400 {
        if is_session(kind, d) {
            n += 1;
        }
        d += Duration::days(1);
    }
    n
}

/// [`sessions_between`] for two days given as day numbers since the epoch (as
/// [`crate::time::day_number`] gives them). A gap of weekend days only, as every Monday after a
/// Friday has, holds no session of the weekday calendars: answered without building a date, since
/// the quality gate asks this for every such bar of every ticker.
pub fn sessions_between_days(kind: CalendarKind, a: i64, b: i64) -> u32 {
    let weekend = |d: i64| (d + 3).rem_euclid(7) >= 5;
    if matches!(kind, CalendarKind::Weekdays | CalendarKind::Nyse) && (a + 1..b).all(weekend) {
        return 0;
    }
    let date = |d: i64| crate::time::date_of(d.saturating_mul(crate::time::DAY));
    sessions_between(kind, date(a), date(b))
}

fn nth_weekday(year: i32, month: u32, wd: Weekday, n: u8) -> Option<NaiveDate> {
    NaiveDate::from_weekday_of_month_opt(year, month, wd, n)
}

fn last_weekday(year: i32, month: u32, wd: Weekday) -> Option<NaiveDate> {
    nth_weekday(year, month, wd, 5).or_else(|| nth_weekday(year, month, wd, 4))
}

/// Easter Sunday (Anonymous Gregorian algorithm).
fn easter(year: i32) -> Option<NaiveDate> {
    let a = year % 19;
    let b = year / 100;
    let c = year % 100;
    let d = b / 4;
    let e = b % 4;
    let f = (b + 8) / 25;
    let g = (b - f + 1) / 3;
    let h = (19 * a + b - d - g + 15) % 30;
    let i = c / 4;
    let k = c % 4;
    let l = (32 + 2 * e + 2 * i - h - k) % 7;
    let m = (a + 11 * h + 22 * l) / 451;
    let month = (h + l - 7 * m + 114) / 31;
    let day = (h + l - 7 * m + 114) % 31 + 1;
    NaiveDate::from_ymd_opt(year, month as u32, day as u32)
}

/// A fixed-date holiday moved off the weekend: Saturday to Friday, Sunday to Monday.
fn observed(d: NaiveDate) -> NaiveDate {
    match d.weekday() {
        Weekday::Sat => d - Duration::days(1),
        Weekday::Sun => d + Duration::days(1),
        _ => d,
    }
}

/// Days the NYSE closed for a one-off event.
const SPECIAL_CLOSURES: [(i32, u32, u32); 12] = [
    (1985, 9, 27),
    (1994, 4, 27),
    (2001, 9, 11),
    (2001, 9, 12),
    (2001, 9, 13),
    (2001, 9, 14),
    (2004, 6, 11),
    (2007, 1, 2),
    (2012, 10, 29),
    (2012, 10, 30),
    (2018, 12, 5),
    (2025, 1, 9),
];

/// NYSE full-day holidays and special closures (rules in force since 1998).
pub fn is_nyse_holiday(d: NaiveDate) -> bool {
    let y = d.year();
    let ymd = |m, day| NaiveDate::from_ymd_opt(y, m, day);
    if SPECIAL_CLOSURES
        .iter()
        .any(|&(sy, sm, sd)| (sy, sm, sd) == (y, d.month(), d.day()))
    {
        return true;
    }
    // New Year's Day: a Saturday New Year is not moved to Friday (the year-end close).
    if let Some(ny) = ymd(1, 1) {
        let obs = if ny.weekday() == Weekday::Sun {
            ny + Duration::days(1)
        } else {
            ny
        };
        if d == obs {
            return true;
        }
    }
    let fixed = [Some((7, 4)), Some((12, 25)), (y >= 2022).then_some((6, 19))];
    if fixed
        .into_iter()
        .flatten()
        .filter_map(|(m, day)| ymd(m, day))
        .any(|h| observed(h) == d)
    {
        return true;
    }
    let floating = [
        (y >= 1998)
            .then(|| nth_weekday(y, 1, Weekday::Mon, 3))
            .flatten(),
        nth_weekday(y, 2, Weekday::Mon, 3),
        easter(y).map(|e| e - Duration::days(2)),
        last_weekday(y, 5, Weekday::Mon),
        nth_weekday(y, 9, Weekday::Mon, 1),
        nth_weekday(y, 11, Weekday::Thu, 4),
    ];
    floating.into_iter().flatten().any(|h| h == d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn day_numbers_count_what_dates_count() {
        use crate::time::{DAY, date_of};
        // Around the 2019 and 2020 holidays and a leap day, gaps of up to two weeks.
        let from = crate::time::day_number(1_545_000_000);
        for kind in [
            CalendarKind::Nyse,
            CalendarKind::Weekdays,
            CalendarKind::Daily,
            CalendarKind::None,
        ] {
            for a in from..from + 500 {
                for b in a..a + 15 {
                    assert_eq!(
                        sessions_between_days(kind, a, b),
                        sessions_between(kind, date_of(a * DAY), date_of(b * DAY)),
                        "{kind:?} {a} {b}"
                    );
                }
            }
        }
    }

    fn day(y: i32, m: u32, d: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, m, d).unwrap()
    }

    #[test]
    fn known_nyse_holidays() {
        for (y, m, d) in [
            (2013, 3, 29),
            (2015, 7, 3),
            (2016, 12, 26),
            (2017, 1, 2),
            (2013, 11, 28),
            (2024, 6, 19),
        ] {
            assert!(is_nyse_holiday(day(y, m, d)), "{y}-{m}-{d}");
        }
        for (y, m, d) in [(2013, 4, 26), (2010, 12, 31), (2021, 6, 18)] {
            assert!(!is_nyse_holiday(day(y, m, d)), "{y}-{m}-{d}");
        }
    }

    #[test]
    fn sessions_between_skips_weekends_and_holidays() {
        // Thursday 2013-03-28 to Monday 2013-04-01: Good Friday and a weekend, no session.
        assert_eq!(
            sessions_between(CalendarKind::Nyse, day(2013, 3, 28), day(2013, 4, 1)),
            0
        );
        // DHR lacks 2013-04-26 (a Friday).
        assert_eq!(
            sessions_between(CalendarKind::Nyse, day(2013, 4, 25), day(2013, 4, 29)),
            1
        );
        assert_eq!(
            sessions_between(CalendarKind::Weekdays, day(2013, 3, 28), day(2013, 4, 1)),
            1
        );
    }
}
