//! Serde support for durations written as `"30s"`, `"100ms"`, `"24h"` (humantime syntax).
//!
//! Used with `#[serde(with = "crate::duration")]`. Reading accepts everything
//! [`humantime::parse_duration`] does (`"1h 30m"`, `"2days"`); writing picks the largest of
//! `h`, `m`, `s`, `ms`, `us`, `ns` that divides the value exactly, so `kwik config show` prints
//! `"24h"` rather than humantime's `"1day"` and every value reads back unchanged.

use std::fmt;
use std::time::Duration;

use serde::Serializer;
use serde::de::{self, Deserializer, Visitor};

/// Units used when writing, largest first, with their length in nanoseconds.
const UNITS: [(&str, u128); 5] = [
    ("h", 3_600_000_000_000),
    ("m", 60_000_000_000),
    ("s", 1_000_000_000),
    ("ms", 1_000_000),
    ("us", 1_000),
];

/// Writes `d` in the largest unit that represents it exactly, e.g. `24h`, `1500ms`, `0s`.
pub(crate) fn format(d: Duration) -> String {
    let nanos = d.as_nanos();
    if nanos == 0 {
        return "0s".to_owned();
    }
    for (unit, len) in UNITS {
        if nanos.is_multiple_of(len) {
            return format!("{}{unit}", nanos / len);
        }
    }
    format!("{nanos}ns")
}

pub(crate) fn serialize<S: Serializer>(d: &Duration, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(&format(*d))
}

pub(crate) fn deserialize<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Duration, D::Error> {
    deserializer.deserialize_any(DurationVisitor)
}

struct DurationVisitor;

impl Visitor<'_> for DurationVisitor {
    type Value = Duration;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a duration such as \"100ms\", \"30s\" or \"24h\"")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Duration, E> {
        humantime::parse_duration(v).map_err(|err| {
            E::custom(format_args!(
                "invalid duration `{v}`: {err}; expected a duration such as \"100ms\", \"30s\" or \
                 \"24h\""
            ))
        })
    }

    // A bare number has no unit, and guessing seconds is how "timeout = 30" silently becomes
    // 30 ms in one tool and 30 s in another: say so instead.
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Duration, E> {
        Err(E::custom(format_args!(
            "invalid duration {v}: a duration needs a unit; write it as a string such as \"{v}s\" \
             or \"{v}ms\""
        )))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Duration, E> {
        Err(E::custom(format_args!(
            "invalid duration {v}: a duration needs a unit; write it as a string such as \"{v}s\" \
             or \"{v}ms\""
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_in_the_largest_exact_unit() {
        let cases = [
            (Duration::ZERO, "0s"),
            (Duration::from_secs(86_400), "24h"),
            (Duration::from_secs(30), "30s"),
            (Duration::from_secs(90), "90s"),
            (Duration::from_secs(900), "15m"),
            (Duration::from_millis(100), "100ms"),
            (Duration::from_millis(1500), "1500ms"),
            (Duration::from_micros(7), "7us"),
            (Duration::from_nanos(3), "3ns"),
        ];
        for (d, text) in cases {
            assert_eq!(format(d), text);
            assert_eq!(humantime::parse_duration(text).ok(), Some(d), "{text}");
        }
    }
}
