//! Sizes and durations as people write them in the file (`1MiB`, `512KiB`, `500ms`, `5m`),
//! and as `tailrace check` prints them back.

use std::fmt;
use std::time::Duration;

use serde::de::{self, Deserializer};
use serde::{Deserialize, Serialize, Serializer};

/// A byte count written `1MiB`, `512KiB`, `64MB` or a plain number of bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct ByteSize(pub u64);

impl ByteSize {
    pub fn parse(s: &str) -> Result<Self, String> {
        let s = s.trim();
        let split = s
            .find(|c: char| !c.is_ascii_digit() && c != '.')
            .unwrap_or(s.len());
        let (number, unit) = (&s[..split], s[split..].trim());
        let number: f64 = number
            .parse()
            .map_err(|_| format!("`{s}` is not a size: expected a number and a unit, like 1MiB"))?;
        let factor: u64 = match unit.to_ascii_lowercase().as_str() {
            "" | "b" => 1,
            "kb" => 1000,
            "kib" | "k" => 1024,
            "mb" => 1000 * 1000,
            "mib" | "m" => 1024 * 1024,
            "gb" => 1000 * 1000 * 1000,
            "gib" | "g" => 1024 * 1024 * 1024,
            _ => {
                return Err(format!(
                    "`{s}`: unknown size unit `{unit}` (use B, KiB, MiB, GiB, KB, MB, GB)"
                ));
            }
        };
        Ok(Self((number * factor as f64) as u64))
    }
}

impl fmt::Display for ByteSize {
    /// The largest binary unit that divides the size exactly, so it reads back the same.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (unit, factor) in [("GiB", 1u64 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)] {
            if self.0 >= factor && self.0 % factor == 0 {
                return write!(f, "{}{unit}", self.0 / factor);
            }
        }
        write!(f, "{}B", self.0)
    }
}

impl Serialize for ByteSize {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl de::Visitor<'_> for V {
            type Value = ByteSize;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a size such as 1MiB, 512KiB or a number of bytes")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<ByteSize, E> {
                Ok(ByteSize(v))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<ByteSize, E> {
                u64::try_from(v)
                    .map(ByteSize)
                    .map_err(|_| E::custom("a size cannot be negative"))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<ByteSize, E> {
                ByteSize::parse(v).map_err(E::custom)
            }
        }
        d.deserialize_any(V)
    }
}

/// A duration written `500ms`, `5s`, `5m`, `1h`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct HumanDuration(pub Duration);

impl HumanDuration {
    pub fn parse(s: &str) -> Result<Self, String> {
        let s = s.trim();
        let split = s
            .find(|c: char| !c.is_ascii_digit() && c != '.')
            .unwrap_or(s.len());
        let (number, unit) = (&s[..split], &s[split..]);
        let number: f64 = number.parse().map_err(|_| {
            format!("`{s}` is not a duration: expected a number and a unit, like 5s")
        })?;
        let seconds = match unit {
            "ms" => number / 1000.0,
            "s" => number,
            "m" => number * 60.0,
            "h" => number * 3600.0,
            "" => return Err(format!("`{s}`: a duration needs a unit (ms, s, m, h)")),
            _ => {
                return Err(format!(
                    "`{s}`: unknown duration unit `{unit}` (use ms, s, m, h)"
                ));
            }
        };
        Duration::try_from_secs_f64(seconds)
            .map(Self)
            .map_err(|_| format!("`{s}` is out of range"))
    }
}

impl fmt::Display for HumanDuration {
    /// The largest unit that divides the duration exactly, so it reads back the same.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ms = self.0.as_millis();
        for (unit, factor) in [("h", 3_600_000u128), ("m", 60_000), ("s", 1000)] {
            if ms >= factor && ms % factor == 0 {
                return write!(f, "{}{unit}", ms / factor);
            }
        }
        write!(f, "{ms}ms")
    }
}

impl Serialize for HumanDuration {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for HumanDuration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        HumanDuration::parse(&s).map_err(de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_durations_parse() {
        assert_eq!(ByteSize::parse("512KiB").unwrap(), ByteSize(512 * 1024));
        assert_eq!(ByteSize::parse("1.5MiB").unwrap(), ByteSize(1_572_864));
        assert_eq!(ByteSize::parse("64MB").unwrap(), ByteSize(64_000_000));
        assert_eq!(ByteSize::parse("4096").unwrap(), ByteSize(4096));
        assert!(
            ByteSize::parse("12 parsecs")
                .unwrap_err()
                .contains("unknown size unit")
        );
        assert_eq!(
            HumanDuration::parse("500ms").unwrap().0,
            Duration::from_millis(500)
        );
        assert_eq!(
            HumanDuration::parse("5m").unwrap().0,
            Duration::from_secs(300)
        );
        assert!(
            HumanDuration::parse("5")
                .unwrap_err()
                .contains("needs a unit")
        );
        assert!(HumanDuration::parse("1e300h").is_err());
    }

    #[test]
    fn printed_forms_read_back_the_same() {
        for s in ["1MiB", "512KiB", "3B", "1000B", "2GiB", "1536KiB"] {
            let size = ByteSize::parse(s).unwrap();
            assert_eq!(size.to_string(), s);
        }
        for s in ["500ms", "5s", "5m", "1h", "90s", "1500ms"] {
            let d = HumanDuration::parse(s).unwrap();
            assert_eq!(d.to_string(), s);
        }
    }
}
