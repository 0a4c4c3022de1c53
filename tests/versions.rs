//! End-to-end tests of write versions (issue 10): real `levee serve`
//! processes in front of real `levee kv-replica` processes.
//!
//! - A wiped log restarts LSNs at 1; the next write must still win.
//! - So must a write after the data directory was restored from a backup
//!   taken before later writes (their versions were issued after it).
//! - Two levee instances writing the same keys converge on one version.
//! - A write older than what the replicas hold is answered 409 superseded,
//!   and the retry wins because levee's clock observed the held version.
//! - A failed quorum where one replica acked is "unknown", never the 4xx
//!   of the others; only a rejection by every replica is relayed.
//!
//! No assertion depends on timing: waits poll a bounded number of times.

mod support;
mod write_support;

use std::collections::BTreeMap;
use std::time::{SystemTime, UNIX_EPOCH};

use hyper::{HeaderMap, Method, StatusCode};
use serde_json::{Value, json};
use support::{Cluster, Levee, Replica, call};
use write_support::{
    CONVERGE_POLL_PAUSE, CONVERGE_POLLS, acks, dump_sha, put, restart_levee, sha256_hex, start,
    try_dump, wait_converged,
};

/// A header's value as text; panics naming it when absent.
fn header<'a>(headers: &'a HeaderMap, name: &str) -> &'a str {
    headers
        .get(name)
        .and_then(|value| value.to_str().ok())
        .unwrap_or_else(|| panic!("no {name} header in {headers:?}"))
}

/// A version's wire form, split into its ordered parts.
fn parse_version(text: &str) -> (u64, u32, String) {
    let parts: Vec<&str> = text.split('.').collect();
    assert_eq!(parts.len(), 3, "not a version: {text:?}");
    (
        parts[0].parse().expect("physical ms"),
        parts[1].parse().expect("logical"),
        parts[2].to_owned(),
    )
}

/// Polls until every replica holds `value` for `key`; returns the dumps.
async fn wait_all_hold(cluster: &Cluster, key: &str, value: &str) -> Vec<Value> {
    let wanted = sha256_hex(value.as_bytes());
    let mut dumps = Vec::new();
    for _ in 0..CONVERGE_POLLS {
        dumps.clear();
        for replica in &cluster.replicas {
            dumps.push(try_dump(replica).await.unwrap_or(Value::Null));
        }
        if dumps
            .iter()
            .all(|dump| dump_sha(dump, key).as_deref() == Some(wanted.as_str()))
        {
            return dumps;
        }
        tokio::time::sleep(CONVERGE_POLL_PAUSE).await;
    }
    panic!("the replicas never all held {key}={value:?}: {dumps:?}");
}

/// The reproduction: PUT k three times, stop levee, remove its log,
/// start it again, PUT k=NEW: 200, and every replica holds NEW (before
/// versions, LSNs restarted at 1, the replicas took the new write for a
/// stale one and levee counted their "not applied" as acks).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_after_the_log_was_wiped_wins_on_every_replica() {
    let mut cluster = start(3, json!({})).await;
    for value in ["one", "two", "three"] {
        let (status, _, body) = put(&cluster.levee, "k", value).await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }
    wait_all_hold(&cluster, "k", "three").await;
    cluster.levee.proc.terminate();
    let data_dir = cluster.levee.dir.path().join("data");
    std::fs::remove_dir_all(data_dir.join("log")).expect("remove the log");
    restart_levee(&mut cluster.levee).await;

    let (status, headers, body) = put(&cluster.levee, "k", "NEW").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let version = header(&headers, "x-levee-version").to_owned();
    let dumps = wait_all_hold(&cluster, "k", "NEW").await;
    for dump in &dumps {
        assert_eq!(dump["keys"]["k"]["version"], version.as_str(), "{dump}");
    }
    let (status, _, body) = cluster.get("k").await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, "NEW"));
}

