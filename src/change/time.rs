//! Postgres timestamps (µs since 2000-01-01 UTC): the clock, and RFC 3339 text
//! written straight into the output buffer (no `chrono`, no `fmt` machinery:
//! this runs for every event).

use std::time::{SystemTime, UNIX_EPOCH};

use crate::pgoutput::message::PgTimestamp;

const MICROS_PER_SECOND: i64 = 1_000_000;
const MICROS_PER_DAY: i64 = 86_400 * MICROS_PER_SECOND;
/// Days from 1970-01-01 (the civil-calendar arithmetic's epoch) to 2000-01-01 (Postgres').
const DAYS_1970_TO_2000: i64 = 10_957;
/// Microseconds from the Unix epoch to the Postgres epoch.
pub const MICROS_1970_TO_2000: i64 = DAYS_1970_TO_2000 * MICROS_PER_DAY;

/// Now as a Postgres timestamp.
pub fn now() -> PgTimestamp {
    let unix = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    i64::try_from(unix.as_micros())
        .unwrap_or(i64::MAX)
        .saturating_sub(MICROS_1970_TO_2000)
}

/// Postgres timestamp (µs since 2000-01-01 UTC) as RFC 3339 UTC with microseconds:
/// `2024-02-29T13:14:15.123456Z`, without quotes.
///
/// Fallbacks (never a panic): `i64::MAX` and `i64::MIN`, which Postgres uses
/// for `infinity` and `-infinity`, are written as those words; a year outside
/// 0000..=9999, which RFC 3339 cannot express, is written in the ISO 8601
/// expanded form with a sign and astronomical year numbering
/// (`+10000-01-01T00:00:00.000000Z`, `-0044-03-15T12:00:00.000000Z` for 45 BC).
pub fn write_rfc3339(ts: PgTimestamp, out: &mut Vec<u8>) {
    match ts {
        i64::MAX => return out.extend_from_slice(b"infinity"),
        i64::MIN => return out.extend_from_slice(b"-infinity"),
        _ => {}
    }
    // Euclidean division keeps the time of day positive before 2000.
    let days = ts.div_euclid(MICROS_PER_DAY) + DAYS_1970_TO_2000;
    let micros_of_day = ts.rem_euclid(MICROS_PER_DAY);
    let (year, month, day) = civil_from_days(days);

    if !(0..=9999).contains(&year) {
        out.push(if year < 0 { b'-' } else { b'+' });
        write_padded(year.unsigned_abs(), 4, out);
        // Everything after the year is as in the common case.
        let rest = fixed_width(0, month, day, micros_of_day.unsigned_abs());
        out.extend_from_slice(rest.get(4..).unwrap_or_default());
        return;
    }
    out.extend_from_slice(&fixed_width(
        year.unsigned_abs(),
        month,
        day,
        micros_of_day.unsigned_abs(),
    ));
}

/// `YYYY-MM-DDTHH:MM:SS.ffffffZ` in one fixed-size buffer, so the common case
/// is a single copy; `year` must be below 10000.
fn fixed_width(year: u64, month: u64, day: u64, micros_of_day: u64) -> [u8; 27] {
    let mut buf = *b"0000-00-00T00:00:00.000000Z";
    let secs = micros_of_day / 1_000_000;
    let fields = [
        (0, 4, year),
        (5, 2, month),
        (8, 2, day),
        (11, 2, secs / 3600),
        (14, 2, secs / 60 % 60),
        (17, 2, secs % 60),
        (20, 6, micros_of_day % 1_000_000),
    ];
    for (start, width, value) in fields {
        let mut rest = value;
        for slot in buf.iter_mut().skip(start).take(width).rev() {
            *slot = b'0' + (rest % 10) as u8;
            rest /= 10;
        }
    }
    buf
}

