//! Durations in the configurations: `"250ms"`, `"5s"`, `"10m"`, `"1h"`, `"1d"`.

use std::time::Duration;

use wasmgate_glue::ConfigError;

const NANOS_PER_MS: u64 = 1_000_000;

/// A duration: whole digits and one unit, `ms`, `s`, `m`, `h` or `d`, with nothing around
/// them (`"1.5s"`, `"1 s"`, `"5"` and `"-1s"` are refused). It must be at least 1ms and at
/// most about 584 years (`u64` nanoseconds). The error gives the text and the reason; the
/// caller names the field with [`ConfigError::at`].
pub fn parse_duration(text: &str) -> Result<Duration, ConfigError> {
    parse_duration_ns(text).map(Duration::from_nanos)
}

/// [`parse_duration`] in nanoseconds, for plugins that count time in them.
pub fn parse_duration_ns(text: &str) -> Result<u64, ConfigError> {
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let scale: u64 = match unit {
        _ if number.is_empty() => 0,
        "ms" => NANOS_PER_MS,
        "s" => 1_000 * NANOS_PER_MS,
        "m" => 60_000 * NANOS_PER_MS,
        "h" => 3_600_000 * NANOS_PER_MS,
        "d" => 86_400_000 * NANOS_PER_MS,
        _ => 0,
    };
    if scale == 0 {
        return Err(ConfigError::new(
            "",
            format!("{text:?} is not a duration like \"500ms\", \"1s\", \"5m\", \"1h\" or \"1d\""),
        ));
    }
    number
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(scale))
        .filter(|nanos| *nanos >= NANOS_PER_MS)
        .ok_or_else(|| {
            ConfigError::new(
                "",
                format!("{text:?} is not a duration from 1ms to 584 years"),
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_unit() {
        let d = |t: &str| parse_duration(t).unwrap();
        assert_eq!(d("250ms"), Duration::from_millis(250));
        assert_eq!(d("5s"), Duration::from_secs(5));
        assert_eq!(d("2m"), Duration::from_secs(120));
        assert_eq!(d("1h"), Duration::from_secs(3_600));
        assert_eq!(d("1d"), Duration::from_secs(86_400));
        assert_eq!(d("007s"), Duration::from_secs(7));
        assert_eq!(parse_duration_ns("1d").unwrap(), 86_400 * 1_000_000_000);
        assert_eq!(parse_duration_ns("1ms").unwrap(), 1_000_000);
        assert!(parse_duration_ns("0s").is_err());
    }

    #[test]
    fn refuses_what_is_not_one() {
        for text in [
            "", "s", "5", "1.5s", "1 s", " 1s", "-1s", "1S", "1w", "1sec", "1ms5",
        ] {
            let err = parse_duration(text).unwrap_err();
            assert!(
                err.reason().contains("is not a duration like"),
                "{text}: {err}"
            );
        }
        for text in ["0s", "0ms", "99999999999999999999d", "213504d"] {
            let err = parse_duration(text).unwrap_err();
            assert!(
                err.reason().contains("from 1ms to 584 years"),
                "{text}: {err}"
            );
        }
        assert_eq!(
            parse_duration("213503d").unwrap(),
            Duration::from_secs(213_503 * 86_400)
        );
    }
}
