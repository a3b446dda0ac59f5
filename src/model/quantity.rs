//! CPU and memory quantities written the way Kubernetes writes them: `500m`
//! or `0.5` CPUs, `128Mi` or `512M` bytes. Parsing is exact (decimal digits
//! are never routed through floating point), so `0.1` CPU is 100 millicores
//! and `1.5Gi` is 1610612736 bytes.
//!
//! What is accepted:
//! - CPU: a decimal number of CPUs (`2`, `0.5`, `.25`) or of millicores with
//!   the `m` suffix (`500m`). Anything finer than 1m is rejected, as the
//!   Kubernetes documentation says ("precision finer than 1m is not
//!   allowed"). The other Kubernetes suffixes (`1k` CPUs, exponents) are not
//!   accepted for CPU: nobody means them, and a typo there should not pass.
//! - Memory: plain bytes (`1000000`), binary suffixes `Ki Mi Gi Ti Pi Ei`,
//!   decimal suffixes `k M G T P E`, or a decimal exponent (`1e9`, `12E6`).
//!   A fractional number of bytes is rounded up to the next whole byte, as
//!   Kubernetes does (`1.1Ki` is 1127). Kubernetes' `m` (milli-bytes) is
//!   rejected: `400m` of memory is almost always a typo for `400Mi`.
//!
//! This module does no IO.

use std::fmt;
use std::str::FromStr;

use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize, Serializer};

/// What a CPU quantity may look like, quoted in every CPU error.
pub const CPU_ACCEPTED: &str =
    "a number of CPUs (`2`, `0.5`) or millicores with the `m` suffix (`500m`)";

/// What a memory quantity may look like, quoted in every memory error.
pub const MEMORY_ACCEPTED: &str = "bytes (`1000000`), or a number with a binary suffix \
     Ki, Mi, Gi, Ti, Pi, Ei (`128Mi`, `1.5Gi`), a decimal suffix k, M, G, T, P, E (`512M`) \
     or an exponent (`1e9`)";

/// The most significant digits a quantity may carry. Thirty decimal digits
/// stay far inside `u128` even after the largest multiplier (2^60 or 10^18),
/// so the arithmetic below cannot overflow before it checks the range.
const DIGITS_MAX: usize = 30;

/// The largest decimal exponent accepted in `1e9` notation: 10^19 already
/// exceeds `u64`, so anything bigger is an overflow anyway.
const EXPONENT_MAX: u32 = 30;

/// Why a quantity was rejected. Every message says what would be accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QuantityError {
    /// Nothing was written.
    #[error("empty quantity; expected {accepted}")]
    Empty {
        /// What would have been accepted.
        accepted: &'static str,
    },
    /// A leading minus sign.
    #[error("{text:?} is negative; expected {accepted}")]
    Negative {
        /// The quantity as written.
        text: String,
        /// What would have been accepted.
        accepted: &'static str,
    },
    /// No digits where the number should be, or more than one decimal point.
    #[error("{text:?} is not a number; expected {accepted}")]
    NotANumber {
        /// The quantity as written.
        text: String,
        /// What would have been accepted.
        accepted: &'static str,
    },
    /// A unit that this kind of quantity does not take.
    #[error("{text:?} has an unknown suffix {suffix:?}; expected {accepted}")]
    BadSuffix {
        /// The quantity as written.
        text: String,
        /// The part after the number.
        suffix: String,
        /// What would have been accepted.
        accepted: &'static str,
    },
    /// Kubernetes' `m` (thousandths) on a memory quantity.
    #[error(
        "{text:?} would mean thousandths of a byte, which is not accepted; did you mean \
         {number}Mi? expected {accepted}"
    )]
    MilliBytes {
        /// The quantity as written.
        text: String,
        /// The number before the `m`.
        number: String,
        /// What would have been accepted.
        accepted: &'static str,
    },
    /// Larger than `u64`, or with more significant digits than the 30 read.
    #[error("{text:?} is too large (or has too many digits); at most {max} is accepted")]
    Overflow {
        /// The quantity as written.
        text: String,
        /// The largest accepted value, formatted.
        max: String,
    },
    /// A CPU quantity finer than one millicore.
    #[error("{text:?} is finer than 1m (a thousandth of a CPU); expected {accepted}")]
    TooPrecise {
        /// The quantity as written.
        text: String,
        /// What would have been accepted.
        accepted: &'static str,
    },
}

type Result<T> = std::result::Result<T, QuantityError>;

/// An exact non-negative decimal: `mantissa / 10^scale`.
struct Decimal {
    mantissa: u128,
    scale: u32,
}

