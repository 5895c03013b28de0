//! ISO-8601 timestamps with an offset, parsed to UTC microseconds without allocating.
//!
//! Accepted: `YYYY-MM-DDTHH:MM:SS[.fraction][Z|±HH:MM|±HHMM]`, with `T` or a space between date and
//! time and 0 to 9 fraction digits (beyond microseconds they are truncated). Python's
//! `datetime.isoformat()` and Spark's default output both fit. A timestamp without an offset is
//! rejected: its instant is ambiguous, and guessing a zone would silently shift windows.

/// Why a timestamp string was rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TsError {
    Malformed,
    NoOffset,
}

fn digits(b: &[u8], at: usize, n: usize) -> Option<i64> {
    let s = b.get(at..at + n)?;
    let mut v = 0i64;
    for &c in s {
        if !c.is_ascii_digit() {
            return None;
        }
        v = v * 10 + (c - b'0') as i64;
    }
    Some(v)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's `days_from_civil`).
pub fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn days_in_month(y: i64, m: i64) -> i64 {
    match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        _ if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
        _ => 28,
    }
}

/// Parses an ISO-8601 timestamp with offset into microseconds since the Unix epoch (UTC).
pub fn parse_iso8601_micros(s: &[u8]) -> Result<i64, TsError> {
    use TsError::Malformed;
    let year = digits(s, 0, 4).ok_or(Malformed)?;
    if s.get(4) != Some(&b'-') || s.get(7) != Some(&b'-') {
        return Err(Malformed);
    }
    let month = digits(s, 5, 2).ok_or(Malformed)?;
    let day = digits(s, 8, 2).ok_or(Malformed)?;
    if !matches!(s.get(10), Some(b'T') | Some(b't') | Some(b' ')) {
        return Err(Malformed);
    }
    let hour = digits(s, 11, 2).ok_or(Malformed)?;
    if s.get(13) != Some(&b':') || s.get(16) != Some(&b':') {
        return Err(Malformed);
    }
    let minute = digits(s, 14, 2).ok_or(Malformed)?;
    let second = digits(s, 17, 2).ok_or(Malformed)?;
    if !(1..=12).contains(&month)
        || day < 1
        || day > days_in_month(year, month)
        || hour > 23
        || minute > 59
        || second > 59
    {
        return Err(Malformed);
    }
    let mut i = 19;
    let mut micros = 0i64;
    if s.get(i) == Some(&b'.') || s.get(i) == Some(&b',') {
        i += 1;
        let start = i;
        while i < s.len() && s[i].is_ascii_digit() {
            if i - start < 6 {
                micros = micros * 10 + (s[i] - b'0') as i64;
            }
            i += 1;
        }
        let n = i - start;
        if n == 0 || n > 9 {
            return Err(Malformed);
        }
        for _ in n..6 {
            micros *= 10;
        }
    }
    let offset_secs = match s.get(i) {
        Some(b'Z') | Some(b'z') if i + 1 == s.len() => 0,
        Some(&sign @ (b'+' | b'-')) => {
            let oh = digits(s, i + 1, 2).ok_or(Malformed)?;
            let (om, end) = if s.get(i + 3) == Some(&b':') {
                (digits(s, i + 4, 2).ok_or(Malformed)?, i + 6)
            } else {
                (digits(s, i + 3, 2).ok_or(Malformed)?, i + 5)
            };
            if end != s.len() || oh > 23 || om > 59 {
                return Err(Malformed);
            }
            let off = oh * 3600 + om * 60;
            if sign == b'+' {
                off
            } else {
                -off
            }
        }
        None => return Err(TsError::NoOffset),
        _ => return Err(Malformed),
    };
    let days = days_from_civil(year, month, day);
    let secs = days * 86_400 + hour * 3600 + minute * 60 + second - offset_secs;
    Ok(secs * 1_000_000 + micros)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::DateTime;

    fn chrono_micros(s: &str) -> i64 {
        DateTime::parse_from_rfc3339(s).unwrap().timestamp_micros()
    }

    #[test]
    fn agrees_with_chrono() {
        for s in [
            "2025-11-24T22:33:04.123456+00:00",
            "2025-11-24T22:33:04+05:30",
            "1970-01-01T00:00:00Z",
            "1969-12-31T23:59:59.5-01:00",
            "2024-02-29T12:00:00.000001Z",
            "2000-03-01T00:00:00.999999999+14:00",
            "2262-04-11T23:47:16.854775Z",
        ] {
            assert_eq!(parse_iso8601_micros(s.as_bytes()), Ok(chrono_micros(s)), "{s}");
        }
    }

    #[test]
    fn space_separator_and_compact_offset() {
        assert_eq!(
            parse_iso8601_micros(b"2025-11-24 22:33:04+0100").unwrap(),
            chrono_micros("2025-11-24T22:33:04+01:00")
        );
    }

    #[test]
    fn rejects_bad_input() {
        assert_eq!(parse_iso8601_micros(b"2025-11-24T22:33:04"), Err(TsError::NoOffset));
        for s in [
            "",
            "yesterday",
            "2025-13-01T00:00:00Z",
            "2025-02-29T00:00:00Z",
            "2025-01-01T24:00:00Z",
            "2025-01-01T00:00:00.Z",
            "2025-01-01T00:00:00Zjunk",
            "2025-01-01T00:00:00+1",
        ] {
            assert_eq!(parse_iso8601_micros(s.as_bytes()), Err(TsError::Malformed), "{s}");
        }
    }
}
