//! Sizes ("512MiB") and durations ("30s"): parsing, the canonical text a profile is stored with,
//! the text sizes are shown with, and the serde and schema glue that lets plain `u64` and
//! [`Duration`] fields accept them.
//!
//! Parsing is exact (integer arithmetic on the written digits, no floats), so "1.5GiB" is
//! 1610612736 bytes and a value that would not be a whole number of bytes or nanoseconds is
//! refused rather than rounded.

use std::fmt;
use std::time::Duration;

use schemars::{json_schema, Schema, SchemaGenerator};
use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serializer};

const SIZE_UNITS: &[(&str, u64)] = &[
    ("b", 1),
    ("kb", 1_000),
    ("mb", 1_000_000),
    ("gb", 1_000_000_000),
    ("tb", 1_000_000_000_000),
    ("kib", 1 << 10),
    ("mib", 1 << 20),
    ("gib", 1 << 30),
    ("tib", 1 << 40),
];

const NANOS_PER_SEC: u128 = 1_000_000_000;

// Largest first: formatting picks the first unit that divides the value exactly.
const DURATION_UNITS: &[(&str, u128)] = &[
    ("d", 86_400 * NANOS_PER_SEC),
    ("h", 3_600 * NANOS_PER_SEC),
    ("m", 60 * NANOS_PER_SEC),
    ("s", NANOS_PER_SEC),
    ("ms", 1_000_000),
    ("us", 1_000),
    ("µs", 1_000),
    ("ns", 1),
];

pub(crate) const SIZE_EXPECTED: &str =
    "a size such as \"512MiB\", \"1GiB\", \"64MB\" or a number of bytes";
pub(crate) const DURATION_EXPECTED: &str =
    "a duration such as \"250ms\", \"30s\", \"5m\" or \"1h\"";

/// A decimal number as written: `int` and the digits after the point (`frac` over 10^`scale`).
/// Kept as integers so that units can be applied without rounding.
struct Decimal {
    int: u128,
    frac: u128,
    scale: u32,
}

impl Decimal {
    /// `self × unit`, or `None` when it is not a whole number or overflows.
    fn times(&self, unit: u128) -> Option<u128> {
        let whole = self.int.checked_mul(unit)?;
        let frac = self.frac.checked_mul(unit)?;
        let denom = 10u128.checked_pow(self.scale)?;
        if !frac.is_multiple_of(denom) {
            return None;
        }
        whole.checked_add(frac / denom)
    }
}

/// Splits a leading decimal number ("1", "1.5") off `s`. Digits are required on both sides of
/// a point, so "1." and ".5" are not numbers; more than 18 fraction digits cannot be exact for
/// any unit here and are refused.
fn split_decimal(s: &str) -> Option<(Decimal, &str)> {
    let int_len = s.bytes().take_while(u8::is_ascii_digit).count();
    if int_len == 0 {
        return None;
    }
    let int = s[..int_len].parse::<u128>().ok()?;
    let rest = &s[int_len..];
    let Some(after_point) = rest.strip_prefix('.') else {
        return Some((
            Decimal {
                int,
                frac: 0,
                scale: 0,
            },
            rest,
        ));
    };
    let frac_len = after_point.bytes().take_while(u8::is_ascii_digit).count();
    if frac_len == 0 || frac_len > 18 {
        return None;
    }
    let frac = after_point[..frac_len].parse::<u128>().ok()?;
    let scale = u32::try_from(frac_len).ok()?;
    Some((Decimal { int, frac, scale }, &after_point[frac_len..]))
}

/// Parses "512MiB", "1.5 GiB", "64MB", "4096" (bytes). Units are case-insensitive: a memory
/// limit has no use for bits, so "mb" can only mean megabytes.
pub fn parse_size(text: &str) -> Option<u64> {
    let (number, rest) = split_decimal(text.trim())?;
    let unit = rest.trim_start().to_ascii_lowercase();
    let factor = if unit.is_empty() {
        1
    } else {
        SIZE_UNITS.iter().find(|(name, _)| *name == unit)?.1
    };
    u64::try_from(number.times(u128::from(factor))?).ok()
}

// Smallest first; the binary units only, since memory comes in pages and pages in powers of two.
// GiB is the largest: a memory or a transfer of this tool is well below a TiB, and a limit
// written "100000GiB" reads back as written.
const DISPLAY_UNITS: &[(&str, u64)] = &[("KiB", 1 << 10), ("MiB", 1 << 20), ("GiB", 1 << 30)];

