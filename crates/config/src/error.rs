//! Configuration errors: each problem at its field path, and the collector
//! validation uses to report all of them at once.

use std::fmt;
use std::path::PathBuf;

/// One problem in a configuration, at a field path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    pub path: String,
    pub message: String,
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

/// Why a configuration was refused.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config file {path} is {bytes} bytes, more than the {max} allowed")]
    TooLarge { path: PathBuf, bytes: u64, max: u64 },
    #[error("{0}")]
    Parse(FieldError),
    #[error("invalid config:\n  {}", .0.iter().map(|e| e.to_string()).collect::<Vec<_>>().join("\n  "))]
    Invalid(Vec<FieldError>),
}

impl ConfigError {
    /// The individual problems (one for read and parse errors).
    pub fn field_errors(&self) -> Vec<FieldError> {
        match self {
            ConfigError::Parse(e) => vec![e.clone()],
            ConfigError::Invalid(errors) => errors.clone(),
            other => vec![FieldError {
                path: String::new(),
                message: other.to_string(),
            }],
        }
    }
}

/// Collects field errors.
#[derive(Default)]
pub(crate) struct Errors(Vec<FieldError>);

impl Errors {
    pub(crate) fn add(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.0.push(FieldError {
            path: path.into(),
            message: message.into(),
        });
    }

    /// Reports `value` at `path` unless it is within `min..=max`.
    pub(crate) fn range(&mut self, path: &str, value: u64, min: u64, max: u64) {
        if value < min || value > max {
            self.add(
                path,
                format!("must be between {min} and {max}, got {value}"),
            );
        }
    }

    pub(crate) fn into_result(self) -> Result<(), ConfigError> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(ConfigError::Invalid(self.0))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_collect_in_order_and_ranges_are_inclusive() {
        let mut errors = Errors::default();
        errors.range("a", 1, 1, 3);
        errors.range("b", 3, 1, 3);
        errors.range("c", 4, 1, 3);
        errors.add("d", "bad");
        let ConfigError::Invalid(all) = errors.into_result().unwrap_err() else {
            panic!("expected Invalid");
        };
        let shown: Vec<String> = all.iter().map(ToString::to_string).collect();
        assert_eq!(shown, ["c: must be between 1 and 3, got 4", "d: bad"]);
        assert!(Errors::default().into_result().is_ok());
    }
}
