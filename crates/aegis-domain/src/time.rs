//! Time rendering and parsing without a clock: the domain receives time as epoch
//! milliseconds and renders ISO-8601 UTC with milliseconds (api §1.1).

const MS_PER_DAY: u64 = 86_400_000;

/// Render epoch milliseconds as ISO-8601 UTC with milliseconds: `2026-05-04T10:00:00.000Z`.
pub fn iso8601_ms(epoch_ms: u64) -> String {
    // Both quotients fit: u64::MAX / MS_PER_DAY < i64::MAX.
    let days = (epoch_ms / MS_PER_DAY) as i64;
    let ms_of_day = epoch_ms % MS_PER_DAY;
    let (year, month, day) = civil_from_days(days);
    let hour = ms_of_day / 3_600_000;
    let minute = ms_of_day / 60_000 % 60;
    let second = ms_of_day / 1_000 % 60;
    let milli = ms_of_day % 1_000;
    format!("{year:04}-{month:02}-{day:02}T{hour:02}:{minute:02}:{second:02}.{milli:03}Z")
}

/// Parse an ISO-8601 / RFC 3339 timestamp into epoch milliseconds.
///
/// Accepts `YYYY-MM-DD`, or `YYYY-MM-DDTHH:MM[:SS[.fraction]]` (`T`, `t` or a space) with an
/// offset `Z`, `z`, `±HH:MM` or `±HHMM` (no offset = UTC). Fractions beyond milliseconds are
/// truncated. Returns `None` for malformed input or instants before the epoch.
pub fn parse_iso8601_ms(s: &str) -> Option<u64> {
    let mut p = Cursor {
        b: s.trim().as_bytes(),
        i: 0,
    };
    let year = p.digits(4)? as i64;
    p.expect(b'-')?;
    let month = p.digits(2)?;
    p.expect(b'-')?;
    let day = p.digits(2)?;
    if !(1..=12).contains(&month) || day == 0 || day > days_in_month(year, month) {
        return None;
    }
    let (mut hour, mut minute, mut second, mut milli) = (0, 0, 0, 0);
    let mut offset_min: i64 = 0;
    if !p.done() {
        match p.next()? {
            b'T' | b't' | b' ' => {}
            _ => return None,
        }
        hour = p.digits(2)?;
        p.expect(b':')?;
        minute = p.digits(2)?;
        if p.peek() == Some(b':') {
            p.i += 1;
            second = p.digits(2)?;
            if matches!(p.peek(), Some(b'.') | Some(b',')) {
                p.i += 1;
                let start = p.i;
                let mut scale = 100;
                while let Some(c) = p.peek().filter(u8::is_ascii_digit) {
                    milli += u32::from(c - b'0') * scale;
                    scale /= 10;
                    p.i += 1;
                }
                if p.i == start {
                    return None;
                }
            }
        }
        if hour > 23 || minute > 59 || second > 59 {
            return None;
        }
        match p.peek() {
            None => {}
            Some(b'Z') | Some(b'z') => p.i += 1,
            Some(sign @ (b'+' | b'-')) => {
                p.i += 1;
                let oh = p.digits(2)?;
                if p.peek() == Some(b':') {
                    p.i += 1;
                }
                let om = p.digits(2)?;
                if oh > 23 || om > 59 {
                    return None;
                }
                let m = i64::from(oh * 60 + om);
                offset_min = if sign == b'+' { m } else { -m };
            }
            Some(_) => return None,
        }
    }
    if !p.done() {
        return None;
    }
    let days = days_from_civil(year, month, day);
    let ms = days * MS_PER_DAY as i64
        + i64::from(hour) * 3_600_000
        + i64::from(minute) * 60_000
        + i64::from(second) * 1_000
        + i64::from(milli)
        - offset_min * 60_000;
    u64::try_from(ms).ok()
}

struct Cursor<'a> {
    b: &'a [u8],
    i: usize,
}

