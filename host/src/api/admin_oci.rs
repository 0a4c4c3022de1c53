//! `PUT /admin/plugins/{name}/oci`: load a plugin version from an OCI
//! registry, by digest.
//!
//! Body: `{"reference": "REGISTRY/REPOSITORY@sha256:...", "plain_http":
//! false}` (at most 16 KiB; `plain_http` only matters for a registry that
//! is not on loopback). The pull ([`crate::control::oci`]) verifies the
//! manifest and the component against their digests, bounded and within a
//! timeout, through the cache under `<data_dir>/oci-cache`; then the
//! component takes the ordinary load path, like an upload.
//!
//! Answers: 200 with what an upload answers plus `reference`, `digest`,
//! `layer_digest` and `fetched_from` (`cache` or `registry`); 400 for a bad
//! name or body, or a reference without a digest; **502** when the
//! registry is unreachable, answers an error, or serves bytes that are not
//! what the digest names; 422 when the artifact is not a Wasm component
//! levee can load (no `application/wasm` layer, a refused component, a
//! binding's config rejected). Every refusal keeps the previous version
//! serving and is recorded as the plugin's `last_error`.
//!
//! In cluster mode a version this instance loaded is then bound
//! cluster-wide in etcd (`plugins/NAME`); every other instance pulls and
//! loads the same digest from its watch, and a pull or load that fails on
//! one of them shows in its status only. The answer adds `revision`; etcd
//! down is a 503 saying the version serves here but is not bound.

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use crate::api::admin_error::AdminError;
use crate::api::body::read_body;
use crate::api::state::AppState;
use crate::control::oci::install::{OciInstallError, install};
use crate::control::oci::{OciError, Options};

/// Largest request body: a reference and a flag.
const REQUEST_BYTES_MAX: u64 = 16 * 1024;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PullRequest {
    reference: String,
    #[serde(default)]
    plain_http: bool,
}

/// `PUT /admin/plugins/{name}/oci`.
pub async fn put(
    State(state): State<AppState>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, AdminError> {
    let bytes = read_body(&headers, body, REQUEST_BYTES_MAX).await?;
    let request: PullRequest = serde_json::from_slice(&bytes).map_err(|e| {
        AdminError::BadRequest(format!(
            "body: {e}; send {{\"reference\": \"REGISTRY/REPOSITORY@sha256:...\"}}"
        ))
    })?;
    let options = Options {
        plain_http: request.plain_http,
    };
    match install(&state.control.plugins, &name, &request.reference, &options).await {
        Ok(installed) => match state.cluster() {
            None => Ok(Json(installed).into_response()),
            Some(_) => {
                let revision = crate::api::admin_cluster::bind_plugin(
                    &state,
                    &name,
                    &installed.reference,
                    &installed.layer_digest,
                    request.plain_http,
                )
                .await?;
                let mut body = serde_json::to_value(&installed).unwrap_or_default();
                body["revision"] = serde_json::json!(revision);
                Ok(Json(body).into_response())
            }
        },
        Err(OciInstallError::Plugin(error)) => Err(error.into()),
        Err(OciInstallError::Pull(error)) if error.is_registry_fault() => Ok(bad_gateway(&error)),
        Err(OciInstallError::Pull(OciError::Reference(reason))) => {
            Err(AdminError::BadRequest(reason))
        }
        Err(OciInstallError::Pull(OciError::Local(detail))) => Err(AdminError::internal(detail)),
        Err(OciInstallError::Pull(error)) => Err(AdminError::Unprocessable {
            reason: error.to_string(),
            fields: Vec::new(),
        }),
    }
}

/// 502, in the admin API's error shape.
fn bad_gateway(error: &OciError) -> Response {
    let body = serde_json::json!({ "error": "bad_gateway", "reason": error.to_string() });
    (StatusCode::BAD_GATEWAY, Json(body)).into_response()
}
