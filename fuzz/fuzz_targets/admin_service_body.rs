//! `PUT /admin/services/{name}`: the body as the admin API parses it
//! (`levee_fuzz::parse_service_body`, the host's `parse_spec` restated over
//! levee-config). Properties:
//! - an accepted body is a valid service of the path's name, and it
//!   round-trips: serialized (as `GET /admin/services/{name}` answers) and
//!   sent again, it is accepted and equal;
//! - the admin API and the configuration file agree: the same object as the
//!   file's only service is accepted exactly when the body is;
//! - a 400 is a body that is not JSON; a 422 without fields is a body that
//!   is not an object; every other 422 names its fields, and a validation
//!   error's path is inside `services[<name>]`.
#![no_main]

use levee_config::Config;
use levee_fuzz::{BodyRefusal, assert_named, parse_service_body};
use libfuzzer_sys::fuzz_target;

/// The `{name}` of the request path (checked by the handler before the
/// body is read; the name itself is `names_and_urls`' business).
const NAME: &str = "users";

fuzz_target!(|data: &[u8]| {
    let outcome = parse_service_body(NAME, data);
    match &outcome {
        Ok(spec) => {
            assert_eq!(spec.name, NAME);
            spec.validate()
                .expect("an accepted service validates again");
            let written = serde_json::to_vec(spec).expect("a service serializes");
            let again = parse_service_body(NAME, &written)
                .unwrap_or_else(|refusal| panic!("the written service is refused: {refusal:?}"));
            assert_eq!(&again, spec, "the round trip changed it");
        }
        Err(BodyRefusal::BadRequest(_)) => {
            assert!(serde_json::from_slice::<serde_json::Value>(data).is_err());
        }
        Err(BodyRefusal::Unprocessable(fields)) => refused(data, fields),
    }
    agrees_with_the_file(data, outcome.is_ok());
});

fn refused(data: &[u8], fields: &[levee_config::FieldError]) {
    let value: serde_json::Value = serde_json::from_slice(data).expect("a 422 body is JSON");
    if fields.is_empty() {
        assert!(!value.is_object(), "an object refused without a field");
        return;
    }
    assert_named(fields);
    for field in fields {
        if field.path.starts_with("services[") {
            assert!(
                field.path.starts_with(&format!("services[{NAME}].")),
                "a validation error outside this service: {field}"
            );
        }
    }
}

/// The body as the only service of a configuration file.
fn agrees_with_the_file(data: &[u8], admin_accepts: bool) {
    let Ok(serde_json::Value::Object(mut service)) = serde_json::from_slice(data) else {
        return;
    };
    match service.get("name") {
        None => {
            service.insert("name".into(), NAME.into());
        }
        Some(name) if name == NAME => {}
        Some(_) => return,
    }
    let text = serde_json::json!({ "services": [service] }).to_string();
    let file_accepts = Config::from_json(&text).is_ok();
    assert_eq!(
        file_accepts, admin_accepts,
        "the admin API and the file disagree about {text}"
    );
}