/// Splits `text` into its number and its suffix and reads the number
/// exactly. Accepts an optional `+`, digits with at most one `.`, and needs at
/// least one digit (`5`, `5.`, `.5`, `5.25`).
fn split_number<'a>(text: &'a str, accepted: &'static str) -> Result<(Decimal, &'a str)> {
    if text.is_empty() {
        return Err(QuantityError::Empty { accepted });
    }
    if text.starts_with('-') {
        return Err(QuantityError::Negative {
            text: text.to_string(),
            accepted,
        });
    }
    let unsigned = text.strip_prefix('+').unwrap_or(text);
    let number_len = unsigned
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(unsigned.len());
    let (number, suffix) = unsigned.split_at(number_len);
    let not_a_number = || QuantityError::NotANumber {
        text: text.to_string(),
        accepted,
    };
    let (integer_digits, fraction_digits) = match number.split_once('.') {
        Some((integer, fraction)) => (integer, fraction),
        None => (number, ""),
    };
    if fraction_digits.contains('.') || (integer_digits.is_empty() && fraction_digits.is_empty()) {
        return Err(not_a_number());
    }
    // Zeros that change nothing must not count against DIGITS_MAX.
    let integer_digits = integer_digits.trim_start_matches('0');
    let fraction_digits = fraction_digits.trim_end_matches('0');
    let digits_len = integer_digits.len() + fraction_digits.len();
    if digits_len > DIGITS_MAX {
        return Err(QuantityError::Overflow {
            text: text.to_string(),
            max: u64::MAX.to_string(),
        });
    }
    let mut mantissa: u128 = 0;
    for digit in integer_digits.bytes().chain(fraction_digits.bytes()) {
        // Cannot overflow: at most DIGITS_MAX (30) digits, and u128 holds 38.
        mantissa = mantissa * 10 + u128::from(digit - b'0');
    }
    let scale = u32::try_from(fraction_digits.len()).map_err(|_| not_a_number())?;
    Ok((Decimal { mantissa, scale }, suffix))
}

/// Parses a CPU quantity into millicores.
pub fn parse_cpu_millis(text: &str) -> Result<u64> {
    let (decimal, suffix) = split_number(text, CPU_ACCEPTED)?;
    // Millicores = mantissa * factor / 10^scale, with factor 1000 for whole
    // CPUs and 1 for the `m` suffix.
    let factor: u128 = match suffix {
        "" => 1000,
        "m" => 1,
        _ => {
            return Err(QuantityError::BadSuffix {
                text: text.to_string(),
                suffix: suffix.to_string(),
                accepted: CPU_ACCEPTED,
            })
        }
    };
    let overflow = || QuantityError::Overflow {
        text: text.to_string(),
        max: format_cpu_millis(u64::MAX),
    };
    // scale <= DIGITS_MAX, so 10^scale fits in u128.
    let denominator = 10u128.pow(decimal.scale);
    let numerator = decimal.mantissa.checked_mul(factor).ok_or_else(overflow)?;
    if numerator % denominator != 0 {
        return Err(QuantityError::TooPrecise {
            text: text.to_string(),
            accepted: CPU_ACCEPTED,
        });
    }
    u64::try_from(numerator / denominator).map_err(|_| overflow())
}

/// Parses a memory quantity into bytes (fractions of a byte round up).
pub fn parse_memory_bytes(text: &str) -> Result<u64> {
    let (decimal, suffix) = split_number(text, MEMORY_ACCEPTED)?;
    let bad_suffix = || QuantityError::BadSuffix {
        text: text.to_string(),
        suffix: suffix.to_string(),
        accepted: MEMORY_ACCEPTED,
    };
    // bytes = mantissa * multiplier / 10^(scale + negative exponent).
    let (multiplier, extra_scale): (u128, u32) = match suffix {
        "" => (1, 0),
        "Ki" => (1 << 10, 0),
        "Mi" => (1 << 20, 0),
        "Gi" => (1 << 30, 0),
        "Ti" => (1 << 40, 0),
        "Pi" => (1 << 50, 0),
        "Ei" => (1 << 60, 0),
        "k" => (1_000, 0),
        "M" => (1_000_000, 0),
        "G" => (1_000_000_000, 0),
        "T" => (1_000_000_000_000, 0),
        "P" => (1_000_000_000_000_000, 0),
        "E" => (1_000_000_000_000_000_000, 0),
        "m" => {
            return Err(QuantityError::MilliBytes {
                text: text.to_string(),
                number: text[..text.len() - 1].to_string(),
                accepted: MEMORY_ACCEPTED,
            })
        }
        _ => {
            let exponent = suffix
                .strip_prefix('e')
                .or_else(|| suffix.strip_prefix('E'))
                .ok_or_else(bad_suffix)?;
            let (negative, digits) = match exponent.as_bytes().first() {
                Some(b'-') => (true, &exponent[1..]),
                Some(b'+') => (false, &exponent[1..]),
                _ => (false, exponent),
            };
            if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
                return Err(bad_suffix());
            }
            let value: u32 = digits
                .parse()
                .ok()
                .filter(|value| *value <= EXPONENT_MAX)
                .ok_or_else(|| QuantityError::Overflow {
                    text: text.to_string(),
                    max: u64::MAX.to_string(),
                })?;
            if negative {
                (1, value)
            } else {
                (10u128.pow(value), 0)
            }
        }
    };
    let overflow = || QuantityError::Overflow {
        text: text.to_string(),
        max: u64::MAX.to_string(),
    };
    let numerator = decimal
        .mantissa
        .checked_mul(multiplier)
        .ok_or_else(overflow)?;
    // scale + extra_scale <= 60; 10^60 does not fit, so bound it first.
    let scale = decimal.scale + extra_scale;
    let bytes = match 10u128.checked_pow(scale) {
        Some(denominator) => numerator.div_ceil(denominator),
        // A denominator beyond u128 with a numerator inside it: the value is
        // a positive fraction of a byte (or zero), which rounds up to 1.
        None => u128::from(numerator != 0),
    };
    u64::try_from(bytes).map_err(|_| overflow())
}

