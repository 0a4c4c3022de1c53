//! `/admin/services`: read, add, replace and delete services at run time,
//! and look up a key's replicas.
//!
//! A `PUT` body is a service object of the configuration file's schema
//! (`name` may be omitted; if present it must match the path). It is
//! validated exactly like the file (field-level errors, 422), its plugin
//! bindings are bound (a missing plugin or a rejected config is 422), then
//! the control plane's transaction ([`crate::control::service_change`])
//! makes it durable and swaps it in. This file only adapts HTTP to it.
//! Hint cursors are keyed by service and node id, so a node that stays
//! keeps its cursor and backlog across the change.

use std::sync::Arc;

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use levee_plugin::PolicyKind;
use serde::Serialize;

use crate::api::admin_error::{AdminError, FieldProblem};
use crate::api::body::read_body;
use crate::api::state::AppState;
use crate::api::views::state::{ServiceView, service_view};
use crate::cluster::service::Service;
use crate::config::{ConfigError, ServiceSpec, validate_service_name};
use crate::control::plugin_host::PluginError;
use crate::control::service_change::{ChangeContext, ChangeRefused};
use crate::dataplane::inbound::ROUTING_KEY_BYTES_MAX;
use crate::policy::bind::policy_refs;

/// Largest service definition accepted.
pub const SERVICE_BODY_BYTES_MAX: u64 = 1024 * 1024;

/// `GET /admin/services`: every service's spec, in configuration order.
pub async fn list(State(state): State<AppState>) -> Json<Vec<ServiceSpec>> {
    Json(state.directory.config.load().services.clone())
}

/// `GET /admin/services/{name}`: spec, node health and ring shares.
pub async fn one(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<ServiceView>, AdminError> {
    let service = existing(&state, &name)?;
    Ok(Json(service_view(&state, &service)))
}

/// `PUT /admin/services/{name}`: 201 when added, 200 when replaced.
pub async fn put(
    State(state): State<AppState>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, AdminError> {
    check_name(&name)?;
    let bytes = read_body(&headers, body, SERVICE_BODY_BYTES_MAX).await?;
    let spec = parse_spec(&name, &bytes)?;
    if state.cluster().is_some() {
        return crate::api::admin_cluster::put_service(&state, spec.clone(), &headers)
            .await?
            .map_err(|refused| refusal(&spec, refused));
    }
    let change = spec.clone();
    let (service, added) = to_the_end(
        &state,
        |state| async move { changes(&state).put(change).await },
    )
    .await
    .map_err(|refused| refusal(&spec, refused))?;
    tracing::info!(service = %name, added, "service changed through the admin API");
    let status = if added {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(service_view(&state, &service))).into_response())
}

/// `DELETE /admin/services/{name}`.
pub async fn delete(
    State(state): State<AppState>,
    Path(name): Path<String>,
    headers: HeaderMap,
) -> Result<Response, AdminError> {
    check_name(&name)?;
    if state.cluster().is_some() {
        return crate::api::admin_cluster::delete_service(&state, &name, &headers).await;
    }
    let deleted = name.clone();
    to_the_end(&state, |state| async move {
        changes(&state).delete(&deleted).await
    })
    .await
    .map_err(|refused| match refused {
        ChangeRefused::NotFound(shown) => {
            AdminError::NotFound(format!("no service named {shown:?}"))
        }
        other => refusal_without_spec(other),
    })?;
    tracing::info!(service = %name, "service deleted through the admin API");
    Ok(Json(serde_json::json!({ "deleted": name })).into_response())
}

/// Runs a service change to its end in a task of its own. A handler's
/// future is dropped when its client disconnects; the change must not stop
/// between its log append and its apply (durable but not in force, and a
/// later checkpoint could drop it), so the handler only waits for the task.
async fn to_the_end<T, F>(
    state: &AppState,
    change: impl FnOnce(AppState) -> F,
) -> Result<T, ChangeRefused>
where
    T: Send + 'static,
    F: Future<Output = Result<T, ChangeRefused>> + Send + 'static,
{
    tokio::spawn(change(state.clone()))
        .await
        .unwrap_or_else(|failed| {
            Err(ChangeRefused::Internal(format!(
                "the service change task failed: {failed}"
            )))
        })
}

/// The control plane's service-change transaction over this state's parts.
fn changes(state: &AppState) -> ChangeContext<'_> {
    state.service_changes()
}

/// A refused `PUT` as the admin API reports it.
fn refusal(spec: &ServiceSpec, refused: ChangeRefused) -> AdminError {
    match refused {
        ChangeRefused::Invalid(error) => {
            unprocessable("invalid configuration after the change", error)
        }
        ChangeRefused::Plugin(error) => missing_plugin_is_a_field(spec, error),
        other => refusal_without_spec(other),
    }
}