/// A size for people to read, in the largest binary unit it reaches: "512 MiB", "2 GiB",
/// "1000 B". A whole number of that unit is shown as such, so that [`parse_size`] gives back
/// the same value; otherwise one decimal, rounded down ("1.9 GiB" for 1.99 GiB): a free memory
/// shown never claims more than there is.
pub fn format_size(bytes: u64) -> String {
    let Some((unit, factor)) = DISPLAY_UNITS
        .iter()
        .rev()
        .find(|(_, factor)| bytes >= *factor)
        .copied()
    else {
        return format!("{bytes} B");
    };
    if bytes.is_multiple_of(factor) {
        return format!("{} {unit}", bytes / factor);
    }
    // In u128, so that ten times the largest u64 does not overflow.
    let tenths = u128::from(bytes) * 10 / u128::from(factor);
    format!("{}.{} {unit}", tenths / 10, tenths % 10)
}

/// Parses "250ms", "30s", "1.5s", "5m", "1h", "1d" and sums like "1h30m". A bare number is
/// refused: whether "30" means seconds or milliseconds is exactly the mistake to catch.
pub fn parse_duration(text: &str) -> Option<Duration> {
    let mut rest = text.trim();
    if rest.is_empty() {
        return None;
    }
    let mut total: u128 = 0;
    while !rest.is_empty() {
        let (number, after) = split_decimal(rest)?;
        let unit_len = after
            .char_indices()
            .find(|(_, c)| !c.is_alphabetic())
            .map_or(after.len(), |(i, _)| i);
        let unit = &after[..unit_len];
        let factor = DURATION_UNITS.iter().find(|(name, _)| *name == unit)?.1;
        total = total.checked_add(number.times(factor)?)?;
        rest = &after[unit_len..];
    }
    let secs = u64::try_from(total / NANOS_PER_SEC).ok()?;
    let nanos = u32::try_from(total % NANOS_PER_SEC).ok()?;
    Some(Duration::new(secs, nanos))
}

/// The canonical text of a duration: one integer in the largest unit that holds it exactly,
/// so that [`parse_duration`] gives back the same value.
pub fn format_duration(d: Duration) -> String {
    let nanos = d.as_nanos();
    if nanos == 0 {
        return "0s".to_owned();
    }
    // "ns" divides everything, so the search always ends.
    let (unit, factor) = DURATION_UNITS
        .iter()
        .filter(|(name, _)| *name != "µs")
        .find(|(_, factor)| nanos.is_multiple_of(*factor))
        .copied()
        .unwrap_or(("ns", 1));
    format!("{}{unit}", nanos / factor)
}

/// Serde adapters for bytes written as a size. Reads a size string or a non-negative integer;
/// writes the integer.
pub mod size {
    use super::*;

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<u64, D::Error> {
        deserializer.deserialize_any(SizeVisitor)
    }

    struct SizeVisitor;

    impl Visitor<'_> for SizeVisitor {
        type Value = u64;

        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str(SIZE_EXPECTED)
        }

        fn visit_u64<E: de::Error>(self, v: u64) -> Result<u64, E> {
            Ok(v)
        }

        fn visit_i64<E: de::Error>(self, v: i64) -> Result<u64, E> {
            u64::try_from(v).map_err(|_| E::custom(format!("expected {SIZE_EXPECTED}, got {v}")))
        }

        fn visit_str<E: de::Error>(self, v: &str) -> Result<u64, E> {
            parse_size(v).ok_or_else(|| E::custom(format!("expected {SIZE_EXPECTED}, got {v:?}")))
        }
    }

    pub fn schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "description": "A size: an integer number of bytes, or a string such as \"512MiB\", \"1.5GiB\" or \"64MB\" (units B, KB, MB, GB, TB = powers of 1000; KiB, MiB, GiB, TiB = powers of 1024; case-insensitive).",
            "oneOf": [
                { "type": "integer", "minimum": 0 },
                { "type": "string", "pattern": "^\\s*[0-9]+(\\.[0-9]+)?\\s*([Bb]|[KkMmGgTt][Ii]?[Bb])?\\s*$" }
            ]
        })
    }

    /// The same for `Option<u64>`; `None` is never written (fields skip it).
    pub mod option {
        use super::*;

        pub fn serialize<S: Serializer>(
            value: &Option<u64>,
            serializer: S,
        ) -> Result<S::Ok, S::Error> {
            match value {
                Some(v) => serializer.serialize_some(v),
                None => serializer.serialize_none(),
            }
        }

        pub fn deserialize<'de, D: Deserializer<'de>>(
            deserializer: D,
        ) -> Result<Option<u64>, D::Error> {
            #[derive(Deserialize)]
            struct Wrapped(#[serde(deserialize_with = "super::deserialize")] u64);
            Ok(Option::<Wrapped>::deserialize(deserializer)?.map(|w| w.0))
        }
    }
}

