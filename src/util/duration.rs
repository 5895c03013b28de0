//! The one duration grammar of streamlake: every flag (`--idle-timeout`, `--every`, `--tick`, ...)
//! and every dataflow-file field (`window.size`, `trigger`, ...) is read by [`parse_duration`].
//!
//! Grammar: a decimal number, optionally a space, then a unit `ms`, `s`, `m`, `h` or `d` (days, for
//! retention periods such as `vacuum --retain 7d`); no unit means seconds. `250ms`, `1.5s`, `0.5m`, `5 m`, `7`, `.5s` and `1.` are durations; signs, exponents,
//! compound forms (`1h30m`) and other units are not. It is the union of what `run` and `validate`
//! accepted before they shared it: `run` took fractions, `validate` a space before the unit.
//!
//! Why not `humantime` (measured with humantime 2.4 on the inputs above): it rejects a bare number
//! (`7` → "unknown unit"), which both commands have always read as seconds, and also `.5s` and
//! `1.`; it accepts units and compounds nobody asked for (`15days 2min`). Keeping the old inputs
//! working would mean wrapping it in a pre-parser as long as this one, for a new dependency.
//!
//! The number is read in exact decimal arithmetic (no `f64`), so `0.1s` is exactly 100 ms and a
//! value too large for a [`Duration`] is an error instead of a panic; digits below a nanosecond
//! are dropped.

use std::time::Duration;

/// Why a text is not a duration; each message names the text and shows what to write instead.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    #[error("`{0}` is not a duration: use e.g. 500ms, 10s, 1.5s, 5m or 1h")]
    NotANumber(String),
    #[error("`{text}` has an unknown unit `{unit}`: use ms, s, m, h or d")]
    UnknownUnit { text: String, unit: String },
    #[error("`{0}` is too long a duration")]
    TooLong(String),
}

/// Parses durations such as `250ms`, `1.5s`, `5m`, `1h`; a bare number means seconds.
pub fn parse_duration(text: &str) -> Result<Duration, DurationError> {
    let s = text.trim();
    let split = s.find(|c: char| !c.is_ascii_digit() && c != '.').unwrap_or(s.len());
    let (number, unit) = s.split_at(split);
    let not_a_number = || DurationError::NotANumber(text.to_string());
    let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
    let digits = |d: &str| d.bytes().all(|b| b.is_ascii_digit());
    if whole.is_empty() && fraction.is_empty() || !digits(whole) || !digits(fraction) {
        return Err(not_a_number());
    }
    let unit_nanos: u128 = match unit.trim_start() {
        "ms" => 1_000_000,
        "" | "s" => 1_000_000_000,
        "m" => 60_000_000_000,
        "h" => 3_600_000_000_000,
        "d" => 86_400_000_000_000,
        other => return Err(DurationError::UnknownUnit { text: text.to_string(), unit: other.to_string() }),
    };
    let too_long = || DurationError::TooLong(text.to_string());
    // u128 holds any whole part that can still fit a Duration once multiplied by the unit; a
    // longer one is too long anyway.
    let whole: u128 = if whole.is_empty() { 0 } else { whole.parse().map_err(|_| too_long())? };
    let mut nanos = whole.checked_mul(unit_nanos).ok_or_else(too_long)?;
    // The fraction, digit by digit: each is worth a tenth of the one before.
    let mut place = unit_nanos;
    for d in fraction.bytes() {
        place /= 10;
        if place == 0 {
            break;
        }
        nanos += u128::from(d - b'0') * place;
    }
    let secs = u64::try_from(nanos / 1_000_000_000).map_err(|_| too_long())?;
    Ok(Duration::new(secs, (nanos % 1_000_000_000) as u32))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Result<Duration, DurationError> {
        Ok(Duration::from_millis(n))
    }

    #[test]
    fn units_and_bare_numbers() {
        assert_eq!(parse_duration("250ms"), ms(250));
        assert_eq!(parse_duration("10s"), ms(10_000));
        assert_eq!(parse_duration("5m"), ms(300_000));
        assert_eq!(parse_duration("1h"), ms(3_600_000));
        assert_eq!(parse_duration("7"), ms(7_000));
        assert_eq!(parse_duration("0s"), ms(0));
        assert_eq!(parse_duration(" 30s "), ms(30_000));
    }

    #[test]
    fn what_run_accepted_fractions() {
        assert_eq!(parse_duration("1.5s"), ms(1_500));
        assert_eq!(parse_duration("0.5m"), ms(30_000));
        assert_eq!(parse_duration(".5s"), ms(500));
        assert_eq!(parse_duration("1."), ms(1_000));
        assert_eq!(parse_duration("0.1s"), ms(100), "exact, not f64-rounded");
        assert_eq!(parse_duration("2.5ms"), Ok(Duration::from_micros(2_500)));
        assert_eq!(parse_duration("0.0000000019s"), Ok(Duration::from_nanos(1)), "below 1 ns dropped");
    }

    #[test]
    fn what_validate_accepted_a_space_before_the_unit() {
        assert_eq!(parse_duration("5 m"), ms(300_000));
        assert_eq!(parse_duration("250 ms"), ms(250));
        assert_eq!(parse_duration("7d"), ms(7 * 86_400_000));
    }

    #[test]
    fn rejects_with_a_message_that_says_what_to_write() {
        for bad in ["", "s", ".", "-1s", "+1s", "1.2.3s", "ten s"] {
            let e = parse_duration(bad).unwrap_err();
            assert!(matches!(e, DurationError::NotANumber(_)), "{bad}: {e:?}");
            assert!(e.to_string().contains("is not a duration: use e.g."), "{e}");
        }
        let e = parse_duration("5 parsecs").unwrap_err();
        assert_eq!(e.to_string(), "`5 parsecs` has an unknown unit `parsecs`: use ms, s, m, h or d");
        assert!(parse_duration("1h30m").unwrap_err().to_string().contains("unknown unit `h30m`"));
        assert!(parse_duration("5 m s").is_err());
        assert!(matches!(parse_duration("1e3s"), Err(DurationError::UnknownUnit { .. })));
    }

    #[test]
    fn too_long_is_an_error_not_a_panic() {
        assert_eq!(
            parse_duration("99999999999999999999999h"),
            Err(DurationError::TooLong("99999999999999999999999h".into()))
        );
        let digits = "9".repeat(60);
        assert!(matches!(parse_duration(&digits), Err(DurationError::TooLong(_))));
        assert_eq!(parse_duration("18446744073709551615s"), Ok(Duration::from_secs(u64::MAX)));
        assert!(parse_duration("18446744073709551616s").is_err());
    }
}
