//! Human durations for configuration (`fetch_interval = 30s`).

use std::time::Duration;

use super::Error;

/// Parses `250ms`, `1s`, `5m`, `1h` (also `1.5s`, and `2m30s`-style sums).
/// A bare number is rejected: the unit must be explicit.
pub fn parse_duration(s: &str) -> Result<Duration, Error> {
    let bad = || Error::Duration(s.to_string());
    let t = s.trim();
    if t.is_empty() {
        return Err(bad());
    }
    let mut total = 0f64;
    let mut rest = t;
    while !rest.is_empty() {
        let num_end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(bad)?;
        if num_end == 0 {
            return Err(bad());
        }
        let n: f64 = rest[..num_end].parse().map_err(|_| bad())?;
        rest = &rest[num_end..];
        let unit_end = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let factor = match &rest[..unit_end] {
            "ms" => 0.001,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return Err(bad()),
        };
        total += n * factor;
        rest = &rest[unit_end..];
    }
    if !total.is_finite() || total > 1e12 {
        return Err(bad());
    }
    Ok(Duration::from_secs_f64(total))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_units() {
        assert_eq!(parse_duration("1s").ok(), Some(Duration::from_secs(1)));
        assert_eq!(parse_duration("5m").ok(), Some(Duration::from_secs(300)));
        assert_eq!(parse_duration("1h").ok(), Some(Duration::from_secs(3600)));
        assert_eq!(
            parse_duration("250ms").ok(),
            Some(Duration::from_millis(250))
        );
        assert_eq!(parse_duration("2m30s").ok(), Some(Duration::from_secs(150)));
        assert_eq!(
            parse_duration(" 1.5s ").ok(),
            Some(Duration::from_millis(1500))
        );
    }

    #[test]
    fn rejects_garbage() {
        for s in ["", "1", "s", "1x", "ms", "-1s", "1s2"] {
            assert!(parse_duration(s).is_err(), "{s:?}");
        }
    }
}
