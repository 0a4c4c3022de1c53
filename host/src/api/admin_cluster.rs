//! `/admin/cluster` and the admin API's service changes in cluster mode.
//!
//! In cluster mode a service change is checked here exactly as on a single
//! instance (the whole configuration validates after it, its plugins bind,
//! the service builds), then written to etcd with compare-and-swap on the
//! service key's revision: the client's `If-Match: <revision>` when sent,
//! else the revision read just before. The answer carries the
//! configuration revision R it created (and `x-levee-revision: R`); every
//! instance, this one included, applies it from its watch, and the answer
//! waits up to [`APPLY_WAIT_MS`] for this instance to have done so.

use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::api::admin_error::AdminError;
use crate::api::state::AppState;
use crate::api::views::state::service_view;
use crate::config::ServiceSpec;
use crate::control::etcd::store::{Member, PluginBinding, Status};
use crate::control::etcd::{ClusterMode, StoreError};

/// Longest a change's answer waits for this instance to apply it.
pub const APPLY_WAIT_MS: u64 = 5_000;

/// One instance as `/admin/cluster` shows it.
#[derive(Debug, Serialize)]
pub struct InstanceView {
    pub instance_id: String,
    pub data: String,
    pub admin: String,
    pub started_ms: u64,
    /// Its status, if it has written one.
    pub status: Option<Status>,
    /// Whether it has applied the configuration's current revision.
    pub on_revision: bool,
}

/// `GET /admin/cluster`.
#[derive(Debug, Serialize)]
pub struct ClusterView {
    /// This instance.
    pub instance_id: String,
    /// The configuration's revision R.
    pub revision: i64,
    /// E.g. `3/3 on revision 42`.
    pub summary: String,
    /// Whether every instance on the current revision reports the same
    /// placement epoch for every service (see `cluster::placement`).
    pub epochs_agree: bool,
    pub instances: Vec<InstanceView>,
}

pub async fn get(State(state): State<AppState>) -> Result<Json<ClusterView>, AdminError> {
    let mode = mode(&state)?;
    let (members, statuses, revision) = mode.store.fleet().await.map_err(store_error)?;
    let instances: Vec<InstanceView> = members
        .into_iter()
        .map(|member: Member| {
            let status = statuses
                .iter()
                .find(|s| s.instance_id == member.instance_id)
                .cloned();
            let on_revision = status.as_ref().is_some_and(|s| s.revision >= revision);
            InstanceView {
                instance_id: member.instance_id,
                data: member.data,
                admin: member.admin,
                started_ms: member.started_ms,
                status,
                on_revision,
            }
        })
        .collect();
    let on = instances.iter().filter(|i| i.on_revision).count();
    let current: Vec<&Status> = instances
        .iter()
        .filter(|i| i.on_revision)
        .filter_map(|i| i.status.as_ref())
        .collect();
    let epochs_agree = current
        .iter()
        .all(|a| current.iter().all(|b| a.epoch_mismatches(b).is_empty()));
    Ok(Json(ClusterView {
        instance_id: mode.instance_id.clone(),
        revision,
        epochs_agree,
        summary: format!("{on}/{} on revision {revision}", instances.len()),
        instances,
    }))
}

fn mode(state: &AppState) -> Result<&Arc<ClusterMode>, AdminError> {
    state.cluster().ok_or_else(|| {
        AdminError::NotFound("cluster mode is off (the configuration has no `cluster`)".to_string())
    })
}

fn store_error(error: StoreError) -> AdminError {
    match error {
        StoreError::Unavailable(_) => AdminError::Unavailable(error.to_string()),
        StoreError::Conflict { .. } => AdminError::Conflict(error.to_string()),
        StoreError::Unreadable { .. } => AdminError::internal(error.to_string()),
    }
}

/// The revision a change is based on: the client's `If-Match`, else the
/// key's current one.
async fn based_on(mode: &ClusterMode, name: &str, headers: &HeaderMap) -> Result<i64, AdminError> {
    match headers.get(axum::http::header::IF_MATCH) {
        Some(value) => value
            .to_str()
            .ok()
            .map(|v| v.trim().trim_matches('"'))
            .and_then(|v| v.parse::<i64>().ok())
            .filter(|v| *v >= 0)
            .ok_or_else(|| {
                AdminError::BadRequest("If-Match must be a revision number".to_string())
            }),
        None => mode.store.service_revision(name).await.map_err(store_error),
    }
}

/// `PUT /admin/services/{name}` in cluster mode.
pub async fn put_service(
    state: &AppState,
    spec: ServiceSpec,
    headers: &HeaderMap,
) -> Result<Result<Response, crate::control::service_change::ChangeRefused>, AdminError> {
    let mode = mode(state)?;
    if let Err(refused) = state.service_changes().check_put(&spec).await {
        return Ok(Err(refused));
    }
    let based = based_on(mode, &spec.name, headers).await?;
    let revision = mode
        .store
        .put_service(&spec, based)
        .await
        .map_err(store_error)?;
    let applied = mode
        .follower
        .wait_for(revision, Duration::from_millis(APPLY_WAIT_MS))
        .await;
    let service = state.service(&spec.name).filter(|_| applied);
    let body = serde_json::json!({
        "revision": revision,
        "applied_here": applied,
        "error_here": mode.follower.error(),
        "service": service.map(|s| service_view(state, &s)),
    });
    let status = if based == 0 {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok(Ok(with_revision(status, body, revision)))
}

/// Binds plugin `name` to a version this instance loaded, cluster-wide;
/// the configuration's new revision, once applied here.
pub async fn bind_plugin(
    state: &AppState,
    name: &str,
    reference: &str,
    layer_digest: &str,
    plain_http: bool,
) -> Result<i64, AdminError> {
    let mode = mode(state)?;
    let binding = PluginBinding {
        reference: reference.to_string(),
        layer_digest: layer_digest.to_string(),
        plain_http,
    };
    let revision = mode.store.put_plugin(name, &binding).await.map_err(|error| {
        AdminError::Unavailable(format!(
            "{name} {layer_digest} serves on this instance but is not bound cluster-wide: {error}"
        ))
    })?;
    mode.follower
        .wait_for(revision, Duration::from_millis(APPLY_WAIT_MS))
        .await;
    Ok(revision)
}

/// `DELETE /admin/services/{name}` in cluster mode.
pub async fn delete_service(
    state: &AppState,
    name: &str,
    headers: &HeaderMap,
) -> Result<Response, AdminError> {
    let mode = mode(state)?;
    let based = based_on(mode, name, headers).await?;
    if based == 0 {
        return Err(AdminError::NotFound(format!(
            "no service named {name:?} in etcd"
        )));
    }
    let revision = mode
        .store
        .delete_service(name, based)
        .await
        .map_err(store_error)?;
    let applied = mode
        .follower
        .wait_for(revision, Duration::from_millis(APPLY_WAIT_MS))
        .await;
    let body = serde_json::json!({"deleted": name, "revision": revision, "applied_here": applied});
    Ok(with_revision(StatusCode::OK, body, revision))
}

fn with_revision(status: StatusCode, body: serde_json::Value, revision: i64) -> Response {
    let mut response = (status, Json(body)).into_response();
    response.headers_mut().insert(
        "x-levee-revision",
        HeaderValue::from_str(&revision.to_string()).expect("digits"),
    );
    response
}
