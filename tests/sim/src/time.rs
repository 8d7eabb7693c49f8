//! Scenario time syntax: RFC 3339 instants with an offset, `+10h30m` offsets and `24h` durations.
//!
//! All simulator time is Unix milliseconds (`i64`). Local time (hour-of-day traffic, business
//! hours) uses the UTC offset written in the scenario's `start`.

use storepulse_shared::civil::{civil_from_days, days_from_civil};

/// One minute in milliseconds.
pub const MINUTE_MS: i64 = 60_000;
/// One hour in milliseconds.
pub const HOUR_MS: i64 = 3_600_000;
/// One day in milliseconds.
pub const DAY_MS: i64 = 86_400_000;

/// An instant with the UTC offset it was written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Instant {
    /// Unix milliseconds.
    pub unix_ms: i64,
    /// The offset from UTC written in the text, seconds.
    pub offset_secs: i32,
}

/// Parses `YYYY-MM-DDTHH:MM:SS[.fff](Z|±HH:MM)`.
pub fn parse_rfc3339(s: &str) -> Result<Instant, String> {
    let bad =
        || format!("{s:?} is not an RFC 3339 time with an offset (e.g. 2026-03-02T00:00:00+08:00)");
    let b = s.as_bytes();
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b't' | b' ') {
        return Err(bad());
    }
    if b[13] != b':' || b[16] != b':' {
        return Err(bad());
    }
    let num = |r: std::ops::Range<usize>| -> Result<i64, String> {
        s.get(r)
            .filter(|d| d.bytes().all(|c| c.is_ascii_digit()))
            .and_then(|d| d.parse::<i64>().ok())
            .ok_or_else(bad)
    };
    let (year, month, day) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (hour, min, sec) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&month) || day < 1 || day > days_in_month(year, month) {
        return Err(format!("{s:?} is not a valid date"));
    }
    if hour > 23 || min > 59 || sec > 59 {
        return Err(format!("{s:?} is not a valid time of day"));
    }
    let mut rest = &s[19..];
    let mut frac_ms = 0;
    if let Some(r) = rest.strip_prefix('.') {
        let digits = r.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return Err(bad());
        }
        let ms3: String = r[..digits].chars().chain("000".chars()).take(3).collect();
        frac_ms = ms3.parse::<i64>().map_err(|_| bad())?;
        rest = &r[digits..];
    }
    let offset_secs: i32 = match rest {
        "Z" | "z" => 0,
        o if o.len() == 6 && matches!(&o[..1], "+" | "-") && &o[3..4] == ":" => {
            let h: i32 = o[1..3].parse().map_err(|_| bad())?;
            let m: i32 = o[4..6].parse().map_err(|_| bad())?;
            if h > 23 || m > 59 {
                return Err(bad());
            }
            let v = h * 3600 + m * 60;
            if o.starts_with('-') { -v } else { v }
        }
        "" => {
            return Err(format!(
                "{s:?} has no UTC offset; write one, e.g. {s}+08:00"
            ));
        }
        _ => return Err(bad()),
    };
    let days = days_from_civil(year, month, day);
    let local_secs = days * 86_400 + hour * 3600 + min * 60 + sec;
    Ok(Instant {
        unix_ms: (local_secs - i64::from(offset_secs)) * 1000 + frac_ms,
        offset_secs,
    })
}

/// Parses a local date `YYYY-MM-DD` into days since 1970-01-01.
pub fn parse_date(s: &str) -> Result<i64, String> {
    let bad = || format!("{s:?} is not a date (e.g. 2026-10-01)");
    let b = s.as_bytes();
    if b.len() != 10 || b[4] != b'-' || b[7] != b'-' {
        return Err(bad());
    }
    let num = |r: std::ops::Range<usize>| -> Result<i64, String> {
        s.get(r)
            .filter(|d| d.bytes().all(|c| c.is_ascii_digit()))
            .and_then(|d| d.parse::<i64>().ok())
            .ok_or_else(bad)
    };
    let (year, month, day) = (num(0..4)?, num(5..7)?, num(8..10)?);
    if !(1..=12).contains(&month) || day < 1 || day > days_in_month(year, month) {
        return Err(format!("{s:?} is not a valid date"));
    }
    Ok(days_from_civil(year, month, day))
}

/// Formats days since 1970-01-01 as `YYYY-MM-DD`.
pub fn format_date(days: i64) -> String {
    let (y, m, d) = civil_from_days(days);
    format!("{y:04}-{m:02}-{d:02}")
}