/// A backup of levee's whole data directory, taken after the first write,
/// is restored after three more: levee comes back with an older log and
/// clock mark. Its first write may be older than those three (the lost life
/// issued them from the same mark, within its reserve): then it is answered
/// 409 superseded with a *different* version (a new instance id: never a
/// reused one, which a replica would take for a redelivery), and the retry
/// wins on every replica, because the clock observed the held version.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_after_restoring_an_old_backup_wins_on_every_replica() {
    let mut cluster = start(3, json!({})).await;
    let (status, _, body) = put(&cluster.levee, "k", "before-backup").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    wait_all_hold(&cluster, "k", "before-backup").await;
    cluster.levee.proc.terminate();
    let data_dir = cluster.levee.dir.path().join("data");
    let backup = cluster.levee.dir.path().join("backup");
    copy_dir(&data_dir, &backup);
    restart_levee(&mut cluster.levee).await;
    for value in ["after-1", "after-2", "after-3"] {
        let (status, _, body) = put(&cluster.levee, "k", value).await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }
    wait_all_hold(&cluster, "k", "after-3").await;
    cluster.levee.proc.terminate();
    std::fs::remove_dir_all(&data_dir).expect("remove the data directory");
    copy_dir(&backup, &data_dir);
    restart_levee(&mut cluster.levee).await;

    let mut value = "after-restore";
    let (mut status, headers, body) = put(&cluster.levee, "k", value).await;
    if status == StatusCode::CONFLICT {
        let held = header(&headers, "x-levee-held-version");
        let own = header(&headers, "x-levee-version");
        assert_ne!(parse_version(own).2, parse_version(held).2, "{body}");
        value = "after-restore-retried";
        (status, _, _) = put(&cluster.levee, "k", value).await;
    }
    assert_eq!(status, StatusCode::OK, "{body}");
    wait_all_hold(&cluster, "k", value).await;
    let (status, _, body) = cluster.get("k").await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, value));
}

/// `cp -a from to`: a backup as an operator takes it.
fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    let status = std::process::Command::new("cp")
        .arg("-a")
        .arg(from)
        .arg(to)
        .status()
        .expect("run cp");
    assert!(
        status.success(),
        "cp -a {} {}",
        from.display(),
        to.display()
    );
}

/// One write's fate as its client saw it.
struct Written {
    key: String,
    value: String,
    status: StatusCode,
    version: String,
}

/// Writes `rounds` rounds over `keys` through `levee`, values tagged `tag`.
async fn write_rounds(levee: &Levee, tag: &str, keys: &[&str], rounds: usize) -> Vec<Written> {
    let mut written = Vec::new();
    for round in 0..rounds {
        for key in keys {
            let value = format!("{tag}-{round}-{key}");
            let (status, headers, body) = put(levee, key, &value).await;
            assert!(
                matches!(
                    status,
                    StatusCode::OK | StatusCode::CONFLICT | StatusCode::SERVICE_UNAVAILABLE
                ),
                "{status}: {body}"
            );
            written.push(Written {
                key: (*key).to_owned(),
                value,
                status,
                version: header(&headers, "x-levee-version").to_owned(),
            });
        }
    }
    written
}

