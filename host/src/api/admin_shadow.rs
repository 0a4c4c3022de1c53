//! `/admin/plugins/{name}/shadow`, `/promote` and `/trial`: trying a
//! version on live traffic, or on recorded calls, before it decides
//! anything (see [`crate::control::plugin_shadow`]).
//!
//! - `PUT .../shadow` with the component's bytes (limits as an upload):
//!   sets it as the shadow version of every binding of the plugin; 409
//!   when nothing is bound to the plugin, 422 when a binding refuses it.
//! - `GET .../shadow`: per binding, agreement counts per kind of live
//!   decision and the last disagreements with their inputs.
//! - `DELETE .../shadow`: ends it.
//! - `POST .../promote`: makes the shadow version live (a load: checked,
//!   persisted, swapped) and ends the shadow; 409 without one.
//! - `POST .../trial` with a candidate component's bytes: replays each
//!   binding's recorded calls on it and returns the comparison; stores
//!   nothing.

use crate::api::admin_error::AdminError;
use crate::api::admin_plugins::component_body;
use crate::api::state::AppState;
use axum::Json;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};

/// `PUT /admin/plugins/{name}/shadow`.
pub async fn put(
    State(state): State<AppState>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, AdminError> {
    let bytes = component_body(&state, &headers, body).await?;
    let set = state.control.plugins.set_shadow(&name, bytes).await?;
    Ok(Json(set).into_response())
}

/// `GET /admin/plugins/{name}/shadow`.
pub async fn get(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Response, AdminError> {
    let view = state.control.plugins.shadow_view(&name)?;
    Ok(Json(view).into_response())
}

/// `DELETE /admin/plugins/{name}/shadow`.
pub async fn delete(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Response, AdminError> {
    state.control.plugins.clear_shadow(&name).await?;
    Ok(Json(serde_json::json!({ "plugin": name, "shadow": null })).into_response())
}

/// `POST /admin/plugins/{name}/promote`.
pub async fn promote(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Response, AdminError> {
    let installed = state.control.plugins.promote(&name).await?;
    Ok(Json(installed).into_response())
}

/// `POST /admin/plugins/{name}/trial`.
pub async fn trial(
    State(state): State<AppState>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, AdminError> {
    let bytes = component_body(&state, &headers, body).await?;
    let view = state.control.plugins.trial(&name, bytes).await?;
    Ok(Json(view).into_response())
}
