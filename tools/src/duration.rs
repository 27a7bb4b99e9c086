//! Durations on the command line: a number and a unit, as in `500ms`, `10s`, `1.5s`, `2m`.

use std::time::Duration;

/// Units understood, with their length in nanoseconds.
const UNITS: [(&str, f64); 8] = [
    ("ns", 1.0),
    ("us", 1e3),
    ("µs", 1e3),
    ("ms", 1e6),
    ("s", 1e9),
    ("m", 60e9),
    ("min", 60e9),
    ("h", 3600e9),
];

/// Parse `<number><unit>` (no space needed; the number may have a fraction).
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let unit = unit.trim_start();
    let units = "ns, us, ms, s, m, h";
    if number.is_empty() {
        return Err(format!(
            "{text:?} is not a duration: expected a number and a unit ({units}), e.g. 10s"
        ));
    }
    let value: f64 =
        number.parse().map_err(|_| format!("{number:?} is not a number (in duration {text:?})"))?;
    if unit.is_empty() {
        return Err(format!("duration {text:?} has no unit: add one of {units}, e.g. {number}s"));
    }
    let Some(&(_, scale)) = UNITS.iter().find(|(name, _)| *name == unit) else {
        return Err(format!("unknown unit {unit:?} in duration {text:?}: expected one of {units}"));
    };
    let nanos = value * scale;
    if !nanos.is_finite() || nanos > u64::MAX as f64 {
        return Err(format!("duration {text:?} is too long"));
    }
    Ok(Duration::from_nanos(nanos.round() as u64))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_usual_forms() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("250us"), Ok(Duration::from_micros(250)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_duration(" 3 s "), Ok(Duration::from_secs(3)));
        assert_eq!(parse_duration("0s"), Ok(Duration::ZERO));
    }

    #[test]
    fn rejects_nonsense_with_a_reason() {
        for (bad, says) in [
            ("10", "no unit"),
            ("s", "not a duration"),
            ("10parsecs", "unknown unit"),
            ("1.2.3s", "not a number"),
            ("-1s", "not a duration"),
            ("", "not a duration"),
        ] {
            let err = parse_duration(bad).unwrap_err();
            assert!(err.contains(says), "{bad:?}: {err}");
        }
    }
}