/// A second levee (its own data directory and ports) fronting the same
/// replicas with the same configuration.
async fn second_levee(first: &Levee) -> Levee {
    let text = std::fs::read_to_string(&first.config_path).expect("config");
    let mut config: Value = serde_json::from_str(&text).expect("config json");
    let object = config.as_object_mut().expect("config object");
    object.remove("data_dir");
    object.remove("listeners");
    Levee::start(config).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_levee_instances_writing_the_same_keys_converge_on_one_version() {
    const ROUNDS: usize = 15;
    let keys = ["apple", "banana", "cherry", "damson"];
    let cluster = start(3, json!({})).await;
    let other = second_levee(&cluster.levee).await;
    let (a, b) = tokio::join!(
        write_rounds(&cluster.levee, "a", &keys, ROUNDS),
        write_rounds(&other, "b", &keys, ROUNDS),
    );
    // Then alternately, one write at a time.
    let mut alternating = Vec::new();
    for round in 0..3 {
        alternating.extend(write_rounds(&cluster.levee, &format!("a{round}"), &keys, 1).await);
        alternating.extend(write_rounds(&other, &format!("b{round}"), &keys, 1).await);
    }
    let written: Vec<Written> = a.into_iter().chain(b).chain(alternating).collect();
    let versions: BTreeMap<&str, &Written> = written
        .iter()
        .map(|write| (write.version.as_str(), write))
        .collect();
    assert_eq!(versions.len(), written.len(), "a version was issued twice");
    let count = |status| written.iter().filter(|w| w.status == status).count();
    eprintln!(
        "{} writes: {} acknowledged, {} superseded, {} unknown",
        written.len(),
        count(StatusCode::OK),
        count(StatusCode::CONFLICT),
        count(StatusCode::SERVICE_UNAVAILABLE)
    );

    let dump = wait_converged(&cluster, keys.len()).await;
    for key in keys {
        let held = dump["keys"][key]["version"]
            .as_str()
            .unwrap_or_else(|| panic!("{key} has no version: {dump}"));
        let winner = versions
            .get(held)
            .unwrap_or_else(|| panic!("{key} holds version {held}, which no write was given"));
        assert_eq!(winner.key, key);
        assert_eq!(
            dump_sha(&dump, key),
            Some(sha256_hex(winner.value.as_bytes())),
            "{key} holds another value than its version's"
        );
        // Every acknowledged write to the key is the winner or older.
        for write in written
            .iter()
            .filter(|w| w.key == key && w.status == StatusCode::OK)
        {
            assert!(
                parse_version(&write.version) <= parse_version(held),
                "acknowledged {key}={} at {} but {held} won",
                write.value,
                write.version
            );
        }
    }
}

fn now_ms() -> u64 {
    let since = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
    u64::try_from(since.as_millis()).unwrap()
}

/// Writes `value` for `key` straight into `replica` at `version`.
async fn put_versioned(replica: &Replica, key: &str, value: &str, version: &str) {
    let (status, _, body) = call(
        Method::PUT,
        &format!("{}/kv/{key}", replica.url()),
        &[("x-levee-version", version)],
        value.to_owned(),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_older_than_the_replicas_hold_is_superseded_and_its_retry_wins() {
    let cluster = start(3, json!({})).await;
    // Another writer's version, 5 s ahead of this machine's clock: within
    // the default 60 s skew bound, so levee adopts it once it sees it.
    let future = format!("{}.0.00000000000000ff", now_ms() + 5_000);
    for replica in &cluster.replicas {
        put_versioned(replica, "k", "from the future", &future).await;
    }

    let (status, headers, body) = put(&cluster.levee, "k", "now").await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(header(&headers, "x-levee-outcome"), "superseded");
    assert_eq!(header(&headers, "x-levee-held-version"), future);
    let refused = header(&headers, "x-levee-version").to_owned();
    assert!(parse_version(&refused) < parse_version(&future));
    assert_eq!(acks(&headers), "0/3");
    let error: Value = serde_json::from_str(&body).expect("a JSON error");
    assert_eq!(error["error"], "superseded");
    for replica in &cluster.replicas {
        let dump = try_dump(replica).await.expect("dump");
        assert_eq!(dump["keys"]["k"]["version"], future.as_str(), "{dump}");
    }

    let (status, headers, body) = put(&cluster.levee, "k", "retried").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let retried = header(&headers, "x-levee-version").to_owned();
    assert!(
        parse_version(&retried) > parse_version(&future),
        "the retry's version {retried} is not past the held {future}"
    );
    let dumps = wait_all_hold(&cluster, "k", "retried").await;
    for dump in &dumps {
        assert_eq!(dump["keys"]["k"]["version"], retried.as_str(), "{dump}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_quorum_with_an_ack_is_unknown_not_the_others_rejection() {
    let cluster = start(3, json!({})).await;
    for replica in &cluster.replicas[1..] {
        replica
            .fault(json!({"fail_status": 422, "methods": ["PUT"]}))
            .await;
    }
    let (status, headers, body) = put(&cluster.levee, "k", "v").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(header(&headers, "x-levee-outcome"), "unknown");
    assert_eq!(acks(&headers), "1/3");
    let error: Value = serde_json::from_str(&body).expect("a JSON error");
    let outcomes = error["outcomes"].as_array().expect("outcomes");
    let rejected = outcomes
        .iter()
        .filter(|o| o["outcome"] == "rejected with 422")
        .count();
    assert_eq!(rejected, 2, "{error}");
    // The acknowledging replica keeps the write.
    let dump = try_dump(&cluster.replicas[0]).await.expect("dump");
    assert_eq!(
        dump_sha(&dump, "k"),
        Some(sha256_hex(b"v")),
        "r0 acknowledged the write: {dump}"
    );

    // When every replica rejects the write, their 4xx is the answer.
    cluster.replicas[0]
        .fault(json!({"fail_status": 422, "methods": ["PUT"]}))
        .await;
    let (status, headers, body) = put(&cluster.levee, "k2", "v").await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(header(&headers, "x-levee-outcome"), "rejected");
    assert_eq!(acks(&headers), "0/3");
}
