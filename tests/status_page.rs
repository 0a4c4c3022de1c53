//! The status page, rendered by a real headless Chromium against a real
//! levee: the page must fetch `/admin/state` with the token it was given in
//! the URL fragment and draw what levee knows (service names, node ids,
//! plugin versions, the ring as SVG arcs, the log), and with a wrong token
//! it must show its login form instead of data.
//!
//! Chromium comes from the Debian `chromium` package (`scripts/test.sh`
//! installs it); the test fails with instructions if it is missing, never
//! skips. It runs with `--dump-dom` after a virtual-time budget, which lets
//! the page's fetches and timers run without wall-clock sleeps.

mod control;
mod support;

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::json;

use control::{TOKEN, plugin_bytes, version_of};
use support::{Levee, Replica};

/// Longest a Chromium run may take (it is killed after).
const CHROMIUM_RUN_MAX: Duration = Duration::from_secs(120);
/// Virtual time the page gets: its first fetch and two refreshes.
const VIRTUAL_TIME_BUDGET_MS: u32 = 5_000;

fn chromium() -> PathBuf {
    if let Ok(path) = std::env::var("CHROMIUM") {
        return PathBuf::from(path);
    }
    for candidate in [
        "/usr/bin/chromium",
        "/usr/bin/chromium-browser",
        "/usr/bin/google-chrome",
    ] {
        if std::path::Path::new(candidate).exists() {
            return PathBuf::from(candidate);
        }
    }
    panic!(
        "Chromium is required for the status page test: install it with \
         `bash scripts/ensure-apt.sh chromium` (scripts/test.sh does), or set CHROMIUM=/path/to/chromium"
    );
}

/// Loads `url` in headless Chromium and returns the DOM after the budget.
fn render_dom(url: &str) -> String {
    let profile = tempfile::tempdir().unwrap();
    let mut child = Command::new(chromium())
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            "--hide-scrollbars",
            &format!("--user-data-dir={}", profile.path().display()),
            &format!("--virtual-time-budget={VIRTUAL_TIME_BUDGET_MS}"),
            "--dump-dom",
            url,
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn chromium");
    let stdout = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut dom = String::new();
        std::io::Read::read_to_string(&mut std::io::BufReader::new(stdout), &mut dom).map(|_| dom)
    });
    let started = std::time::Instant::now();
    loop {
        if child.try_wait().unwrap().is_some() {
            break;
        }
        if started.elapsed() > CHROMIUM_RUN_MAX {
            let _ = child.kill();
            let _ = child.wait();
            panic!("chromium did not finish within {CHROMIUM_RUN_MAX:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    reader.join().unwrap().expect("chromium's DOM")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_status_page_shows_services_nodes_plugins_and_the_ring() {
    let backoff = plugin_bytes("retry-backoff.wasm");
    let plugin_dir = control::plugin_dir_with_retry(&backoff);
    let replicas = vec![
        Replica::spawn("r0"),
        Replica::spawn("r1"),
        Replica::spawn("r2"),
    ];
    let mut config = control::retrying_config(&replicas, plugin_dir.path());
    config["services"][0]["name"] = json!("inventory");
    let levee = Levee::start(config).await;
    let (status, _, body) = support::call(
        hyper::Method::PUT,
        &levee.url("/inventory/kv/apple"),
        &[],
        "red",
    )
    .await;
    assert!(status.is_success(), "{status} {body}");

    let page = levee.admin_url(&format!("/admin/#token={TOKEN}"));
    let dom = tokio::task::spawn_blocking(move || render_dom(&page))
        .await
        .unwrap();
    let version = version_of(&backoff);
    for expected in [
        "data-service=\"inventory\"",
        "data-node=\"r0\"",
        "data-node=\"r1\"",
        "data-node=\"r2\"",
        "data-plugin=\"retry\"",
        &version[..12],
        "retry-policy",
        ">active<",
        ">ready<",
        "last LSN",
        "ring of inventory",
    ] {
        assert!(
            dom.contains(expected),
            "the rendered page lacks {expected:?}:\n{dom}"
        );
    }
    let arcs = dom.matches("<path d=\"M").count();
    assert!(
        arcs >= 3,
        "the ring is drawn with at least one arc per node ({arcs} arcs):\n{dom}"
    );
    assert!(
        !dom.contains(">locked<"),
        "the token from the fragment was used:\n{dom}"
    );

    let locked = levee.admin_url("/admin/#token=wrong-token-wrong-token");
    let dom = tokio::task::spawn_blocking(move || render_dom(&locked))
        .await
        .unwrap();
    assert!(
        dom.contains(">locked<"),
        "a wrong token shows the login form:\n{dom}"
    );
    assert!(dom.contains("wrong admin token"), "and says why:\n{dom}");
    assert!(!dom.contains("data-node=\"r0\""), "and no data:\n{dom}");
}
