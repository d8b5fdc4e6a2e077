//! [`ByteSize`]: a size in bytes written as `64KiB`, `1MiB` or a plain integer.

use std::fmt;
use std::str::FromStr;

use serde::de::{self, Deserialize, Deserializer, Visitor};
use serde::{Serialize, Serializer};

/// A size in bytes, as written in `performance.toml`.
///
/// Accepted forms: a non-negative integer (`65536`, bytes) or a string made of an integer and
/// an optional unit (`"64KiB"`, `"4 MiB"`, `"1000B"`). Binary units (`KiB`, `MiB`, `GiB`,
/// `TiB`) are powers of 1024, decimal units (`KB`, `MB`, `GB`, `TB`) powers of 1000, as IEC
/// 80000-13 defines them; units are case-insensitive. Fractions are rejected: a size is a whole
/// number of bytes.
///
/// `Display` (and therefore `kwik config show`) writes the largest binary unit that divides the
/// value exactly, so a size always reads back to the same number of bytes.
///
/// ```
/// use kwik_config::ByteSize;
///
/// let size: ByteSize = "64KiB".parse()?;
/// assert_eq!(size.as_u64(), 64 * 1024);
/// assert_eq!(size, ByteSize::kib(64));
/// assert_eq!(size.to_string(), "64KiB");
/// assert_eq!("1500".parse::<ByteSize>()?.to_string(), "1500B");
/// # Ok::<(), kwik_config::ParseSizeError>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct ByteSize(u64);

/// Units a size may carry, lower-cased, with their multiplier. Longest suffixes first so that
/// `kib` is not read as `b` after a number `64ki`.
const UNITS: [(&str, u64); 9] = [
    ("kib", 1 << 10),
    ("mib", 1 << 20),
    ("gib", 1 << 30),
    ("tib", 1 << 40),
    ("kb", 1_000),
    ("mb", 1_000_000),
    ("gb", 1_000_000_000),
    ("tb", 1_000_000_000_000),
    ("b", 1),
];

/// Binary units used by `Display`, largest first.
const DISPLAY_UNITS: [(&str, u64); 4] = [
    ("TiB", 1 << 40),
    ("GiB", 1 << 30),
    ("MiB", 1 << 20),
    ("KiB", 1 << 10),
];

impl ByteSize {
    /// Zero bytes; several keys read it as "no limit" or "automatic".
    pub const ZERO: Self = Self(0);

    /// `n` bytes.
    pub const fn b(n: u64) -> Self {
        Self(n)
    }

    /// `n` KiB (`n × 1024` bytes). Saturates at `u64::MAX`.
    pub const fn kib(n: u64) -> Self {
        Self(n.saturating_mul(1 << 10))
    }

    /// `n` MiB (`n × 1024²` bytes). Saturates at `u64::MAX`.
    pub const fn mib(n: u64) -> Self {
        Self(n.saturating_mul(1 << 20))
    }

    /// `n` GiB (`n × 1024³` bytes). Saturates at `u64::MAX`.
    pub const fn gib(n: u64) -> Self {
        Self(n.saturating_mul(1 << 30))
    }

    /// The size in bytes.
    pub const fn as_u64(self) -> u64 {
        self.0
    }

    /// The size in bytes as a `usize`, saturating on targets where `usize` is narrower.
    pub fn as_usize(self) -> usize {
        usize::try_from(self.0).unwrap_or(usize::MAX)
    }

    /// Whether the size is zero.
    pub const fn is_zero(self) -> bool {
        self.0 == 0
    }
}

impl From<u64> for ByteSize {
    fn from(bytes: u64) -> Self {
        Self(bytes)
    }
}

impl From<ByteSize> for u64 {
    fn from(size: ByteSize) -> Self {
        size.0
    }
}

impl fmt::Display for ByteSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0 != 0 {
            for (unit, factor) in DISPLAY_UNITS {
                if self.0.is_multiple_of(factor) {
                    return write!(f, "{}{unit}", self.0 / factor);
                }
            }
        }
        write!(f, "{}B", self.0)
    }
}

/// Why a string is not a [`ByteSize`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ParseSizeError {
    /// The string is empty or has no leading digits.
    #[error("invalid size `{0}`: expected an integer with an optional unit, such as \"64KiB\"")]
    Malformed(String),
    /// The unit after the number is not one of B, KB, MB, GB, TB, KiB, MiB, GiB, TiB.
    #[error(
        "invalid size `{input}`: unknown unit `{unit}`, expected B, KB, MB, GB, TB, KiB, MiB, GiB or TiB"
    )]
    UnknownUnit {
        /// The whole input.
        input: String,
        /// The unit as written.
        unit: String,
    },
    /// The size does not fit in 64 bits.
    #[error("invalid size `{0}`: larger than 2^64 - 1 bytes")]
    Overflow(String),
}