/// Formats millicores the shortest way that parses back to the same value:
/// whole CPUs as `2`, everything else as `500m`.
pub fn format_cpu_millis(millis: u64) -> String {
    if millis.is_multiple_of(1000) {
        format!("{}", millis / 1000)
    } else {
        format!("{millis}m")
    }
}

/// Formats bytes as the shortest of: the largest binary suffix that divides
/// them exactly (`128Mi`), the largest such decimal one (`512M`), plain
/// bytes. Binary wins ties, since memory is mostly sized in powers of two.
pub fn format_memory_bytes(bytes: u64) -> String {
    const BINARY: [(&str, u64); 6] = [
        ("Ei", 1 << 60),
        ("Pi", 1 << 50),
        ("Ti", 1 << 40),
        ("Gi", 1 << 30),
        ("Mi", 1 << 20),
        ("Ki", 1 << 10),
    ];
    const DECIMAL: [(&str, u64); 6] = [
        ("E", 1_000_000_000_000_000_000),
        ("P", 1_000_000_000_000_000),
        ("T", 1_000_000_000_000),
        ("G", 1_000_000_000),
        ("M", 1_000_000),
        ("k", 1_000),
    ];
    if bytes == 0 {
        return "0".to_string();
    }
    let largest_exact = |units: &[(&str, u64)]| {
        units
            .iter()
            .find(|(_, unit)| bytes.is_multiple_of(*unit))
            .map(|(suffix, unit)| format!("{}{suffix}", bytes / unit))
    };
    [largest_exact(&BINARY), largest_exact(&DECIMAL)]
        .into_iter()
        .flatten()
        .chain(std::iter::once(bytes.to_string()))
        .min_by_key(String::len)
        .unwrap_or_default()
}

/// A CPU amount in millicores (1000 = one CPU).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct CpuMillis(pub u64);

/// A memory amount in bytes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct MemoryBytes(pub u64);

impl FromStr for CpuMillis {
    type Err = QuantityError;
    fn from_str(text: &str) -> Result<Self> {
        parse_cpu_millis(text).map(CpuMillis)
    }
}

impl FromStr for MemoryBytes {
    type Err = QuantityError;
    fn from_str(text: &str) -> Result<Self> {
        parse_memory_bytes(text).map(MemoryBytes)
    }
}

impl fmt::Display for CpuMillis {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&format_cpu_millis(self.0))
    }
}

impl fmt::Display for MemoryBytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&format_memory_bytes(self.0))
    }
}

// Quantities serialize as their canonical text so that a stored spec reads
// the way a user would write it, and parses back to the same value.
impl Serialize for CpuMillis {
    fn serialize<S: Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.to_string())
    }
}

impl Serialize for MemoryBytes {
    fn serialize<S: Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.to_string())
    }
}

/// Reads a quantity from a string or a number. `deserialize_str` makes
/// serde_yaml hand over the scalar exactly as written (`0.10` stays `0.10`),
/// so no digit goes through floating point; the number visitors serve the
/// formats that only have typed numbers (JSON).
struct QuantityVisitor<T> {
    parse: fn(&str) -> Result<T>,
    expecting: &'static str,
}

impl<T> Visitor<'_> for QuantityVisitor<T> {
    type Value = T;

    fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(self.expecting)
    }

    fn visit_str<E: de::Error>(self, text: &str) -> std::result::Result<T, E> {
        (self.parse)(text.trim()).map_err(E::custom)
    }

    fn visit_u64<E: de::Error>(self, value: u64) -> std::result::Result<T, E> {
        self.visit_str(&value.to_string())
    }

    fn visit_i64<E: de::Error>(self, value: i64) -> std::result::Result<T, E> {
        self.visit_str(&value.to_string())
    }

    fn visit_f64<E: de::Error>(self, value: f64) -> std::result::Result<T, E> {
        // Display prints the shortest text that reads back as this f64,
        // which is what the writer typed for any sane quantity.
        self.visit_str(&value.to_string())
    }
}

impl<'de> Deserialize<'de> for CpuMillis {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> std::result::Result<Self, D::Error> {
        deserializer.deserialize_str(QuantityVisitor {
            parse: |text| parse_cpu_millis(text).map(CpuMillis),
            expecting: CPU_ACCEPTED,
        })
    }
}

impl<'de> Deserialize<'de> for MemoryBytes {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> std::result::Result<Self, D::Error> {
        deserializer.deserialize_str(QuantityVisitor {
            parse: |text| parse_memory_bytes(text).map(MemoryBytes),
            expecting: MEMORY_ACCEPTED,
        })
    }
}

#[cfg(test)]
mod tests;
