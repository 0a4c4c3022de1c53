//! Plugins from an OCI registry, end to end with real processes: Debian's
//! `docker-registry` (the distribution registry 2.8, installed by
//! `scripts/ensure-registry.sh`) started on a loopback port with its own
//! storage, `levee plugin push`, and a `levee serve` in front of two real
//! `kv-replica`s whose retry plugin is loaded with
//! `PUT /admin/plugins/retry/oci`.
//!
//! What must hold:
//! - the registry takes the Wasm OCI media types; a push prints the
//!   manifest digest, and the same file pushes to the same digest; a file
//!   that is not a plugin is not pushed;
//! - a pull by digest loads the plugin and the retries of reads whose
//!   primary fails are decided by it (`x-levee-policy-version`);
//! - a tag-only reference (400), a digest the registry does not hold (502),
//!   an unreachable registry (502), a blob edited in the registry's storage
//!   (502, digest mismatch, nothing cached), a blob that is not a component
//!   (422) and an artifact without a Wasm layer (422) each fail with their
//!   reason while the previous version keeps deciding;
//! - with the registry stopped, digests pulled before load from the cache
//!   under `<data_dir>/oci-cache`, after a restart too; a damaged cache
//!   entry is caught when read (and deleted), not loaded.

mod control;
#[path = "oci/registry.rs"]
mod registry;
mod support;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use hyper::{Method, StatusCode};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use control::{
    admin, keys_with_primary, plugin_bytes, plugin_dir_with_retry, plugin_view, restart,
    retrying_config, version_of, wait_for_version,
};
use registry::Registry;
use support::{LEVEE, Levee, Replica, call};

/// A loopback port nothing listens on (the OS's pick, released).
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn dist(relative: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../plugins/dist")
        .join(relative)
}

/// `levee plugin push FILE TARGET --json`: exit status, stdout, stderr.
async fn cli_push(file: &Path, target: &str) -> (bool, String, String) {
    let file = file.to_path_buf();
    let target = target.to_string();
    let output = tokio::task::spawn_blocking(move || {
        Command::new(LEVEE)
            .args(["plugin", "push"])
            .arg(&file)
            .arg(&target)
            .arg("--json")
            .env("LEVEE_LOG", "warn")
            .stdin(Stdio::null())
            .output()
            .expect("run levee plugin push")
    })
    .await
    .unwrap();
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// Pushes `file` with the CLI, which must succeed; its JSON answer.
async fn pushed(file: &Path, target: &str) -> Value {
    let (ok, stdout, stderr) = cli_push(file, target).await;
    assert!(ok, "levee plugin push {target} failed: {stderr}");
    serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("push answer ({e}): {stdout}"))
}

/// `sha256:` and the hex SHA-256 of `bytes`.
fn digest_of(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

/// Pushes an artifact by the distribution API itself (no validation): a
/// config, one layer of `layer_media_type`, the manifest under `tag`.
/// Returns the digest reference.
async fn raw_push(host: &str, repository: &str, layer_media_type: &str, layer: &[u8]) -> String {
    let config = br#"{"architecture":"wasm","os":"wasip2"}"#;
    upload_blob(host, repository, config).await;
    upload_blob(host, repository, layer).await;
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.wasm.config.v0+json", "digest": digest_of(config), "size": config.len()},
        "layers": [{"mediaType": layer_media_type, "digest": digest_of(layer), "size": layer.len()}],
    })
    .to_string();
    let (status, _, body) = call(
        Method::PUT,
        &format!("http://{host}/v2/{repository}/manifests/v1"),
        &[("content-type", "application/vnd.oci.image.manifest.v1+json")],
        manifest.clone(),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "manifest push: {body}");
    format!("{host}/{repository}@{}", digest_of(manifest.as_bytes()))
}

async fn upload_blob(host: &str, repository: &str, bytes: &[u8]) {
    let (status, headers, body) = call(
        Method::POST,
        &format!("http://{host}/v2/{repository}/blobs/uploads/"),
        &[],
        "",
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED, "upload start: {body}");
    let location = headers["location"].to_str().unwrap();
    let location = if location.starts_with('/') {
        format!("http://{host}{location}")
    } else {
        location.to_string()
    };
    let separator = if location.contains('?') { '&' } else { '?' };
    let url = format!("{location}{separator}digest={}", digest_of(bytes));
    let (status, _, body) = call(Method::PUT, &url, &[], bytes.to_vec()).await;
    assert_eq!(status, StatusCode::CREATED, "upload: {body}");
}

