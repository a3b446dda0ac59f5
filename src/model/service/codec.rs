//! How the fields that are not plain serde read and print: durations as
//! humantime text, placement constraints as `node.labels.KEY == VALUE`,
//! spread as `true`/`false`/`node.labels.KEY`. Each error says what is
//! accepted.

use std::fmt;

use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize, Serializer};

use super::types::{Constraint, ConstraintOperator, Spread};
use super::validate::{valid_label_key, valid_label_value};

/// Durations as humantime text (`1s`, `500ms`, `5m`).
pub(super) mod humantime_serde_duration {
    use std::fmt;
    use std::time::Duration;

    use serde::de::{self, Deserializer, Visitor};
    use serde::Serializer;

    pub(in crate::model::service) fn serialize<S: Serializer>(
        duration: &Duration,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&humantime::format_duration(*duration).to_string())
    }

    pub(in crate::model::service) fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Duration, D::Error> {
        struct DurationVisitor;
        impl Visitor<'_> for DurationVisitor {
            type Value = Duration;
            fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
                formatter.write_str("a duration such as `500ms`, `1s`, `5m` or `1h 30m`")
            }
            fn visit_str<E: de::Error>(self, text: &str) -> Result<Duration, E> {
                humantime::parse_duration(text).map_err(|error| {
                    E::custom(format!(
                        "{text:?} is not a duration ({error}); expected a number with a unit, \
                         such as `500ms`, `1s`, `5m` or `1h 30m`"
                    ))
                })
            }
        }
        deserializer.deserialize_str(DurationVisitor)
    }
}

/// Optional durations, as [`humantime_serde_duration`] reads and prints
/// them (a field left out reads as None).
pub(super) mod humantime_serde_option {
    use std::time::Duration;

    use serde::{Deserializer, Serializer};

    pub(in crate::model::service) fn serialize<S: Serializer>(
        duration: &Option<Duration>,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        match duration {
            Some(duration) => super::humantime_serde_duration::serialize(duration, serializer),
            None => serializer.serialize_none(),
        }
    }

    pub(in crate::model::service) fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Option<Duration>, D::Error> {
        super::humantime_serde_duration::deserialize(deserializer).map(Some)
    }
}

/// The prefix that names a node label, in constraints and in `spread`.
const NODE_LABEL_PREFIX: &str = "node.labels.";

const CONSTRAINT_ACCEPTED: &str =
    "`node.labels.KEY == VALUE` or `node.labels.KEY != VALUE`, e.g. `node.labels.zone == north`";

impl std::str::FromStr for Constraint {
    type Err = String;

    /// Reads `node.labels.KEY ==|!= VALUE`; the error says what is accepted.
    fn from_str(text: &str) -> Result<Self, String> {
        let (operator, position) = match (text.find("=="), text.find("!=")) {
            (Some(position), None) => (ConstraintOperator::Equal, position),
            (None, Some(position)) => (ConstraintOperator::NotEqual, position),
            _ => {
                return Err(format!(
                    "constraint {text:?} needs exactly one `==` or `!=`; expected {CONSTRAINT_ACCEPTED}"
                ))
            }
        };
        let left = text[..position].trim();
        let value = text[position + 2..].trim();
        let Some(label) = left.strip_prefix(NODE_LABEL_PREFIX) else {
            return Err(format!(
                "constraint {text:?} must compare a node label; expected {CONSTRAINT_ACCEPTED}"
            ));
        };
        if !valid_label_key(label) {
            return Err(format!(
                "constraint {text:?} has an invalid label key {label:?} (1-253 of \
                 `[A-Za-z0-9._/-]`); expected {CONSTRAINT_ACCEPTED}"
            ));
        }
        if !valid_label_value(value) || value.is_empty() {
            return Err(format!(
                "constraint {text:?} has an invalid value {value:?} (1-63 of `[A-Za-z0-9._-]`); \
                 expected {CONSTRAINT_ACCEPTED}"
            ));
        }
        Ok(Constraint {
            label: label.to_string(),
            operator,
            value: value.to_string(),
        })
    }
}

