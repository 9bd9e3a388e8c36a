//! Event time: the bar's timestamp, in seconds since the Unix epoch (UTC), is the timely timestamp.
//!
//! Nothing in `operators/` reads the wall clock; these helpers only convert between the text found in
//! data files and the integer time that flows through the graph.

use chrono::{DateTime, Datelike, NaiveDate, NaiveDateTime};

/// Event time of a bar: seconds since 1970-01-01T00:00:00Z.
pub type EventTime = i64;

/// Seconds in one day, used to map a timestamp to its trading date.
pub const DAY: i64 = 86_400;

/// Parses the date or date-time text used by the supported file formats.
///
/// Accepts `YYYY-MM-DD`, `YYYY-MM-DD HH:MM[:SS]`, `YYYY-MM-DDTHH:MM:SS[.fff]` and the same with `/`.
/// Times carry no zone in the data sets, so they are read as UTC.
pub fn parse_time(text: &str) -> Option<EventTime> {
    let t = text.trim();
    if let Ok(d) = NaiveDate::parse_from_str(t, "%Y-%m-%d") {
        return d.and_hms_opt(0, 0, 0).map(|dt| dt.and_utc().timestamp());
    }
    const FORMATS: [&str; 6] = [
        "%Y-%m-%d %H:%M:%S",
        "%Y-%m-%d %H:%M",
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%dT%H:%M:%S",
        "%Y/%m/%d %H:%M:%S",
        "%Y-%m-%d %H:%M:%S%.f",
    ];
    for f in FORMATS {
        if let Ok(dt) = NaiveDateTime::parse_from_str(t, f) {
            return Some(dt.and_utc().timestamp());
        }
    }
    if let Ok(d) = NaiveDate::parse_from_str(t, "%Y/%m/%d") {
        return d.and_hms_opt(0, 0, 0).map(|dt| dt.and_utc().timestamp());
    }
    None
}

/// The calendar date of an event time (UTC).
pub fn date_of(t: EventTime) -> NaiveDate {
    DateTime::from_timestamp(t, 0)
        .map(|d| d.date_naive())
        .unwrap_or(NaiveDate::MIN)
}

/// Day number since the epoch, so that bars of one trading day share it.
pub fn day_number(t: EventTime) -> i64 {
    t.div_euclid(DAY)
}

/// Formats an event time as `YYYY-MM-DD` when it falls on midnight, else as `YYYY-MM-DD HH:MM:SS`.
pub fn format_time(t: EventTime) -> String {
    match DateTime::from_timestamp(t, 0) {
        Some(dt) if t.rem_euclid(DAY) == 0 => dt.format("%Y-%m-%d").to_string(),
        Some(dt) => dt.format("%Y-%m-%d %H:%M:%S").to_string(),
        None => t.to_string(),
    }
}

/// Event time of midnight UTC on a calendar date.
pub fn midnight(d: NaiveDate) -> EventTime {
    d.and_hms_opt(0, 0, 0)
        .map(|dt| dt.and_utc().timestamp())
        .unwrap_or_default()
}

/// Year of an event time; used by calendars.
pub fn year_of(t: EventTime) -> i32 {
    date_of(t).year()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_formats_of_the_data_sets() {
        assert_eq!(parse_time("1970-01-02"), Some(DAY));
        assert_eq!(parse_time("1970-01-01 01:00:00"), Some(3600));
        assert_eq!(parse_time("1970-01-01T00:00:01.316"), Some(1));
        assert_eq!(parse_time("not a date"), None);
        assert_eq!(format_time(DAY), "1970-01-02");
        assert_eq!(format_time(DAY + 60), "1970-01-02 00:01:00");
    }
}