/// `PUT /admin/plugins/retry/oci` with `reference`.
async fn pull(levee: &Levee, reference: &str) -> (StatusCode, Value) {
    let body = json!({ "reference": reference }).to_string();
    let started = std::time::Instant::now();
    let (status, _, body) = admin(levee, Method::PUT, "/admin/plugins/retry/oci", body).await;
    let body: Value =
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("not JSON ({e}): {body}"));
    // Reported, not asserted: pull (or cache read), compile, swap.
    println!(
        "PUT .../oci {status} in {} ms (fetched from {})",
        started.elapsed().as_millis(),
        body["fetched_from"]
    );
    (status, body)
}

/// Which version decided the retry of a read whose primary fails.
async fn decided_by(levee: &Levee, key: &str) -> String {
    let (status, headers, body) =
        call(Method::GET, &levee.url(&format!("/kv/kv/{key}")), &[], "").await;
    assert_eq!(status, StatusCode::OK, "read of {key}: {body}");
    headers["x-levee-policy-version"]
        .to_str()
        .unwrap()
        .to_string()
}

/// A refused pull: the status, the reason's words, and `version` still
/// serving and deciding; the reason is the plugin's last error.
async fn refused(
    levee: &Levee,
    reference: &str,
    status: StatusCode,
    words: &str,
    version: &str,
    key: &str,
) {
    let (answered, body) = pull(levee, reference).await;
    assert_eq!(answered, status, "pull {reference}: {body}");
    let reason = body["reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains(words),
        "pull {reference}: {reason:?} lacks {words:?}"
    );
    let view = plugin_view(levee, "retry").await;
    assert_eq!(view["version"], version, "after pull {reference}: {view}");
    if status != StatusCode::BAD_REQUEST {
        // As for a refused upload: `failed` with the reason, the previous
        // version still bound and deciding.
        assert_eq!(view["status"], "failed", "{view}");
        let last_error = view["last_error"].as_str().unwrap_or_default();
        assert!(
            last_error.contains(words),
            "last_error {last_error:?} lacks {words:?}"
        );
    }
    assert_eq!(
        decided_by(levee, key).await,
        version,
        "after pull {reference}"
    );
    println!("refused as expected ({answered}): {reason}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plugins_pulled_by_digest_from_a_registry_and_served_from_the_cache() {
    let mut registry = Registry::start();
    registry.wait_ready().await;
    let host = registry.host.clone();
    let backoff = plugin_bytes("retry-backoff.wasm");
    let fixed = plugin_bytes("zoo/retry-fixed.wasm");
    let (backoff_version, fixed_version) = (version_of(&backoff), version_of(&fixed));

    // Push: the digest, reproducibly; a non-plugin is not pushed.
    let target = format!("{host}/levee/retry-backoff:v1");
    let first = pushed(&dist("retry-backoff.wasm"), &target).await;
    let digest = first["digest"].as_str().unwrap().to_string();
    assert!(
        digest.starts_with("sha256:") && digest.len() == 71,
        "{first}"
    );
    assert_eq!(first["version"], backoff_version.as_str());
    assert_eq!(first["layer_digest"], format!("sha256:{backoff_version}"));
    let backoff_ref = first["reference"].as_str().unwrap().to_string();
    assert_eq!(backoff_ref, format!("{host}/levee/retry-backoff@{digest}"));
    let again = pushed(
        &dist("retry-backoff.wasm"),
        &format!("{host}/levee/retry-backoff:v2"),
    )
    .await;
    assert_eq!(
        again["digest"],
        digest.as_str(),
        "the same file, the same digest"
    );
    let garbage = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(garbage.path(), b"not a component").unwrap();
    let (ok, _, stderr) = cli_push(garbage.path(), &format!("{host}/levee/garbage:v1")).await;
    assert!(!ok && stderr.contains("not a loadable plugin"), "{stderr}");
    let (status, _, _) = call(
        Method::GET,
        &format!("http://{host}/v2/levee/garbage/tags/list"),
        &[],
        "",
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "nothing was pushed");

    // levee with `retry` = retry-fixed from its plugin directory; r0 fails
    // every read, so reads led by r0 are retried by the plugin on r1.
    let replicas = vec![Replica::spawn("r0"), Replica::spawn("r1")];
    replicas[0]
        .fault(json!({"fail_status": 503, "methods": ["GET"]}))
        .await;
    let key = keys_with_primary(&["r0", "r1"], 0, 1).remove(0);
    replicas[1].put(&key, "value").await;
    let plugin_dir = plugin_dir_with_retry(&fixed);
    let levee = Levee::start(retrying_config(&replicas, plugin_dir.path())).await;
    wait_for_version(&levee, "retry", &fixed_version).await;
    assert_eq!(decided_by(&levee, &key).await, fixed_version);

    // Pull by digest and bind.
    let (status, body) = pull(&levee, &backoff_ref).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["version"], backoff_version.as_str(), "{body}");
    assert_eq!(body["digest"], digest.as_str(), "{body}");
    assert_eq!(body["fetched_from"], "registry", "{body}");
    assert_eq!(body["services"], json!(["kv"]), "{body}");
    wait_for_version(&levee, "retry", &backoff_version).await;
    assert_eq!(decided_by(&levee, &key).await, backoff_version);
    let cache = levee.dir.path().join("data/oci-cache/sha256");
    assert!(cache.join(format!("{backoff_version}.wasm")).is_file());
    assert!(cache.join(format!("{}.json", &digest[7..])).is_file());

    // Failures, each with its reason; retry-backoff keeps deciding.
    let v = backoff_version.as_str();
    refused(
        &levee,
        &target,
        StatusCode::BAD_REQUEST,
        "by digest only",
        v,
        &key,
    )
    .await;
    let unknown = format!(
        "{host}/levee/retry-backoff@{}",
        digest_of(b"no such manifest")
    );
    refused(
        &levee,
        &unknown,
        StatusCode::BAD_GATEWAY,
        "MANIFEST_UNKNOWN",
        v,
        &key,
    )
    .await;
    let nowhere = format!(
        "127.0.0.1:{}/levee/retry-fixed@{}",
        free_port(),
        digest_of(b"x")
    );
    refused(
        &levee,
        &nowhere,
        StatusCode::BAD_GATEWAY,
        "cannot connect",
        v,
        &key,
    )
    .await;

    let tampered = pushed(
        &dist("zoo/retry-fixed.wasm"),
        &format!("{host}/levee/tampered:v1"),
    )
    .await;
    let blob = registry.blob_file(&fixed_version);
    let mut bytes = std::fs::read(&blob).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0xff;
    std::fs::write(&blob, &bytes).unwrap();
    let tampered_ref = tampered["reference"].as_str().unwrap();
    refused(
        &levee,
        tampered_ref,
        StatusCode::BAD_GATEWAY,
        "digest mismatch",
        v,
        &key,
    )
    .await;
    assert!(
        !cache.join(format!("{fixed_version}.wasm")).exists(),
        "a tampered blob is not cached"
    );
    bytes[middle] ^= 0xff;
    std::fs::write(&blob, &bytes).unwrap();

    let not_component = raw_push(
        &host,
        "levee/not-a-component",
        "application/wasm",
        b"\0asm but not",
    )
    .await;
    refused(
        &levee,
        &not_component,
        StatusCode::UNPROCESSABLE_ENTITY,
        "component",
        v,
        &key,
    )
    .await;
    let tarball = raw_push(
        &host,
        "levee/tarball",
        "application/vnd.oci.image.layer.v1.tar+gzip",
        b"tar",
    )
    .await;
    refused(
        &levee,
        &tarball,
        StatusCode::UNPROCESSABLE_ENTITY,
        "exactly one application/wasm layer",
        v,
        &key,
    )
    .await;

    // A second version from the registry, then the registry goes away.
    let fixed_pushed = pushed(
        &dist("zoo/retry-fixed.wasm"),
        &format!("{host}/levee/retry-fixed:v1"),
    )
    .await;
    let fixed_ref = fixed_pushed["reference"].as_str().unwrap().to_string();
    let (status, body) = pull(&levee, &fixed_ref).await;
    assert_eq!(
        (status, &body["fetched_from"]),
        (StatusCode::OK, &json!("registry")),
        "{body}"
    );
    assert_eq!(decided_by(&levee, &key).await, fixed_version);
    registry.stop();

    let (status, body) = pull(&levee, &backoff_ref).await;
    assert_eq!(
        status,
        StatusCode::OK,
        "registry down, from the cache: {body}"
    );
    assert_eq!(body["fetched_from"], "cache", "{body}");
    assert_eq!(decided_by(&levee, &key).await, backoff_version);

    // A restart on the same data directory: the cache is still there.
    let levee = restart(levee).await;
    wait_for_version(&levee, "retry", &backoff_version).await;
    let (status, body) = pull(&levee, &fixed_ref).await;
    assert_eq!(
        status,
        StatusCode::OK,
        "after a restart, from the cache: {body}"
    );
    assert_eq!(body["fetched_from"], "cache", "{body}");
    assert_eq!(decided_by(&levee, &key).await, fixed_version);

    // A damaged cache entry is verified when read: deleted, fetched again
    // (the registry is down: 502), never loaded.
    let entry = cache.join(format!("{backoff_version}.wasm"));
    let mut bytes = std::fs::read(&entry).unwrap();
    bytes[100] ^= 0xff;
    std::fs::write(&entry, &bytes).unwrap();
    let f = fixed_version.as_str();
    refused(
        &levee,
        &backoff_ref,
        StatusCode::BAD_GATEWAY,
        "cannot connect",
        f,
        &key,
    )
    .await;
    assert!(!entry.exists(), "the damaged entry is deleted");
}
