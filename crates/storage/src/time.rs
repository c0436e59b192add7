//! Timestamps in SQLite: UTC text in one form, `YYYY-MM-DDTHH:MM:SS.ffffffZ`, written here
//! and nowhere else, so text order is time order (STORAGE.md §1).

use chrono::{DateTime, NaiveDateTime, SecondsFormat, Utc};

use crate::StorageError;

/// The stored text of a time, at microsecond precision.
pub(crate) fn to_text(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Micros, true)
}

/// A stored time read back.
pub(crate) fn from_text(column: &'static str, text: &str) -> Result<DateTime<Utc>, StorageError> {
    NaiveDateTime::parse_from_str(text, "%Y-%m-%dT%H:%M:%S%.fZ")
        .map(|t| t.and_utc())
        .map_err(|_| StorageError::Corrupt {
            column,
            value: text.to_owned(),
        })
}

/// A time cut to the microseconds both backends keep, so a message and the row it
/// announces show the same instant.
pub fn micros(t: DateTime<Utc>) -> DateTime<Utc> {
    DateTime::from_timestamp_micros(t.timestamp_micros()).unwrap_or(t)
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    #[test]
    fn text_is_fixed_width_and_round_trips() {
        let t = Utc.with_ymd_and_hms(2026, 12, 4, 9, 5, 7).unwrap();
        assert_eq!(to_text(t), "2026-12-04T09:05:07.000000Z");
        let fine = DateTime::from_timestamp_micros(1_796_000_000_123_456).unwrap();
        assert_eq!(from_text("t", &to_text(fine)).unwrap(), fine);
        assert!(from_text("t", "yesterday").is_err());
    }
}
