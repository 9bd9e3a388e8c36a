//! Event time: the bar's timestamp, in seconds since the Unix epoch (UTC), is the timely timestamp.
//!
//! Nothing in `operators/` reads the wall clock; these helpers convert between the text found in
//! data files and the integer time that flows through the graph, and [`wall_unix`] is the one
//! wall-clock reading, for drivers (model creation stamps, time-to-live), never for event time.

use chrono::{DateTime, Datelike, NaiveDate, NaiveDateTime};

/// Event time of a bar: seconds since 1970-01-01T00:00:00Z.
pub type EventTime = i64;

/// Seconds in one day, used to map a timestamp to its trading date.
pub const DAY: i64 = 86_400;

/// A time as a pipeline file writes it (`start = "2020-01-02"`) with the time it names, parsed
/// once when the file is read: sources and the engine use [`TimeText::at`], never the text
/// again. Text that names no time holds `None`, which the pipeline's validation refuses with its
/// line; the text is kept for messages and for the `pipeline.toml` a run writes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TimeText {
    text: String,
    at: Option<EventTime>,
}

impl TimeText {
    /// Parses `text` ([`parse_time`]).
    pub fn new(text: impl Into<String>) -> TimeText {
        let text = text.into();
        let at = parse_time(&text);
        TimeText { text, at }
    }

    /// The text as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The time it names (`None`: not a time; a validated pipeline holds none such).
    pub fn at(&self) -> Option<EventTime> {
        self.at
    }
}

impl From<&str> for TimeText {
    fn from(text: &str) -> TimeText {
        TimeText::new(text)
    }
}

impl serde::Serialize for TimeText {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.text)
    }
}

impl<'de> serde::Deserialize<'de> for TimeText {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        <String as serde::Deserialize>::deserialize(d).map(TimeText::new)
    }
}

/// Parses the date or date-time text of data files, stream messages and pipeline files.
///
/// * With a zone — a UTC offset (`+0900`, `+09:00`, `-05:00`) or `Z` after the time, as Yahoo's
///   hourly exports and RFC 3339 write them: the instant it names (`2026-06-24T17:00:00+0900` is
///   `2026-06-24T08:00:00Z`).
/// * Without a zone — `YYYY-MM-DD`, `YYYY-MM-DD HH:MM[:SS[.fff]]`, `YYYY-MM-DDTHH:MM[:SS[.fff]]`
///   and the same with `/`: read as UTC (the data sets carry no zone; a plain date is its midnight
///   UTC). Fractions of a second are dropped (event time counts whole seconds).
///
/// Any year chrono can represent parses, before 1970 included (event time is signed).
pub fn parse_time(text: &str) -> Option<EventTime> {
    let t = text.trim();
    if let Ok(d) = NaiveDate::parse_from_str(t, "%Y-%m-%d") {
        return d.and_hms_opt(0, 0, 0).map(|dt| dt.and_utc().timestamp());
    }
    const NAIVE: [&str; 8] = [
        "%Y-%m-%d %H:%M:%S",
        "%Y-%m-%d %H:%M",
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%dT%H:%M:%S",
        "%Y-%m-%dT%H:%M",
        "%Y/%m/%d %H:%M:%S",
        "%Y/%m/%d %H:%M",
        "%Y-%m-%d %H:%M:%S%.f",
    ];
    for f in NAIVE {
        if let Ok(dt) = NaiveDateTime::parse_from_str(t, f) {
            return Some(dt.and_utc().timestamp());
        }
    }
    if let Ok(d) = NaiveDate::parse_from_str(t, "%Y/%m/%d") {
        return d.and_hms_opt(0, 0, 0).map(|dt| dt.and_utc().timestamp());
    }
    parse_zoned(t)
}

