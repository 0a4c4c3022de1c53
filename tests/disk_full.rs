//! levee on a full disk, for real: its `data_dir` is on a small tmpfs the
//! test mounts (root only; skipped with a printed reason otherwise), the
//! replicas' data lives elsewhere. A filler file takes most of the space,
//! then writes go through levee until its log runs out of space. The
//! refused write must be answered 507 `insufficient_storage` with
//! `x-levee-outcome: not-written` and a reason; every write acknowledged
//! before must read back; once the filler is deleted, writes succeed
//! again without a restart (the log was not poisoned).

mod support;
#[path = "../crates/log/tests/common/tmpfs.rs"]
mod tmpfs;

use hyper::{Method, StatusCode};
use serde_json::{Value, json};
use support::{Cluster, call};
use tmpfs::{fill, mount_tmpfs};

/// Size of the tmpfs holding levee's data_dir.
const TMPFS_BYTES: u64 = 16 << 20;
/// Space the filler leaves for levee's log.
const LEFT_FOR_LEVEE_BYTES: u64 = 512 << 10;
const BODY_BYTES: usize = 16 << 10;
/// Writes tried at most before the disk must have filled up.
const WRITES_MAX: usize = 1_000;

fn body_for(index: usize) -> String {
    let letter = (b'a' + (index % 26) as u8) as char;
    format!("{index:08}-{}", letter.to_string().repeat(BODY_BYTES))
}

async fn put(cluster: &Cluster, key: &str, body: &str) -> (StatusCode, hyper::HeaderMap, String) {
    let url = cluster.levee.url(&format!("/kv/kv/{key}"));
    call(Method::PUT, &url, &[], body.to_owned()).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_answers_507_and_writes_resume_once_space_is_freed() {
    let mount_point = tempfile::tempdir().unwrap();
    // Bound before the cluster, so it is unmounted after levee stopped.
    let Some(_mounted) = mount_tmpfs(mount_point.path(), TMPFS_BYTES, "disk_full") else {
        return;
    };
    let data_dir = mount_point.path().join("data");
    let cluster = Cluster::start_with(2, json!({}), json!({"data_dir": data_dir})).await;
    let filler = mount_point.path().join("filler");
    fill(&filler, LEFT_FOR_LEVEE_BYTES, TMPFS_BYTES);

    let mut acked = Vec::new();
    let mut refusal = None;
    for index in 0..WRITES_MAX {
        let key = format!("key-{index}");
        let body = body_for(index);
        let (status, headers, text) = put(&cluster, &key, &body).await;
        match status {
            StatusCode::OK => acked.push((key, body)),
            StatusCode::INSUFFICIENT_STORAGE => {
                refusal = Some((headers, text));
                break;
            }
            other => panic!("write {index}: unexpected {other}: {text}"),
        }
    }
    let (headers, text) = refusal.expect("the disk never filled up");
    eprintln!("507 after {} acknowledged writes: {text}", acked.len());
    assert!(
        !acked.is_empty(),
        "some writes fit before the disk was full"
    );
    assert_eq!(headers["x-levee-outcome"], "not-written");
    let error: Value = serde_json::from_str(&text).expect("a JSON error");
    assert_eq!(error["error"], "insufficient_storage");
    let reason = error["reason"].as_str().unwrap();
    assert!(reason.contains("disk space"), "{reason}");
    assert!(reason.contains("resume"), "{reason}");

    for (key, body) in &acked {
        let (status, _, text) = cluster.get(key).await;
        assert_eq!(status, StatusCode::OK, "{key}: {text}");
        assert!(&text == body, "{key} reads back what was acknowledged");
    }

    std::fs::remove_file(&filler).unwrap();
    let body = body_for(WRITES_MAX);
    let (status, _, text) = put(&cluster, "after-space-freed", &body).await;
    assert_eq!(
        status,
        StatusCode::OK,
        "writes resume without a restart: {text}"
    );
    let (status, _, text) = cluster.get("after-space-freed").await;
    assert_eq!(status, StatusCode::OK, "{text}");
    assert!(text == body);
    drop(cluster);
}
