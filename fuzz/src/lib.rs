//! What the fuzz targets share: the admin API's service-body parser, as the
//! host runs it, and the checks every field-path error must pass.
//!
//! The fuzz workspace depends only on the light crates (levee-config,
//! levee-policy, levee-log). The host crate (`levee`) would pull wasmtime,
//! tokio and axum into the instrumented build, and its body parser
//! (`host/src/api/admin_services.rs`, `parse_spec`) is private, so
//! [`parse_service_body`] restates it step for step over the same
//! levee-config calls. Keep the two in step: a change there is a change here.

use std::sync::OnceLock;

use levee_config::{Config, ConfigError, FieldError, ServiceSpec};

/// Why the admin API refuses a `PUT /admin/services/{name}` body: 400 (not
/// JSON) or 422 (with the fields at fault, possibly none).
#[derive(Debug)]
pub enum BodyRefusal {
    BadRequest(String),
    Unprocessable(Vec<FieldError>),
}

/// `parse_spec` of `host/src/api/admin_services.rs`: the body as a service
/// spec named `name` (the path's), validated like the file.
pub fn parse_service_body(name: &str, bytes: &[u8]) -> Result<ServiceSpec, BodyRefusal> {
    let mut value: serde_json::Value = serde_json::from_slice(bytes)
        .map_err(|e| BodyRefusal::BadRequest(format!("body is not JSON: {e}")))?;
    let Some(object) = value.as_object_mut() else {
        return Err(BodyRefusal::Unprocessable(Vec::new()));
    };
    match object.get("name") {
        None => {
            object.insert("name".into(), serde_json::Value::String(name.to_string()));
        }
        Some(serde_json::Value::String(given)) if given == name => {}
        Some(_) => {
            return Err(BodyRefusal::Unprocessable(vec![FieldError {
                path: "name".into(),
                message: format!("must be {name:?}, as in the path"),
            }]));
        }
    }
    let spec: ServiceSpec = serde_path_to_error::deserialize(value).map_err(|error| {
        BodyRefusal::Unprocessable(vec![FieldError {
            path: error.path().to_string(),
            message: error.into_inner().to_string(),
        }])
    })?;
    spec.validate()
        .map_err(|error| BodyRefusal::Unprocessable(error.field_errors()))?;
    Ok(spec)
}

/// The configuration file's top-level fields: every validation error's
/// path starts with one of them. Read from serde's own list (the "expected
/// one of" of an unknown-field error), so a new field needs no edit here.
pub fn config_fields() -> &'static [String] {
    static FIELDS: OnceLock<Vec<String>> = OnceLock::new();
    FIELDS.get_or_init(|| {
        let error = Config::from_json(r#"{"\u0000": 0}"#).expect_err("an unknown field");
        let message = error.to_string();
        let (_, list) = message
            .split_once("expected one of ")
            .expect("serde lists the fields");
        list.split('`')
            .skip(1)
            .step_by(2)
            .map(str::to_string)
            .collect()
    })
}

/// The first segment of a field path: `services` of `services[2].key`.
pub fn head(path: &str) -> &str {
    let end = path.find(['.', '[']).unwrap_or(path.len());
    &path[..end]
}

/// Every problem is at a non-empty path and says something. The one empty
/// path is a key spelt `""` at the top level, which serde names as itself.
pub fn assert_named(errors: &[FieldError]) {
    for error in errors {
        let empty_key = error.message.starts_with("unknown field ``");
        assert!(
            !error.path.is_empty() || empty_key,
            "an error without a path: {error:?}"
        );
        assert!(
            !error.message.is_empty(),
            "an error without a message: {error:?}"
        );
    }
}

/// The field errors of a refused configuration; read and size errors
/// cannot come from text.
pub fn field_errors(error: &ConfigError) -> Vec<FieldError> {
    assert!(
        matches!(error, ConfigError::Parse(_) | ConfigError::Invalid(_)),
        "text gave {error:?}"
    );
    error.field_errors()
}