/// Serde adapters for a [`Duration`] written as a duration string (both ways).
pub mod duration {
    use super::*;

    pub fn serialize<S: Serializer>(value: &Duration, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&format_duration(*value))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
        deserializer.deserialize_any(DurationVisitor)
    }

    struct DurationVisitor;

    impl Visitor<'_> for DurationVisitor {
        type Value = Duration;

        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str(DURATION_EXPECTED)
        }

        fn visit_str<E: de::Error>(self, v: &str) -> Result<Duration, E> {
            parse_duration(v)
                .ok_or_else(|| E::custom(format!("expected {DURATION_EXPECTED}, got {v:?}")))
        }

        // A number without a unit is the most likely mistake; say which units exist.
        fn visit_i64<E: de::Error>(self, v: i64) -> Result<Duration, E> {
            Err(E::custom(format!(
                "expected {DURATION_EXPECTED} (a string with a unit), got {v}"
            )))
        }

        fn visit_u64<E: de::Error>(self, v: u64) -> Result<Duration, E> {
            Err(E::custom(format!(
                "expected {DURATION_EXPECTED} (a string with a unit), got {v}"
            )))
        }

        fn visit_f64<E: de::Error>(self, v: f64) -> Result<Duration, E> {
            Err(E::custom(format!(
                "expected {DURATION_EXPECTED} (a string with a unit), got {v}"
            )))
        }
    }

    pub fn schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "description": "A duration: a string of one or more numbers with units, such as \"250ms\", \"30s\", \"1.5s\", \"5m\", \"1h30m\" (units ns, us, ms, s, m, h, d).",
            "type": "string",
            "pattern": "^\\s*([0-9]+(\\.[0-9]+)?(ns|us|µs|ms|s|m|h|d))+\\s*$"
        })
    }

    /// The same for `Option<Duration>`; `None` is never written (fields skip it).
    pub mod option {
        use super::*;

        pub fn serialize<S: Serializer>(
            value: &Option<Duration>,
            serializer: S,
        ) -> Result<S::Ok, S::Error> {
            match value {
                Some(d) => serializer.serialize_some(&format_duration(*d)),
                None => serializer.serialize_none(),
            }
        }

        pub fn deserialize<'de, D: Deserializer<'de>>(
            deserializer: D,
        ) -> Result<Option<Duration>, D::Error> {
            #[derive(Deserialize)]
            struct Wrapped(#[serde(deserialize_with = "super::deserialize")] Duration);
            Ok(Option::<Wrapped>::deserialize(deserializer)?.map(|w| w.0))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn format_size_reads_back_for_whole_units() {
        for bytes in [
            0,
            1,
            1000,
            1023,
            1 << 10,
            64 << 10,
            1 << 20,
            512 << 20,
            1536 << 20,
            1 << 30,
            2 << 30,
            100_000 << 30,
        ] {
            let text = format_size(bytes);
            assert_eq!(parse_size(&text), Some(bytes), "{bytes} shown as {text:?}");
        }
    }

    #[test]
    fn format_size_picks_the_largest_unit_and_rounds_down() {
        assert_eq!(format_size(0), "0 B");
        assert_eq!(format_size(1000), "1000 B");
        assert_eq!(format_size(1536), "1.5 KiB");
        assert_eq!(format_size(512 << 20), "512 MiB");
        assert_eq!(format_size(1536 << 20), "1.5 GiB");
        assert_eq!(format_size(2 << 30), "2 GiB");
        assert_eq!(format_size(100_000 << 30), "100000 GiB");
        // Just below 2 GiB is not "2.0 GiB".
        assert_eq!(format_size((2 << 30) - 1), "1.9 GiB");
        // Not whole, so it keeps its decimal even when that is 0.
        assert_eq!(format_size((1 << 20) + 1), "1.0 MiB");
        assert_eq!(format_size(u64::MAX), "17179869183.9 GiB");
    }
}