impl FromStr for ByteSize {
    type Err = ParseSizeError;

    fn from_str(input: &str) -> Result<Self, Self::Err> {
        let trimmed = input.trim();
        let digits_end = trimmed
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(trimmed.len());
        let (digits, rest) = trimmed.split_at(digits_end);
        if digits.is_empty() {
            return Err(ParseSizeError::Malformed(input.to_owned()));
        }
        let number: u64 = digits
            .parse()
            .map_err(|_| ParseSizeError::Overflow(input.to_owned()))?;
        let unit = rest.trim_start();
        let factor = if unit.is_empty() {
            1
        } else {
            let lower = unit.to_ascii_lowercase();
            UNITS
                .iter()
                .find(|(name, _)| *name == lower)
                .map(|&(_, factor)| factor)
                .ok_or_else(|| ParseSizeError::UnknownUnit {
                    input: input.to_owned(),
                    unit: unit.to_owned(),
                })?
        };
        number
            .checked_mul(factor)
            .map(Self)
            .ok_or_else(|| ParseSizeError::Overflow(input.to_owned()))
    }
}

impl Serialize for ByteSize {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        // Zero reads as "none" or "automatic" for most keys: a bare `0` says so best.
        if self.0 == 0 {
            return serializer.serialize_u64(0);
        }
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(ByteSizeVisitor)
    }
}

struct ByteSizeVisitor;

impl Visitor<'_> for ByteSizeVisitor {
    type Value = ByteSize;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a size such as \"64KiB\", \"4MiB\" or a number of bytes")
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<ByteSize, E> {
        Ok(ByteSize(v))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<ByteSize, E> {
        u64::try_from(v).map(ByteSize).map_err(|_| {
            E::custom(format_args!(
                "invalid size {v}: a size cannot be negative; expected a size such as \"64KiB\" \
                 or a number of bytes"
            ))
        })
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<ByteSize, E> {
        v.parse().map_err(E::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_unit() {
        let cases = [
            ("0", 0),
            ("65536", 65536),
            ("12B", 12),
            ("64KiB", 64 << 10),
            ("64kib", 64 << 10),
            ("4 MiB", 4 << 20),
            ("2GiB", 2 << 30),
            ("1TiB", 1 << 40),
            ("1KB", 1_000),
            ("3MB", 3_000_000),
            ("5GB", 5_000_000_000),
            ("1TB", 1_000_000_000_000),
            ("  8KiB ", 8 << 10),
        ];
        for (input, bytes) in cases {
            assert_eq!(input.parse::<ByteSize>(), Ok(ByteSize(bytes)), "{input}");
        }
    }

    #[test]
    fn rejects_malformed_sizes() {
        assert!(matches!(
            "".parse::<ByteSize>(),
            Err(ParseSizeError::Malformed(_))
        ));
        assert!(matches!(
            "KiB".parse::<ByteSize>(),
            Err(ParseSizeError::Malformed(_))
        ));
        assert!(matches!(
            "-1".parse::<ByteSize>(),
            Err(ParseSizeError::Malformed(_))
        ));
        assert!(matches!(
            "1.5MiB".parse::<ByteSize>(),
            Err(ParseSizeError::UnknownUnit { unit, .. }) if unit == ".5MiB"
        ));
        assert!(matches!(
            "64KiBs".parse::<ByteSize>(),
            Err(ParseSizeError::UnknownUnit { .. })
        ));
        assert!(matches!(
            "99999999999999999999".parse::<ByteSize>(),
            Err(ParseSizeError::Overflow(_))
        ));
        assert!(matches!(
            "16777216TiB".parse::<ByteSize>(),
            Err(ParseSizeError::Overflow(_))
        ));
    }

    #[test]
    fn display_round_trips() {
        for bytes in [
            0,
            1,
            1000,
            1024,
            1536,
            65536,
            4 << 20,
            3 << 30,
            1 << 40,
            u64::MAX,
        ] {
            let size = ByteSize(bytes);
            assert_eq!(size.to_string().parse::<ByteSize>(), Ok(size), "{size}");
        }
        assert_eq!(ByteSize::mib(4).to_string(), "4MiB");
        assert_eq!(ByteSize::b(1536).to_string(), "1536B");
    }

    #[test]
    fn constructors_saturate() {
        assert_eq!(ByteSize::gib(u64::MAX).as_u64(), u64::MAX);
        assert!(ByteSize::ZERO.is_zero());
    }
}