impl fmt::Display for Constraint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let operator = match self.operator {
            ConstraintOperator::Equal => "==",
            ConstraintOperator::NotEqual => "!=",
        };
        write!(
            f,
            "{NODE_LABEL_PREFIX}{} {operator} {}",
            self.label, self.value
        )
    }
}

impl Serialize for Constraint {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Constraint {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ConstraintVisitor;
        impl Visitor<'_> for ConstraintVisitor {
            type Value = Constraint;
            fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
                formatter.write_str(CONSTRAINT_ACCEPTED)
            }
            fn visit_str<E: de::Error>(self, text: &str) -> Result<Constraint, E> {
                text.parse().map_err(E::custom)
            }
        }
        deserializer.deserialize_str(ConstraintVisitor)
    }
}

const SPREAD_ACCEPTED: &str = "`true`, `false` or `node.labels.KEY`";

impl Serialize for Spread {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Spread::None => serializer.serialize_bool(false),
            Spread::Nodes => serializer.serialize_bool(true),
            Spread::Label(label) => {
                serializer.serialize_str(&format!("{NODE_LABEL_PREFIX}{label}"))
            }
        }
    }
}

impl<'de> Deserialize<'de> for Spread {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct SpreadVisitor;
        impl Visitor<'_> for SpreadVisitor {
            type Value = Spread;
            fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
                formatter.write_str(SPREAD_ACCEPTED)
            }
            fn visit_bool<E: de::Error>(self, spread: bool) -> Result<Spread, E> {
                Ok(if spread { Spread::Nodes } else { Spread::None })
            }
            fn visit_str<E: de::Error>(self, text: &str) -> Result<Spread, E> {
                match text.strip_prefix(NODE_LABEL_PREFIX) {
                    Some(label) if valid_label_key(label) => Ok(Spread::Label(label.to_string())),
                    _ => Err(E::custom(format!(
                        "spread {text:?} is not accepted; expected {SPREAD_ACCEPTED}"
                    ))),
                }
            }
        }
        // `deserialize_any` lets serde_yaml tell `true` from a string; the
        // visitor has no map or sequence arm, so those are type errors.
        deserializer.deserialize_any(SpreadVisitor)
    }
}

/// File modes in octal. YAML 1.2 (serde_yaml) reads an unquoted `0440` as
/// the decimal 440, so an integer is read digit by digit as octal (and one
/// with an 8 or a 9 is refused); a string may be `0440`, `440` or `0o440`.
/// Printed as a string (`"0440"`), which reads back the same.
pub(super) mod octal_mode {
    use std::fmt;

    use serde::de::{self, Deserializer, Visitor};
    use serde::Serializer;

    pub(in crate::model::service) fn serialize<S: Serializer>(
        mode: &u32,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&format!("{mode:04o}"))
    }

    fn from_octal_text<E: de::Error>(text: &str) -> Result<u32, E> {
        let digits = text.strip_prefix("0o").unwrap_or(text);
        if digits.is_empty()
            || digits.len() > 6
            || !digits.bytes().all(|b| (b'0'..=b'7').contains(&b))
        {
            return Err(E::custom(format!(
                "{text:?} is not an octal file mode; expected e.g. `0440` or `0o600`"
            )));
        }
        u32::from_str_radix(digits, 8).map_err(|e| E::custom(e.to_string()))
    }

    pub(in crate::model::service) fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<u32, D::Error> {
        struct ModeVisitor;
        impl Visitor<'_> for ModeVisitor {
            type Value = u32;
            fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
                formatter.write_str("an octal file mode such as `0440`")
            }
            fn visit_str<E: de::Error>(self, text: &str) -> Result<u32, E> {
                from_octal_text(text)
            }
            fn visit_u64<E: de::Error>(self, value: u64) -> Result<u32, E> {
                from_octal_text(&value.to_string())
            }
            fn visit_i64<E: de::Error>(self, value: i64) -> Result<u32, E> {
                from_octal_text(&value.to_string())
            }
        }
        deserializer.deserialize_any(ModeVisitor)
    }
}
