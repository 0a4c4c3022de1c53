//! The version value and its wire form.

use std::fmt;
use std::str::FromStr;

use thiserror::Error;

/// Bytes of a version's wire form, at most (20 + 1 + 10 + 1 + 16).
pub const WIRE_BYTES_MAX: usize = 48;

/// A levee instance's id: random, 64 bits, shown as 16 hex digits. Zero is
/// reserved for versions derived from records written before versions
/// existed (see `Version::legacy`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct InstanceId(pub u64);

impl fmt::Display for InstanceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

/// A write's version; ordered by `physical_ms`, then `logical`, then
/// `instance` (the derived order follows the field order).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Version {
    /// Milliseconds since the Unix epoch, as the issuing clock saw them.
    pub physical_ms: u64,
    /// Orders versions issued within the same `physical_ms`.
    pub logical: u32,
    /// The issuing levee instance.
    pub instance: InstanceId,
}

impl Version {
    /// Older than every issued version: what a value written without a
    /// version (directly, not through levee) is stored with.
    pub const ZERO: Version = Version {
        physical_ms: 0,
        logical: 0,
        instance: InstanceId(0),
    };

    /// The version given to a write logged before versions existed: its
    /// acceptance time, the low 32 bits of its LSN, instance zero. Any
    /// version issued now by a clock at or after that time is newer.
    pub fn legacy(accepted_unix_ms: u64, lsn: u64) -> Version {
        Version {
            physical_ms: accepted_unix_ms,
            logical: lsn as u32,
            instance: InstanceId(0),
        }
    }

    /// Parses the wire form `<physical_ms>.<logical>.<16 hex digits>`.
    pub fn parse(text: &str) -> Result<Version, ParseError> {
        if text.len() > WIRE_BYTES_MAX {
            return Err(ParseError::TooLong { bytes: text.len() });
        }
        let mut parts = text.split('.');
        let (Some(physical), Some(logical), Some(instance), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(ParseError::Shape);
        };
        Ok(Version {
            physical_ms: decimal(physical, "physical_ms")?,
            logical: u32::try_from(decimal(logical, "logical")?)
                .map_err(|_| ParseError::Field { field: "logical" })?,
            instance: InstanceId(hex16(instance)?),
        })
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.physical_ms, self.logical, self.instance)
    }
}

impl FromStr for Version {
    type Err = ParseError;
    fn from_str(text: &str) -> Result<Version, ParseError> {
        Version::parse(text)
    }
}

/// Why a version's wire form did not parse.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ParseError {
    #[error("a version is at most {WIRE_BYTES_MAX} bytes, this one is {bytes}")]
    TooLong { bytes: usize },
    #[error("a version is <physical_ms>.<logical>.<16 hex digits>")]
    Shape,
    #[error("the {field} part of the version is not a decimal number in range")]
    Field { field: &'static str },
    #[error("the instance part of the version is not 16 lower-case hex digits")]
    Instance,
}

/// A decimal u64 without sign, spaces or leading zeros (except "0").
fn decimal(text: &str, field: &'static str) -> Result<u64, ParseError> {
    let canonical = !text.is_empty()
        && text.bytes().all(|b| b.is_ascii_digit())
        && (text == "0" || !text.starts_with('0'));
    if !canonical {
        return Err(ParseError::Field { field });
    }
    text.parse().map_err(|_| ParseError::Field { field })
}

fn hex16(text: &str) -> Result<u64, ParseError> {
    let canonical =
        text.len() == 16 && text.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
    if !canonical {
        return Err(ParseError::Instance);
    }
    u64::from_str_radix(text, 16).map_err(|_| ParseError::Instance)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn wire_form_round_trips_and_orders() {
        let v = Version {
            physical_ms: 1_764_590_400_123,
            logical: 7,
            instance: InstanceId(0x9f3a_0c1d_2e4b_5a6c),
        };
        assert_eq!(v.to_string(), "1764590400123.7.9f3a0c1d2e4b5a6c");
        assert_eq!(Version::parse(&v.to_string()), Ok(v));
        assert!(Version::ZERO < v);
        let later = Version {
            logical: 8,
            instance: InstanceId(0),
            ..v
        };
        assert!(later > v, "logical orders before instance");
    }

    #[test]
    fn malformed_versions_are_refused() {
        for bad in [
            "",
            "1",
            "1.2",
            "1.2.3",
            "1.2.9f3a0c1d2e4b5a6c.4",
            "01.2.9f3a0c1d2e4b5a6c",
            "+1.2.9f3a0c1d2e4b5a6c",
            "1.4294967296.9f3a0c1d2e4b5a6c",
            "1.2.9F3A0C1D2E4B5A6C",
            "1.2.9f3a0c1d2e4b5a6",
            "18446744073709551616.0.0000000000000000",
            " 1.2.9f3a0c1d2e4b5a6c",
        ] {
            assert!(Version::parse(bad).is_err(), "{bad:?} parsed");
        }
        assert!(Version::parse(&"9".repeat(100)).is_err());
    }

    proptest! {
        #[test]
        fn any_version_round_trips(p in any::<u64>(), l in any::<u32>(), i in any::<u64>()) {
            let v = Version { physical_ms: p, logical: l, instance: InstanceId(i) };
            let text = v.to_string();
            prop_assert!(text.len() <= WIRE_BYTES_MAX);
            prop_assert_eq!(Version::parse(&text), Ok(v));
        }

        #[test]
        fn parse_never_panics(text in ".{0,64}") {
            let _ = Version::parse(&text);
        }
    }
}
