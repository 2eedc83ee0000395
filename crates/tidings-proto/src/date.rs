//! Dates as JavaScript writes them: what a client sees of a `Date` in JSON.

/// `Date.prototype.toJSON` of `millis` since 1970-01-01 UTC: ISO 8601 in UTC with
/// milliseconds (`2026-12-06T10:00:00.123Z`), six-digit signed years outside 0..=9999; None
/// for a time outside JavaScript's range (±8.64e15 ms), where `toJSON` gives null.
pub fn iso8601(millis: i64) -> Option<String> {
    const LIMIT: i64 = 8_640_000_000_000_000;
    if !(-LIMIT..=LIMIT).contains(&millis) {
        return None;
    }
    let days = millis.div_euclid(86_400_000);
    let in_day = millis.rem_euclid(86_400_000);
    // Howard Hinnant's days-to-civil algorithm.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    let year = if (0..=9999).contains(&year) {
        format!("{year:04}")
    } else {
        format!("{year:+07}")
    };
    let (h, m, s, ms) = (
        in_day / 3_600_000,
        in_day / 60_000 % 60,
        in_day / 1000 % 60,
        in_day % 1000,
    );
    Some(format!(
        "{year}-{month:02}-{day:02}T{h:02}:{m:02}:{s:02}.{ms:03}Z"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_are_written_as_javascript_writes_them() {
        // new Date(ms).toISOString()
        assert_eq!(iso8601(0).as_deref(), Some("1970-01-01T00:00:00.000Z"));
        assert_eq!(
            iso8601(1_796_464_800_123).as_deref(),
            Some("2026-12-05T10:00:00.123Z")
        );
        assert_eq!(
            iso8601(951_782_400_000).as_deref(),
            Some("2000-02-29T00:00:00.000Z")
        );
        assert_eq!(iso8601(-1).as_deref(), Some("1969-12-31T23:59:59.999Z"));
        assert_eq!(iso8601(8_640_000_000_000_001), None);
    }
}
