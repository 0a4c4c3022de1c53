//! `GET /admin/state`: one JSON document with everything the status page
//! draws (built in [`crate::api::views::state`]), so the page needs one
//! request per refresh and the picture it shows is one moment.

use axum::Json;
use axum::extract::State;

use crate::api::state::AppState;
use crate::api::views::state::{StateView, state_view};

/// `GET /admin/state`.
pub async fn get(State(state): State<AppState>) -> Json<StateView> {
    Json(state_view(&state))
}
