//! Parsing of a policy's JSON config, with errors that name the field.
//!
//! Configs come from an operator's file and, for plugins, cross the sandbox
//! boundary as a string, so they are untrusted: the size is bounded before
//! parsing, unknown fields are rejected (a typo must not silently become a
//! default), and every error says which field is wrong. `serde_json` alone
//! reports a type error as "invalid type ... at line 1 column 17"; to name the
//! field without extra dependencies we re-try the failing object one field at
//! a time, which costs nothing on the success path.

use crate::limits;
use serde::de::DeserializeOwned;
use std::fmt;

/// Why a config was rejected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigError {
    /// The config text exceeds [`limits::CONFIG_BYTES_MAX`].
    TooLarge { config_bytes: usize },
    /// Not JSON, or JSON but not an object.
    Syntax(String),
    /// One field is unknown or has the wrong type or value.
    Field { field: String, problem: String },
}

impl ConfigError {
    /// A semantic problem with one named field.
    pub fn field(field: &str, problem: impl Into<String>) -> Self {
        ConfigError::Field {
            field: field.to_string(),
            problem: problem.into(),
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigError::TooLarge { config_bytes } => write!(
                f,
                "config is {config_bytes} bytes, more than the {} allowed",
                limits::CONFIG_BYTES_MAX
            ),
            ConfigError::Syntax(problem) => write!(f, "invalid config: {problem}"),
            ConfigError::Field { field, problem } => write!(f, "config field `{field}`: {problem}"),
        }
    }
}

impl std::error::Error for ConfigError {}

impl From<ConfigError> for String {
    fn from(error: ConfigError) -> String {
        error.to_string()
    }
}

/// Parses a policy's JSON config object. An empty (or all-whitespace) string
/// and `null` mean "all defaults", as does `{}`.
pub fn parse<T: DeserializeOwned + Default>(json: &str) -> Result<T, ConfigError> {
    if json.len() > limits::CONFIG_BYTES_MAX {
        return Err(ConfigError::TooLarge {
            config_bytes: json.len(),
        });
    }
    if json.trim().is_empty() {
        return Ok(T::default());
    }
    let value: serde_json::Value =
        serde_json::from_str(json).map_err(|e| ConfigError::Syntax(e.to_string()))?;
    let object = match value {
        serde_json::Value::Null => return Ok(T::default()),
        serde_json::Value::Object(object) => object,
        other => {
            return Err(ConfigError::Syntax(format!(
                "expected a JSON object, found {}",
                json_kind(&other)
            )));
        }
    };
    match serde_json::from_value(serde_json::Value::Object(object.clone())) {
        Ok(config) => Ok(config),
        Err(whole_error) => Err(blame_field::<T>(object, whole_error)),
    }
}

/// Longest field name echoed back in an error.
const FIELD_CHARS_MAX: usize = 64;

/// Finds the first field that fails on its own, so the error can name it.
/// Falls back to serde's message when no single field is to blame.
fn blame_field<T: DeserializeOwned>(
    object: serde_json::Map<String, serde_json::Value>,
    whole_error: serde_json::Error,
) -> ConfigError {
    for (field, value) in object {
        let mut alone = serde_json::Map::new();
        alone.insert(field.clone(), value);
        if let Err(error) = serde_json::from_value::<T>(serde_json::Value::Object(alone)) {
            // serde quotes an unknown field's full name; bound it in both places.
            let short = truncate(&field, FIELD_CHARS_MAX);
            let mut problem = error.to_string();
            if short != field {
                problem = problem.replace(&field, &short);
            }
            return ConfigError::Field {
                field: short,
                problem,
            };
        }
    }
    ConfigError::Syntax(whole_error.to_string())
}

/// Bounds a field name echoed back in an error: the name is untrusted input.
fn truncate(text: &str, chars_max: usize) -> String {
    if text.chars().count() <= chars_max {
        return text.to_string();
    }
    let mut short: String = text.chars().take(chars_max).collect();
    short.push('…');
    short
}

fn json_kind(value: &serde_json::Value) -> &'static str {
    match value {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "an array",
        serde_json::Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Default, PartialEq, Deserialize)]
    #[serde(deny_unknown_fields, default)]
    struct Sample {
        count: u32,
        name: Option<String>,
    }

    #[test]
    fn empty_and_null_and_empty_object_mean_defaults() {
        for json in ["", "  \n", "null", "{}"] {
            assert_eq!(parse::<Sample>(json), Ok(Sample::default()), "{json:?}");
        }
    }

    #[test]
    fn parses_known_fields() {
        let sample: Sample = parse(r#"{"count": 7, "name": "x"}"#).unwrap();
        assert_eq!(
            sample,
            Sample {
                count: 7,
                name: Some("x".into())
            }
        );
    }

    #[test]
    fn type_error_names_the_field() {
        let error = parse::<Sample>(r#"{"name": "ok", "count": "seven"}"#).unwrap_err();
        match &error {
            ConfigError::Field { field, .. } => assert_eq!(field, "count"),
            other => panic!("expected a field error, got {other:?}"),
        }
        assert!(error.to_string().contains("`count`"), "{error}");
    }

    #[test]
    fn out_of_range_number_names_the_field() {
        let error = parse::<Sample>(r#"{"count": -1}"#).unwrap_err();
        assert!(
            matches!(&error, ConfigError::Field { field, .. } if field == "count"),
            "{error}"
        );
    }

    #[test]
    fn unknown_field_names_the_field() {
        let error = parse::<Sample>(r#"{"cuont": 1}"#).unwrap_err();
        assert!(
            matches!(&error, ConfigError::Field { field, .. } if field == "cuont"),
            "{error}"
        );
        assert!(error.to_string().contains("unknown field"), "{error}");
    }

    #[test]
    fn non_object_is_rejected() {
        for json in ["[]", "3", "\"x\"", "true"] {
            let error = parse::<Sample>(json).unwrap_err();
            assert!(matches!(error, ConfigError::Syntax(_)), "{json}: {error}");
        }
    }

    #[test]
    fn malformed_json_is_rejected() {
        let error = parse::<Sample>("{\"count\": ").unwrap_err();
        assert!(matches!(error, ConfigError::Syntax(_)), "{error}");
    }

    #[test]
    fn oversized_config_is_rejected_before_parsing() {
        let json = format!("{{\"name\": \"{}\"}}", "a".repeat(limits::CONFIG_BYTES_MAX));
        let error = parse::<Sample>(&json).unwrap_err();
        assert_eq!(
            error,
            ConfigError::TooLarge {
                config_bytes: json.len()
            }
        );
    }

    #[test]
    fn echoed_field_name_is_bounded() {
        let json = format!("{{\"{}\": 1}}", "k".repeat(10_000));
        let error = parse::<Sample>(&json).unwrap_err();
        assert!(
            error.to_string().len() < 1_000,
            "{} bytes",
            error.to_string().len()
        );
    }
}
