//! `GET /admin/log` and `POST /admin/checkpoint`.
//!
//! The log view is the log's own status (segments with their LSN ranges,
//! sync position, latest checkpoint, whether it refuses writes) plus what the
//! write path keeps in it: each replica's hint cursor and backlog, and what
//! start-up recovered. `POST /admin/checkpoint` writes a checkpoint now
//! (`?compact=true` also deletes the segments nobody needs any more) and
//! answers what it covered.

use axum::Json;
use axum::extract::State;
use axum::http::Uri;
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::api::admin_error::AdminError;
use crate::api::state::AppState;
use crate::api::views::state::{LogView, log_view};
use crate::base::metrics::CheckpointTrigger;

/// `GET /admin/log`.
#[derive(Debug, Serialize)]
pub struct LogDetail {
    #[serde(flatten)]
    pub summary: LogView,
    pub segments: Vec<SegmentView>,
    pub write_path: crate::replication::WriteStatus,
}

#[derive(Debug, Serialize)]
pub struct SegmentView {
    pub file: String,
    pub first_lsn: u64,
    pub last_lsn: u64,
    pub records: u64,
    pub bytes: u64,
}

/// `GET /admin/log`.
pub async fn get(State(state): State<AppState>) -> Json<LogDetail> {
    let segments = state
        .writes
        .log
        .stats()
        .segments
        .into_iter()
        .map(|segment| SegmentView {
            // The file name only: the data directory's path is an internal.
            file: segment
                .path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
            first_lsn: segment.first_lsn,
            last_lsn: segment.last_lsn,
            records: segment.records,
            bytes: segment.bytes,
        })
        .collect();
    Json(LogDetail {
        summary: log_view(&state),
        segments,
        write_path: state.writes.status(),
    })
}

/// `POST /admin/checkpoint[?compact=true]`.
pub async fn checkpoint(State(state): State<AppState>, uri: Uri) -> Result<Response, AdminError> {
    let compact = match uri.query().unwrap_or("") {
        "" | "compact=false" => false,
        "compact=true" => true,
        other => {
            let shown: String = other.chars().take(80).collect();
            return Err(AdminError::BadRequest(format!(
                "unknown query {shown:?}; use ?compact=true or nothing"
            )));
        }
    };
    let report = state
        .writes
        .checkpoint_now(&state.directory, CheckpointTrigger::Admin, compact)
        .await
        .map_err(|error| AdminError::Unavailable(format!("checkpoint failed: {error}")))?;
    Ok(Json(report).into_response())
}
