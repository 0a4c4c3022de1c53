//! `/admin/plugins`: list, upload, delete and roll back policy plugins.
//!
//! An upload is the component's bytes as the request body (any content
//! type), at most 32 MiB (413 beyond, refused by `Content-Length` before
//! reading). It goes through [`crate::control::plugin_host::PluginHost::install`]:
//! compiled, checked against every binding that names it (services' and the
//! process's checkpoint binding), persisted, swapped.
//! A refusal is 400 (bad name), 413 (too big) or 422 (not a component, wrong
//! world, a binding's config rejected), with the exact reason; the
//! previous version keeps serving either way.
//!
//! `DELETE` forgets the plugin, its stored versions **and its drop-in file**
//! (`<plugin_dir>/<name>.wasm`), which would otherwise load it again at
//! the next start. It is refused with 409 and the reason while a binding
//! uses the plugin, or when the drop-in file cannot be removed (then
//! nothing was deleted).

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;

use crate::api::admin_error::AdminError;
use crate::api::body::read_body;
use crate::api::state::AppState;
use crate::api::views::plugins::{PluginView, truncated, views};
use crate::base::metrics::LoadSource;

/// `GET /admin/plugins`.
pub async fn list(State(state): State<AppState>) -> Json<Vec<PluginView>> {
    Json(views(&state))
}

/// `GET /admin/plugins/{name}`.
pub async fn one(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<PluginView>, AdminError> {
    views(&state)
        .into_iter()
        .find(|view| view.name == name)
        .map(Json)
        .ok_or_else(|| AdminError::NotFound(format!("no plugin named {:?}", truncated(&name))))
}

/// `PUT /admin/plugins/{name}`.
pub async fn upload(
    State(state): State<AppState>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, AdminError> {
    let host = &state.control.plugins;
    if let Err(reason) = crate::config::validate_plugin_name(&name) {
        return Err(AdminError::BadRequest(format!(
            "invalid plugin name {:?}: {reason}",
            truncated(&name)
        )));
    }
    let bytes = component_body(&state, &headers, body).await?;
    let installed = host.install(&name, bytes, LoadSource::Upload).await?;
    Ok(Json(installed).into_response())
}

/// The component in the body: bounded like an upload, never empty.
pub async fn component_body(
    state: &AppState,
    headers: &HeaderMap,
    body: Body,
) -> Result<Bytes, AdminError> {
    let limit_bytes = state.control.plugins.upload_bytes_max();
    let bytes = read_body(headers, body, limit_bytes).await?;
    if bytes.is_empty() {
        return Err(AdminError::BadRequest(
            "empty body: send the component's bytes".into(),
        ));
    }
    Ok(bytes)
}

/// `DELETE /admin/plugins/{name}`.
pub async fn delete(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Response, AdminError> {
    state.control.plugins.remove(&name).await?;
    Ok(Json(serde_json::json!({ "deleted": name })).into_response())
}

/// `POST /admin/plugins/{name}/rollback`.
pub async fn rollback(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Response, AdminError> {
    let installed = state.control.plugins.rollback(&name).await?;
    Ok(Json(installed).into_response())
}