fn refusal_without_spec(refused: ChangeRefused) -> AdminError {
    match refused {
        ChangeRefused::Invalid(error) => {
            unprocessable("invalid configuration after the change", error)
        }
        ChangeRefused::Plugin(error) => error.into(),
        ChangeRefused::Build(reason) => AdminError::Unprocessable {
            reason,
            fields: Vec::new(),
        },
        ChangeRefused::NotFound(shown) => {
            AdminError::NotFound(format!("no service named {shown:?}"))
        }
        ChangeRefused::LogUnavailable(error) => {
            AdminError::Unavailable(format!("the durable log refuses writes: {error}"))
        }
        ChangeRefused::Internal(reason) => AdminError::internal(reason),
    }
}

/// `GET /admin/services/{name}/ring?key=K`: the key's preference list.
/// `K` is normalized as the data plane normalizes a key under the service's
/// rule (`dataplane::key`), so `%61lice` and `alice` agree, as they do on
/// the data plane; the view shows the canonical key that was hashed.
pub async fn ring(
    State(state): State<AppState>,
    Path(name): Path<String>,
    uri: Uri,
) -> Result<Response, AdminError> {
    let service = existing(&state, &name)?;
    let key = raw_query_value(uri.query().unwrap_or(""), "key")
        .ok_or_else(|| AdminError::BadRequest("missing ?key=<routing key>".into()))?;
    if key.is_empty() || key.len() > ROUTING_KEY_BYTES_MAX {
        return Err(AdminError::BadRequest(format!(
            "key must be 1 to {ROUTING_KEY_BYTES_MAX} bytes"
        )));
    }
    let key = crate::dataplane::key::canonical_key(&service, key)
        .map_err(|refused| AdminError::BadRequest(refused.to_string()))?;
    Ok(Json(preference_view(&service, &key)).into_response())
}

/// The key's replicas, primary first.
#[derive(Debug, Serialize)]
pub struct PreferenceView {
    pub service: String,
    pub key: String,
    /// The key's position on the ring (first 8 bytes of SHA-1, big-endian).
    pub position: u64,
    pub replicas: usize,
    pub preference: Vec<PreferenceEntry>,
}

#[derive(Debug, Serialize)]
pub struct PreferenceEntry {
    pub node: String,
    pub url: String,
    pub zone: Option<String>,
    pub healthy: bool,
}

fn preference_view(service: &Service, key: &str) -> PreferenceView {
    let now_ms = crate::base::clock::now_ms();
    let preference = service
        .preference(key.as_bytes())
        .iter()
        .map(|index| {
            let node = &service.nodes[index];
            PreferenceEntry {
                node: node.spec.id.clone(),
                url: node.spec.url.clone(),
                zone: node.spec.zone.clone(),
                healthy: node.health.is_healthy(now_ms),
            }
        })
        .collect();
    PreferenceView {
        service: service.name().to_string(),
        key: key.to_string(),
        position: crate::cluster::ring::position_of(key.as_bytes()),
        replicas: service.replicas(),
        preference,
    }
}

fn raw_query_value<'a>(query: &'a str, name: &str) -> Option<&'a str> {
    query.split('&').take(256).find_map(|pair| {
        pair.split_once('=')
            .filter(|(k, _)| *k == name)
            .map(|(_, v)| v)
    })
}

fn check_name(name: &str) -> Result<(), AdminError> {
    validate_service_name(name).map_err(|reason| {
        let shown: String = name.chars().take(80).collect();
        AdminError::BadRequest(format!("invalid service name {shown:?}: {reason}"))
    })
}

fn existing(state: &AppState, name: &str) -> Result<Arc<Service>, AdminError> {
    state.service(name).ok_or_else(|| {
        let shown: String = name.chars().take(80).collect();
        AdminError::NotFound(format!("no service named {shown:?}"))
    })
}

/// The body as a service spec named `name`, with every problem named.
fn parse_spec(name: &str, bytes: &[u8]) -> Result<ServiceSpec, AdminError> {
    let mut value: serde_json::Value = serde_json::from_slice(bytes)
        .map_err(|e| AdminError::BadRequest(format!("body is not JSON: {e}")))?;
    let Some(object) = value.as_object_mut() else {
        return Err(AdminError::Unprocessable {
            reason: "expected a JSON object".into(),
            fields: Vec::new(),
        });
    };
    match object.get("name") {
        None => {
            object.insert("name".into(), serde_json::Value::String(name.to_string()));
        }
        Some(serde_json::Value::String(given)) if given == name => {}
        Some(_) => {
            return Err(AdminError::Unprocessable {
                reason: "invalid service".into(),
                fields: vec![FieldProblem {
                    path: "name".into(),
                    message: format!("must be {name:?}, as in the path"),
                }],
            });
        }
    }
    let spec: ServiceSpec = serde_path_to_error::deserialize(value).map_err(|error| {
        let path = error.path().to_string();
        AdminError::Unprocessable {
            reason: "invalid service".into(),
            fields: vec![FieldProblem {
                path,
                message: error.into_inner().to_string(),
            }],
        }
    })?;
    spec.validate()
        .map_err(|error| unprocessable("invalid service", error))?;
    Ok(spec)
}