/// Proleptic Gregorian (year, month, day) of a day count since 1970-01-01.
///
/// Works in 400-year eras (146 097 days each) with years starting on March 1,
/// so the leap day is the last day of a year and needs no special case.
fn civil_from_days(days: i64) -> (i64, u64, u64) {
    let z = days + 719_468; // shift the epoch to 0000-03-01
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097); // 0..=146_096
    let year_of_era =
        (day_of_era - day_of_era / 1_460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_from_march = (5 * day_of_year + 2) / 153; // 0 = March .. 11 = February
    let day = (day_of_year - (153 * month_from_march + 2) / 5 + 1).unsigned_abs();
    let month = if month_from_march < 10 {
        month_from_march + 3
    } else {
        month_from_march - 9
    }
    .unsigned_abs();
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// Days from 1970-01-01 to the proleptic Gregorian `year-month-day`
/// (astronomical years: 0 is 1 BC); the inverse of [`civil_from_days`].
pub(crate) fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year.rem_euclid(400);
    let month_from_march = if month > 2 { month - 3 } else { month + 9 };
    let day_of_year = (153 * month_from_march + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

/// Decimal digits of `n`, left-padded with zeros to at least `width`.
fn write_padded(n: u64, width: usize, out: &mut Vec<u8>) {
    let mut digits = [b'0'; 20];
    let mut len = 0;
    let mut rest = n;
    // Fill from the right; 20 digits hold any u64.
    for slot in digits.iter_mut().rev() {
        *slot = b'0' + (rest % 10) as u8;
        rest /= 10;
        len += 1;
        if rest == 0 && len >= width {
            break;
        }
    }
    let start = digits.len().saturating_sub(len);
    out.extend_from_slice(digits.get(start..).unwrap_or_default());
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rfc3339(ts: PgTimestamp) -> String {
        let mut out = Vec::new();
        write_rfc3339(ts, &mut out);
        String::from_utf8(out).unwrap()
    }

    /// µs since 2000-01-01 of a UTC date-time, computed independently with chrono.
    fn pg_ts(y: i32, mo: u32, d: u32, h: u32, mi: u32, s: u32, us: u32) -> PgTimestamp {
        let dt = chrono::NaiveDate::from_ymd_opt(y, mo, d)
            .unwrap()
            .and_hms_micro_opt(h, mi, s, us)
            .unwrap();
        let epoch = chrono::NaiveDate::from_ymd_opt(2000, 1, 1)
            .unwrap()
            .and_hms_opt(0, 0, 0)
            .unwrap();
        (dt - epoch).num_microseconds().unwrap()
    }

    #[test]
    fn postgres_epoch_is_midnight_2000_01_01() {
        assert_eq!(rfc3339(0), "2000-01-01T00:00:00.000000Z");
    }

    #[test]
    fn leap_day_with_microseconds() {
        let ts = pg_ts(2024, 2, 29, 13, 14, 15, 123_456);
        assert_eq!(rfc3339(ts), "2024-02-29T13:14:15.123456Z");
    }

    #[test]
    fn one_microsecond_before_2000_is_the_last_of_1999() {
        assert_eq!(rfc3339(-1), "1999-12-31T23:59:59.999999Z");
    }

    #[test]
    fn dates_before_2000_and_century_rules() {
        assert_eq!(
            rfc3339(pg_ts(1970, 1, 1, 0, 0, 0, 0)),
            "1970-01-01T00:00:00.000000Z"
        );
        assert_eq!(
            rfc3339(pg_ts(1900, 2, 28, 23, 59, 59, 1)),
            "1900-02-28T23:59:59.000001Z"
        );
        assert_eq!(
            rfc3339(pg_ts(1900, 3, 1, 0, 0, 0, 0)),
            "1900-03-01T00:00:00.000000Z"
        );
        assert_eq!(
            rfc3339(pg_ts(2000, 2, 29, 12, 0, 0, 0)),
            "2000-02-29T12:00:00.000000Z"
        );
        assert_eq!(
            rfc3339(pg_ts(1, 1, 1, 0, 0, 0, 0)),
            "0001-01-01T00:00:00.000000Z"
        );
    }

    #[test]
    fn infinities_are_written_as_postgres_words() {
        assert_eq!(rfc3339(i64::MAX), "infinity");
        assert_eq!(rfc3339(i64::MIN), "-infinity");
    }

    #[test]
    fn years_outside_four_digits_use_iso_expanded_form() {
        assert_eq!(
            rfc3339(pg_ts(10000, 1, 1, 0, 0, 0, 0)),
            "+10000-01-01T00:00:00.000000Z"
        );
        assert_eq!(
            rfc3339(pg_ts(-44, 3, 15, 12, 0, 0, 0)),
            "-0044-03-15T12:00:00.000000Z"
        );
        // Extremes just inside the sentinels must not overflow.
        assert!(rfc3339(i64::MAX - 1).starts_with('+'));
        assert!(rfc3339(i64::MIN + 1).starts_with('-'));
    }

    #[test]
    fn agrees_with_chrono_on_a_sweep_of_dates() {
        let epoch = chrono::NaiveDate::from_ymd_opt(2000, 1, 1)
            .unwrap()
            .and_hms_opt(0, 0, 0)
            .unwrap();
        let step = 7_777_777_777_777i64; // ~90 days and an odd time of day
        for i in -300..300i64 {
            let ts = i * step;
            let expected = (epoch + chrono::Duration::microseconds(ts))
                .format("%Y-%m-%dT%H:%M:%S%.6fZ")
                .to_string();
            assert_eq!(rfc3339(ts), expected, "ts={ts}");
        }
    }
}
