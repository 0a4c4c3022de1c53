//! The admin API against a hostile browser and hostile files: a
//! DNS-rebinding page (a foreign `Host`), a cross-site page (`Origin`,
//! `Sec-Fetch-Site`), a token guesser flooding the log, a token too short
//! to be one, a plugin directory with a symbolic link in it, a stream of
//! bad uploads under fresh names, and a deleted plugin whose drop-in file
//! would bring it back at the next start.
//!
//! The browser's requests are written by hand on raw sockets, headers and
//! all, so the test controls exactly what levee sees.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use hyper::{Method, StatusCode};
use serde_json::{Value, json};

use crate::control::{self, TOKEN, admin, admin_json, plugin_bytes, plugin_view, version_of};
use crate::support::{LEVEE, Levee, call, reason};

/// Bound on one raw exchange's answer.
const RESPONSE_BYTES_MAX: usize = 1 << 20;
/// Longest a raw exchange may take (a loaded machine, not a hung levee).
const RAW_TIMEOUT: Duration = Duration::from_secs(60);

/// One request on a fresh connection: the request line, then `headers`
/// verbatim (no Host unless given), then `body`. Returns the status and
/// the body.
fn raw(address: SocketAddr, request_line: &str, headers: &[String], body: &[u8]) -> (u16, String) {
    let mut stream = TcpStream::connect(address).unwrap();
    stream.set_read_timeout(Some(RAW_TIMEOUT)).unwrap();
    let mut head = format!("{request_line}\r\n");
    for header in headers {
        head.push_str(header);
        head.push_str("\r\n");
    }
    head.push_str(&format!(
        "Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    ));
    stream.write_all(head.as_bytes()).unwrap();
    stream.write_all(body).unwrap();
    let mut response = Vec::new();
    let mut buffer = [0u8; 8192];
    while response.len() < RESPONSE_BYTES_MAX {
        match stream.read(&mut buffer) {
            Ok(0) | Err(_) => break,
            Ok(read) => response.extend_from_slice(&buffer[..read]),
        }
    }
    let text = String::from_utf8_lossy(&response).into_owned();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {text:?}"));
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or("");
    (status, body.to_string())
}

/// A browser-ish request: `method path HTTP/1.1` with `Host: host` and
/// `extra` headers.
fn browser(
    levee: &Levee,
    method: &str,
    path: &str,
    host: &str,
    extra: &[&str],
    body: &[u8],
) -> (u16, String) {
    let mut headers = vec![format!("Host: {host}")];
    headers.extend(extra.iter().map(|h| h.to_string()));
    raw(
        levee.admin,
        &format!("{method} {path} HTTP/1.1"),
        &headers,
        body,
    )
}

/// What an attacker would want to change, read back with a good request.
async fn admin_state(levee: &Levee) -> Value {
    let log = admin_json(levee, "/admin/log").await;
    let plugins = admin_json(levee, "/admin/plugins").await;
    let services = admin_json(levee, "/admin/services").await;
    json!({
        "checkpoint": log["latest_checkpoint"],
        "plugins": plugins
            .as_array()
            .unwrap()
            .iter()
            .map(|p| json!([p["name"], p["version"]]))
            .collect::<Vec<_>>(),
        "services": services,
    })
}

#[tokio::test]
async fn a_foreign_host_or_a_cross_site_origin_changes_nothing() {
    // Tokenless on loopback: the configuration the browser attacks target.
    let levee = Levee::start(json!({"admin_allowed_hosts": ["levee.test"]})).await;
    let own = levee.admin.to_string();
    for (version, file) in [("v1", "retry-backoff.wasm"), ("v2", "zoo/retry-fixed.wasm")] {
        let (status, body) = browser(
            &levee,
            "PUT",
            "/admin/plugins/spare",
            &own,
            &[],
            &plugin_bytes(file),
        );
        assert_eq!(status, 200, "upload {version}: {body}");
    }
    let before = admin_state(&levee).await;
    let service =
        json!({"nodes": [{"id": "x", "url": "http://127.0.0.1:9"}], "key": {"path_segment": 1}})
            .to_string();
    // A small upload body: were it accepted, even a failed load would list
    // the name. (A large body the guard never reads could reset the
    // connection before the answer is read.)
    let writes: [(&str, &str, &[u8]); 5] = [
        ("POST", "/admin/checkpoint", b""),
        ("POST", "/admin/plugins/spare/rollback", b""),
        ("DELETE", "/admin/plugins/spare", b""),
        ("PUT", "/admin/services/evil", service.as_bytes()),
        ("PUT", "/admin/plugins/evil", b"\0asm not really"),
    ];
    let rebinding = format!("evil.example:{}", levee.admin.port());
    let cross_site: [&[&str]; 4] = [
        &["Origin: http://evil.example"],
        &["Origin: null"],
        &["Origin: http://localhost:1", "Sec-Fetch-Site: same-site"],
        &["Sec-Fetch-Site: cross-site"],
    ];
    for (method, path, body) in writes {
        let (status, answer) = browser(&levee, method, path, &rebinding, &[], body);
        assert_eq!(status, 403, "{method} {path} via DNS rebinding: {answer}");
        assert!(reason(&answer).contains("admin_allowed_hosts"), "{answer}");
        for headers in cross_site {
            let (status, answer) = browser(&levee, method, path, &own, headers, body);
            assert_eq!(status, 403, "{method} {path} with {headers:?}: {answer}");
            assert!(reason(&answer).contains("web page"), "{answer}");
        }
    }
    // A rebinding page cannot read either.
    let (status, answer) = browser(&levee, "GET", "/admin/state", &rebinding, &[], b"");
    assert_eq!(status, 403, "{answer}");
    assert_eq!(admin_state(&levee).await, before, "no admin state changed");

    // The admin's own origin, a loopback name, a configured name and a
    // client without Host all pass.
    let port = levee.admin.port();
    let localhost = format!("localhost:{port}");
    let origin = format!("Origin: http://localhost:{port}");
    let fetch = "Sec-Fetch-Site: same-origin";
    let (status, answer) = browser(
        &levee,
        "POST",
        "/admin/checkpoint",
        &localhost,
        &[&origin, fetch],
        b"",
    );
    assert_eq!(status, 200, "own origin: {answer}");
    let (status, answer) = browser(
        &levee,
        "POST",
        "/admin/plugins/spare/rollback",
        &format!("[::1]:{port}"),
        &[],
        b"",
    );
    assert_eq!(status, 200, "curl on loopback: {answer}");
    let (status, answer) = browser(
        &levee,
        "GET",
        "/admin/state",
        &format!("LEVEE.test:{port}"),
        &[],
        b"",
    );
    assert_eq!(status, 200, "admin_allowed_hosts: {answer}");
    let (status, answer) = raw(levee.admin, "GET /admin/state HTTP/1.0", &[], b"");
    assert_eq!(status, 200, "HTTP/1.0 without Host: {answer}");
    let after = admin_state(&levee).await;
    assert_ne!(
        after["checkpoint"], before["checkpoint"],
        "the checkpoint was written"
    );
    let spare = plugin_view(&levee, "spare").await;
    assert_eq!(
        spare["version"],
        version_of(&plugin_bytes("retry-backoff.wasm"))
    );
}

#[tokio::test]
async fn a_token_guesser_is_counted_but_logged_once_per_interval() {
    let levee = Levee::start(json!({"admin_token": TOKEN})).await;
    const GUESSES: u32 = 200;
    let started = Instant::now();
    for guess in 0..GUESSES {
        let auth = format!("Bearer guess-{guess:016}");
        let (status, _, body) = call(
            Method::GET,
            &levee.admin_url("/admin/state"),
            &[("authorization", &auth)],
            "",
        )
        .await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    }
    let elapsed = started.elapsed();
    let (_, _, metrics) = call(Method::GET, &levee.admin_url("/metrics"), &[], "").await;
    let counted: f64 = metrics
        .lines()
        .find_map(|line| line.strip_prefix("levee_admin_auth_failures_total "))
        .and_then(|value| value.trim().parse().ok())
        .unwrap_or_else(|| panic!("no auth failure counter in:\n{metrics}"));
    assert!(
        counted >= f64::from(GUESSES),
        "every refusal counted: {counted}"
    );
    let logged = levee
        .proc
        .stderr()
        .lines()
        .filter(|line| line.contains("admin request refused"))
        .count();
    // One line per 10 s interval, plus one for an interval boundary.
    let allowed = 2 + (elapsed.as_secs() / 10) as usize;
    assert!(
        (1..=allowed).contains(&logged),
        "{logged} refusal lines for {GUESSES} guesses in {elapsed:?}:\n{}",
        levee.proc.stderr()
    );
}

#[test]
fn a_short_token_from_the_environment_stops_the_start() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("levee.json");
    let body = json!({
        "listeners": {"data": "127.0.0.1:0", "admin": "127.0.0.1:0"},
        "data_dir": dir.path().join("data"),
    });
    std::fs::write(&config, body.to_string()).unwrap();
    let child = Command::new(LEVEE)
        .args(["serve", "--config", config.to_str().unwrap()])
        .env("LEVEE_ADMIN_TOKEN", "hunter2")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    // Bounded: the refusal comes before anything is bound.
    let waiter = std::thread::spawn(move || child.wait_with_output());
    for _ in 0..600 {
        if waiter.is_finished() {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    if !waiter.is_finished() {
        // SAFETY: kill(2) on our own child's PID, not reaped yet.
        unsafe { libc::kill(pid as i32, libc::SIGKILL) };
        panic!("levee kept running with a 7-byte admin token");
    }
    let output = waiter.join().unwrap().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{stderr}");
    assert!(
        stderr.contains("LEVEE_ADMIN_TOKEN") && stderr.contains("16 to 1024 bytes"),
        "the refusal names the source and the rule: {stderr}"
    );
}

#[tokio::test]
async fn bad_files_and_bad_uploads_take_no_slot_and_deleted_plugins_stay_deleted() {
    let plugin_dir = tempfile::tempdir().unwrap();
    let outside = tempfile::tempdir().unwrap();
    std::fs::write(
        outside.path().join("real.wasm"),
        plugin_bytes("retry-backoff.wasm"),
    )
    .unwrap();
    std::os::unix::fs::symlink(
        outside.path().join("real.wasm"),
        plugin_dir.path().join("link.wasm"),
    )
    .unwrap();
    control::drop_in(
        plugin_dir.path(),
        "spare",
        &plugin_bytes("route-affinity.wasm"),
    );
    let levee = Levee::start(json!({
        "admin_token": TOKEN,
        "plugin_dir": control::path_of(&plugin_dir),
    }))
    .await;

    // The link is refused with its reason, not followed.
    let link = plugin_view(&levee, "link").await;
    assert_eq!(link["status"], "failed", "{link}");
    assert!(
        link["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("symbolic link")),
        "{link}"
    );
    assert_eq!(plugin_view(&levee, "spare").await["status"], "active");

    // More bad uploads under fresh names than the registry has slots.
    let slots = levee_plugin::registry::PLUGINS_MAX_DEFAULT;
    for i in 0..slots + 4 {
        let path = format!("/admin/plugins/junk{i}");
        let (status, _, body) = admin(&levee, Method::PUT, &path, "not a component").await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{path}: {body}");
    }
    let (status, _, body) = admin(
        &levee,
        Method::PUT,
        "/admin/plugins/good",
        plugin_bytes("retry-backoff.wasm"),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "a real plugin still fits: {body}");
    let listed = admin_json(&levee, "/admin/plugins").await;
    let failed = listed
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["status"] == "failed")
        .count();
    assert!(
        failed <= levee_plugin::registry::FAILED_NAMES_MAX,
        "failed names are bounded: {failed}"
    );

    // DELETE removes the drop-in file (a link itself, not its target).
    for name in ["spare", "link"] {
        let (status, _, body) = admin(
            &levee,
            Method::DELETE,
            &format!("/admin/plugins/{name}"),
            "",
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{name}: {body}");
        assert!(
            std::fs::symlink_metadata(plugin_dir.path().join(format!("{name}.wasm"))).is_err(),
            "{name}.wasm is gone"
        );
    }
    assert!(outside.path().join("real.wasm").exists());

    let levee = control::restart(levee).await;
    for name in ["spare", "link"] {
        let (status, _, body) =
            admin(&levee, Method::GET, &format!("/admin/plugins/{name}"), "").await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{name} came back: {body}");
    }
    assert_eq!(plugin_view(&levee, "good").await["status"], "active");
}