/// A date-time followed by `Z` or a UTC offset (`±HHMM`, `±HH:MM`, `±HH`).
fn parse_zoned(t: &str) -> Option<EventTime> {
    let (local, offset) = if let Some(l) = t.strip_suffix(['Z', 'z']) {
        (l, 0)
    } else {
        // The offset's sign is the last `+` or `-` after the date's own dashes.
        let at = t.rfind(['+', '-']).filter(|&i| i > 10)?;
        (&t[..at], offset_seconds(&t[at..])?)
    };
    const LOCAL: [&str; 4] = [
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%d %H:%M:%S%.f",
        "%Y-%m-%dT%H:%M",
        "%Y-%m-%d %H:%M",
    ];
    let local = LOCAL
        .iter()
        .find_map(|f| NaiveDateTime::parse_from_str(local.trim_end(), f).ok())?;
    Some(local.and_utc().timestamp() - offset)
}

/// `+0900`, `+09:00`, `+09`, `-05:30` as seconds east of UTC; offsets beyond ±24 h are refused.
fn offset_seconds(s: &str) -> Option<i64> {
    let sign = if s.starts_with('-') { -1 } else { 1 };
    let digits: String = s[1..].chars().filter(|c| *c != ':').collect();
    if !digits.bytes().all(|b| b.is_ascii_digit()) || !matches!(digits.len(), 2 | 4) {
        return None;
    }
    let h: i64 = digits[..2].parse().ok()?;
    let m: i64 = if digits.len() == 4 {
        digits[2..].parse().ok()?
    } else {
        0
    };
    (h < 24 && m < 60).then_some(sign * (h * 3600 + m * 60))
}

/// The timely timestamp of an event time.
///
/// Timely's timestamps are unsigned; event time is signed (bars before 1970 are real history).
/// Flipping the sign bit maps `i64` onto `u64` preserving order, so every event time — 1960, the
/// epoch, 2100 — is its own timely time and the frontier passes them in time order.
pub const fn timely_time(t: EventTime) -> u64 {
    (t as u64) ^ (1 << 63)
}

/// The event time of a timely timestamp (the inverse of [`timely_time`]).
pub const fn event_time(t: u64) -> EventTime {
    (t ^ (1 << 63)) as i64
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

/// RFC 3339 in UTC with a `Z` (`2016-03-01T21:00:00Z`): a time that must read back exactly,
/// e.g. in a file name.
pub fn format_rfc3339(t: EventTime) -> String {
    match DateTime::from_timestamp(t, 0) {
        Some(dt) => dt.format("%Y-%m-%dT%H:%M:%SZ").to_string(),
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

/// Wall-clock Unix seconds, for creation times and time-to-live (never for event time); drivers
/// pass it to what needs it.
pub fn wall_unix() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
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

    #[test]
    fn a_time_with_a_utc_offset_or_z_is_the_instant_it_names() {
        let utc = parse_time("2026-06-24 08:00:00").unwrap();
        for t in [
            "2026-06-24T17:00:00+0900",
            "2026-06-24T17:00:00+09:00",
            "2026-06-24 17:00:00+09:00",
            "2026-06-24T17:00:00+09",
            "2026-06-24T08:00:00Z",
            "2026-06-24T08:00:00.250Z",
            "2026-06-24T03:00:00-05:00",
            "2026-06-24T02:30-05:30",
        ] {
            assert_eq!(parse_time(t), Some(utc), "{t}");
        }
        assert_eq!(parse_time("2026-06-24T17:00:00+2500"), None);
        assert_eq!(parse_time("2026-06-24T17:00:00+09x0"), None);
        assert_eq!(parse_time("2026-06-24-05:00"), None);
    }

    #[test]
    fn times_before_1970_are_negative_and_keep_their_order_in_timely() {
        let t = parse_time("1960-01-04").unwrap();
        assert_eq!(t, (-3653 + 3) * DAY);
        assert_eq!(format_time(t), "1960-01-04");
        let times = [i64::MIN, -DAY, -1, 0, 1, DAY, i64::MAX];
        for w in times.windows(2) {
            assert!(timely_time(w[0]) < timely_time(w[1]));
        }
        for t in times {
            assert_eq!(event_time(timely_time(t)), t);
        }
    }
}
