//! A service change survives its client: dropping the `PUT` handler's
//! future after the change reached the log must not leave it durable but
//! unapplied (issue 10, item 4).

use std::future::Future;
use std::pin::pin;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::HeaderMap;

use super::put;
use crate::api::state::AppState;

/// Polls for the change to become visible (bounded: 200 × 10 ms).
const VISIBLE_POLLS: u32 = 200;

fn state(dir: &std::path::Path) -> AppState {
    let config = crate::config::Config::from_json(
        &serde_json::json!({"data_dir": dir, "fsync": "always", "services": []}).to_string(),
    )
    .unwrap();
    AppState::new(config).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_put_dropped_mid_commit_is_applied_all_the_same() {
    let dir = tempfile::tempdir().unwrap();
    let state = state(dir.path());
    let spec = serde_json::json!({
        "nodes": [{"id": "a", "url": "http://127.0.0.1:9"}],
        "key": {"path_segment": 1},
    });
    {
        let handler = pin!(put(
            State(state.clone()),
            Path("late".to_string()),
            HeaderMap::new(),
            Body::from(spec.to_string()),
        ));
        // One poll: the body is complete and nothing else waits, so the
        // change runs until the log's fsync, where the client leaves.
        let mut cx = Context::from_waker(Waker::noop());
        assert!(
            matches!(handler.poll(&mut cx), Poll::Pending),
            "the change must wait for its fsync"
        );
    }
    for _ in 0..VISIBLE_POLLS {
        if state.directory.service("late").is_some() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let logged = state.writes.log.stats().last_lsn;
    panic!("the dropped change is not applied (log's last LSN: {logged})");
}