/// A binding to a plugin that is not loaded is a problem with that field
/// of the request (422), not a missing resource (404).
fn missing_plugin_is_a_field(spec: &ServiceSpec, error: PluginError) -> AdminError {
    let PluginError::NotFound(plugin) = &error else {
        return error.into();
    };
    let fields = policy_refs(spec)
        .filter(|(_, policy)| &policy.plugin == plugin)
        .map(|(kind, _)| FieldProblem {
            path: format!("policies.{}.plugin", kind_key(kind)),
            message: format!("no plugin named {plugin:?} is loaded (upload it or drop it into the plugin directory)"),
        })
        .collect();
    AdminError::Unprocessable {
        reason: "invalid service".into(),
        fields,
    }
}

/// The `policies.<kind>` field of a service binding. A service has no
/// checkpoint binding (it is the process's, the top-level `checkpoint`), so
/// that arm names the field a service spec refuses.
fn kind_key(kind: PolicyKind) -> &'static str {
    match kind {
        PolicyKind::Retry => "retry",
        PolicyKind::Routing => "routing",
        PolicyKind::Write => "write",
        PolicyKind::Checkpoint => "checkpoint",
    }
}

fn unprocessable(reason: &str, error: ConfigError) -> AdminError {
    AdminError::Unprocessable {
        reason: reason.to_string(),
        fields: error
            .field_errors()
            .into_iter()
            .map(FieldProblem::from)
            .collect(),
    }
}

#[cfg(test)]
#[path = "admin_services_tests.rs"]
mod cancel_tests;

#[cfg(test)]
mod tests {
    use super::*;

    fn body(value: serde_json::Value) -> Vec<u8> {
        value.to_string().into_bytes()
    }

    fn minimal() -> serde_json::Value {
        serde_json::json!({
            "nodes": [{"id": "a", "url": "http://127.0.0.1:7001"}, {"id": "b", "url": "http://127.0.0.1:7002"}],
            "key": {"path_segment": 1},
        })
    }

    #[test]
    fn the_path_names_the_service() {
        let spec = parse_spec("users", &body(minimal())).unwrap();
        assert_eq!(spec.name, "users");
        let mut other = minimal();
        other["name"] = "orders".into();
        let AdminError::Unprocessable { fields, .. } =
            parse_spec("users", &body(other)).unwrap_err()
        else {
            panic!("expected 422");
        };
        assert_eq!(fields[0].path, "name");
    }

    #[test]
    fn type_and_range_errors_name_their_fields() {
        let mut wrong_type = minimal();
        wrong_type["timeouts"] = serde_json::json!({"per_try_ms": "fast"});
        let AdminError::Unprocessable { fields, .. } =
            parse_spec("users", &body(wrong_type)).unwrap_err()
        else {
            panic!("expected 422");
        };
        assert_eq!(fields[0].path, "timeouts.per_try_ms");

        let mut quorum = minimal();
        quorum["write_quorum"] = 3.into();
        let AdminError::Unprocessable { fields, .. } =
            parse_spec("users", &body(quorum)).unwrap_err()
        else {
            panic!("expected 422");
        };
        assert!(
            fields.iter().any(|f| f.path.ends_with("write_quorum")),
            "{fields:?}"
        );
    }

    #[test]
    fn a_service_checkpoint_binding_is_refused_at_its_field() {
        let mut spec = minimal();
        spec["policies"] = serde_json::json!({"checkpoint": {"plugin": "checkpoint-interval"}});
        let AdminError::Unprocessable { fields, .. } =
            parse_spec("users", &body(spec)).unwrap_err()
        else {
            panic!("expected 422");
        };
        assert_eq!(fields[0].path, "policies.checkpoint");
        assert!(
            fields[0]
                .message
                .starts_with(crate::config::CHECKPOINT_MOVED),
            "{fields:?}"
        );
    }

    #[test]
    fn garbage_is_a_bad_request() {
        assert!(matches!(
            parse_spec("users", b"\xff\x00"),
            Err(AdminError::BadRequest(_))
        ));
        assert!(matches!(
            parse_spec("users", b"[1]"),
            Err(AdminError::Unprocessable { .. })
        ));
    }

    #[test]
    fn raw_query_values_are_not_decoded() {
        assert_eq!(raw_query_value("a=1&key=al%20ice", "key"), Some("al%20ice"));
        assert_eq!(raw_query_value("keys=1", "key"), None);
    }
}