impl Cursor<'_> {
    fn done(&self) -> bool {
        self.i >= self.b.len()
    }
    fn peek(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }
    fn next(&mut self) -> Option<u8> {
        let c = self.peek()?;
        self.i += 1;
        Some(c)
    }
    fn expect(&mut self, c: u8) -> Option<()> {
        (self.next()? == c).then_some(())
    }
    fn digits(&mut self, n: usize) -> Option<u32> {
        let mut v = 0u32;
        for _ in 0..n {
            let c = self.next()?;
            if !c.is_ascii_digit() {
                return None;
            }
            v = v * 10 + u32::from(c - b'0');
        }
        Some(v)
    }
}

fn is_leap(year: i64) -> bool {
    (year % 4 == 0 && year % 100 != 0) || year % 400 == 0
}

fn days_in_month(year: i64, month: u32) -> u32 {
    match month {
        2 if is_leap(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 → (year, month 1–12, day 1–31), proleptic Gregorian
/// (Howard Hinnant's `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097); // [0, 146096]
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365; // [0, 399]
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100); // [0, 365]
    let mp = (5 * doy + 2) / 153; // [0, 11], March-based
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// (year, month 1–12, day 1–31) → days since 1970-01-01 (Hinnant's `days_from_civil`).
fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400); // [0, 399]
    let mp = i64::from((month + 9) % 12); // March = 0
    let doy = (153 * mp + 2) / 5 + i64::from(day) - 1; // [0, 365]
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy; // [0, 146096]
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    const KNOWN: &[(u64, &str)] = &[
        (0, "1970-01-01T00:00:00.000Z"),
        (1, "1970-01-01T00:00:00.001Z"),
        (86_399_999, "1970-01-01T23:59:59.999Z"),
        (951_782_400_000, "2000-02-29T00:00:00.000Z"),
        (1_709_210_096_789, "2024-02-29T12:34:56.789Z"),
        (1_777_888_800_000, "2026-05-04T10:00:00.000Z"),
        (4_107_542_399_999, "2100-02-28T23:59:59.999Z"),
        (253_402_300_799_999, "9999-12-31T23:59:59.999Z"),
    ];

    #[test]
    fn renders_known_instants() {
        for (ms, iso) in KNOWN {
            assert_eq!(iso8601_ms(*ms), *iso, "{ms}");
        }
    }

    #[test]
    fn parses_known_instants() {
        for (ms, iso) in KNOWN {
            assert_eq!(parse_iso8601_ms(iso), Some(*ms), "{iso}");
        }
    }

    #[test]
    fn parses_other_forms() {
        assert_eq!(parse_iso8601_ms("2026-05-04"), Some(1_777_852_800_000));
        assert_eq!(
            parse_iso8601_ms("2026-05-04T12:00:00+02:00"),
            Some(1_777_888_800_000)
        );
        assert_eq!(
            parse_iso8601_ms("2026-05-04T05:30:00-0430"),
            Some(1_777_888_800_000)
        );
        assert_eq!(
            parse_iso8601_ms("2026-05-04 10:00:00.123456z"),
            Some(1_777_888_800_123)
        );
        assert_eq!(
            parse_iso8601_ms("2026-05-04T10:00"),
            Some(1_777_888_800_000)
        );
        assert_eq!(
            parse_iso8601_ms("2026-05-04T10:00:00.5Z"),
            Some(1_777_888_800_500)
        );
    }

    #[test]
    fn rejects_malformed_and_pre_epoch() {
        for bad in [
            "",
            "2026",
            "2026-13-01",
            "2026-02-30",
            "2025-02-29",
            "2026-05-04T24:00:00Z",
            "2026-05-04T10:60:00Z",
            "2026-05-04T10:00:00.Z",
            "2026-05-04T10:00:00Zjunk",
            "2026-05-04X10:00:00Z",
            "1969-12-31T23:59:59.999Z",
            "2026-05-04T10:00:00+2400",
        ] {
            assert_eq!(parse_iso8601_ms(bad), None, "{bad}");
        }
    }

    #[test]
    fn day_conversion_round_trips() {
        for days in (-800_000..800_000).step_by(997) {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days);
            assert!((1..=12).contains(&m) && d >= 1 && d <= days_in_month(y, m));
        }
    }

    #[test]
    fn render_then_parse_round_trips() {
        for ms in (0..4_000_000_000_000u64).step_by(3_333_333_337) {
            assert_eq!(parse_iso8601_ms(&iso8601_ms(ms)), Some(ms));
        }
    }
}