/// Parses a duration such as `24h`, `90m`, `1h30m`, `2d`, `45s`, `1500ms`.
pub fn parse_duration(s: &str) -> Result<i64, String> {
    let bad = || format!("{s:?} is not a duration (e.g. 24h, 90m, 1h30m, 45s)");
    let mut total: i64 = 0;
    let mut rest = s.trim();
    if rest.is_empty() {
        return Err(bad());
    }
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return Err(bad());
        }
        let n: i64 = rest[..digits].parse().map_err(|_| bad())?;
        rest = &rest[digits..];
        let (unit_ms, len) = if rest.starts_with("ms") {
            (1, 2)
        } else {
            match rest.as_bytes().first() {
                Some(b'd') => (DAY_MS, 1),
                Some(b'h') => (HOUR_MS, 1),
                Some(b'm') => (MINUTE_MS, 1),
                Some(b's') => (1000, 1),
                _ => return Err(bad()),
            }
        };
        total = n
            .checked_mul(unit_ms)
            .and_then(|v| total.checked_add(v))
            .ok_or_else(bad)?;
        rest = &rest[len..];
    }
    Ok(total)
}

/// Parses a fault or incident time: `+10h30m` from `origin_ms`, or an RFC 3339 instant.
pub fn parse_time(s: &str, origin_ms: i64) -> Result<i64, String> {
    match s.strip_prefix('+') {
        Some(d) => parse_duration(d)
            .map(|d| origin_ms + d)
            .map_err(|_| format!("{s:?} is not an offset from the scenario start (e.g. +10h30m)")),
        None => parse_rfc3339(s).map(|i| i.unix_ms),
    }
}

/// Local hour of day (0-23) of `unix_ms` at `offset_secs`.
pub fn local_hour(unix_ms: i64, offset_secs: i32) -> u32 {
    let local = unix_ms + i64::from(offset_secs) * 1000;
    // rem_euclid of a positive modulus is in 0..24, so the cast cannot truncate.
    local.div_euclid(HOUR_MS).rem_euclid(24) as u32
}

/// The next local hour boundary strictly after `unix_ms`.
pub fn next_hour_boundary(unix_ms: i64, offset_secs: i32) -> i64 {
    let off = i64::from(offset_secs) * 1000;
    ((unix_ms + off).div_euclid(HOUR_MS) + 1) * HOUR_MS - off
}

/// Formats Unix milliseconds as RFC 3339 at `offset_secs` (for reports and error messages).
pub fn format_rfc3339(unix_ms: i64, offset_secs: i32) -> String {
    let local_secs = unix_ms.div_euclid(1000) + i64::from(offset_secs);
    let (days, secs) = (local_secs.div_euclid(86_400), local_secs.rem_euclid(86_400));
    let (y, m, d) = civil_from_days(days);
    let sign = if offset_secs < 0 { '-' } else { '+' };
    let o = offset_secs.unsigned_abs();
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}{sign}{:02}:{:02}",
        secs / 3600,
        secs / 60 % 60,
        secs % 60,
        o / 3600,
        o / 60 % 60
    )
}

fn is_leap(y: i64) -> bool {
    (y % 4 == 0 && y % 100 != 0) || y % 400 == 0
}

fn days_in_month(y: i64, m: i64) -> i64 {
    match m {
        2 if is_leap(y) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_round_trips() {
        let i = parse_rfc3339("2026-03-02T00:00:00+08:00").expect("parses");
        assert_eq!(i.offset_secs, 8 * 3600);
        assert_eq!(i.unix_ms, 1_772_380_800_000);
        assert_eq!(
            format_rfc3339(i.unix_ms, i.offset_secs),
            "2026-03-02T00:00:00+08:00"
        );
        assert_eq!(
            parse_rfc3339("2026-03-01T16:00:00.5Z")
                .expect("utc")
                .unix_ms,
            1_772_380_800_500
        );
        assert!(parse_rfc3339("2026-03-02T00:00:00").is_err());
        assert!(parse_rfc3339("2026-02-30T00:00:00+08:00").is_err());
        assert!(parse_rfc3339("2026-03-02T25:00:00+08:00").is_err());
        assert_eq!(parse_date("2026-03-02"), Ok(20_514));
        assert_eq!(format_date(20_514), "2026-03-02");
        assert!(parse_date("2026-02-29").is_err());
        assert!(parse_date("2026-3-2").is_err());
    }

    #[test]
    fn durations_and_offsets() {
        assert_eq!(parse_duration("1h30m"), Ok(90 * MINUTE_MS));
        assert_eq!(parse_duration("2d"), Ok(2 * DAY_MS));
        assert_eq!(parse_duration("1500ms"), Ok(1500));
        assert!(parse_duration("10x").is_err());
        assert!(parse_duration("h").is_err());
        assert_eq!(parse_time("+10h30m", 1000), Ok(1000 + 630 * MINUTE_MS));
        assert!(parse_time("+soon", 0).is_err());
    }

    #[test]
    fn local_hours() {
        let t = 1_772_380_800_000; // 2026-03-02T00:00+08:00
        assert_eq!(local_hour(t, 8 * 3600), 0);
        assert_eq!(local_hour(t + 13 * HOUR_MS + 5, 8 * 3600), 13);
        assert_eq!(next_hour_boundary(t + 5, 8 * 3600), t + HOUR_MS);
        assert_eq!(next_hour_boundary(t, 8 * 3600), t + HOUR_MS);
    }
}
