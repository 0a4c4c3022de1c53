//! The offline tools of the `levee` binary, run as real processes:
//! `levee log inspect`, `levee log dump` and `levee plugin check`.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use levee_log::{Log, LogOptions};

const LEVEE: &str = env!("CARGO_BIN_EXE_levee");

fn levee(args: &[&str]) -> Output {
    Command::new(LEVEE)
        .args(args)
        .env("LEVEE_LOG", "warn")
        .output()
        .expect("run levee")
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// A log of three records written through `levee_log` itself.
fn write_log(dir: &Path) {
    let (log, _) = Log::open(dir, LogOptions::default()).expect("open log");
    for payload in ["first-record-payload", "second", "third"] {
        log.append_blocking(7, payload.as_bytes().to_vec())
            .expect("append");
    }
    drop(log);
}

/// Flips one byte of `needle` inside the log's files.
fn corrupt(dir: &Path, needle: &[u8]) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let mut bytes = std::fs::read(&path).unwrap();
        if let Some(at) = bytes.windows(needle.len()).position(|w| w == needle) {
            bytes[at + 3] ^= 0xff;
            std::fs::write(&path, bytes).unwrap();
            return;
        }
    }
    panic!("payload not found in {}", dir.display());
}

#[test]
fn log_inspect_reports_a_healthy_log_and_fails_on_corruption() {
    let dir = tempfile::tempdir().unwrap();
    let log_dir = dir.path().join("log");
    write_log(&log_dir);
    let log = log_dir.to_str().unwrap();

    let output = levee(&["log", "inspect", log]);
    assert!(output.status.success(), "{output:?}");
    assert!(
        stdout(&output).contains("status: OK"),
        "{}",
        stdout(&output)
    );

    let output = levee(&["log", "inspect", log, "--json"]);
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).expect("json report");
    assert_eq!(
        (report["records"].as_u64(), report["last_lsn"].as_u64()),
        (Some(3), Some(3))
    );

    corrupt(&log_dir, b"first-record-payload");
    let output = levee(&["log", "inspect", log]);
    assert_eq!(
        output.status.code(),
        Some(1),
        "corruption must fail: {}",
        stdout(&output)
    );
    assert!(stdout(&output).contains("CORRUPT"), "{}", stdout(&output));
}

#[test]
fn log_dump_prints_records_as_json_lines() {
    let dir = tempfile::tempdir().unwrap();
    write_log(dir.path());
    let output = levee(&[
        "log",
        "dump",
        dir.path().to_str().unwrap(),
        "--from",
        "2",
        "--limit",
        "5",
    ]);
    assert!(output.status.success(), "{output:?}");
    let lines: Vec<serde_json::Value> = stdout(&output)
        .lines()
        .map(|l| serde_json::from_str(l).expect("json line"))
        .collect();
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[0]["lsn"], 2);
    assert_eq!(lines[0]["kind"], 7);
    assert_eq!(lines[0]["payload_hex"], hex::encode("second"));
    assert_eq!(lines[1]["lsn"], 3);

    corrupt(dir.path(), b"first-record-payload");
    let output = levee(&["log", "dump", dir.path().to_str().unwrap(), "--from", "1"]);
    assert_eq!(output.status.code(), Some(1), "{output:?}");
}

#[test]
fn plugin_check_accepts_a_policy_and_refuses_garbage() {
    let dir = tempfile::tempdir().unwrap();
    let garbage = dir.path().join("garbage.wasm");
    std::fs::write(&garbage, b"\0asm not really").unwrap();
    let output = levee(&["plugin", "check", garbage.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("plugin check failed"),
        "{output:?}"
    );

    let plugin: PathBuf = [
        env!("CARGO_MANIFEST_DIR"),
        "..",
        "plugins",
        "dist",
        "retry-backoff.wasm",
    ]
    .iter()
    .collect();
    assert!(
        plugin.exists(),
        "{} is missing: run scripts/build-plugins.sh",
        plugin.display()
    );
    let output = levee(&[
        "plugin",
        "check",
        plugin.to_str().unwrap(),
        "--config",
        r#"{"max_attempts": 2}"#,
    ]);
    assert!(output.status.success(), "{output:?}");
    assert!(
        stdout(&output).starts_with("ok: implements world"),
        "{}",
        stdout(&output)
    );
    let output = levee(&[
        "plugin",
        "check",
        plugin.to_str().unwrap(),
        "--config",
        r#"{"max_attempts": 0}"#,
    ]);
    assert_eq!(
        output.status.code(),
        Some(1),
        "configure must reject max_attempts 0: {output:?}"
    );
}

/// Longest wait for `levee serve` to refuse or to become ready (bounded
/// polls of its exit status and stderr).
const SERVE_POLLS: u32 = 1200;
const SERVE_POLL_PAUSE: std::time::Duration = std::time::Duration::from_millis(50);

/// A levee config whose `data_dir` is `data_dir` (one service; its replica
/// need not run: start-up does not contact it).
fn serve_config(dir: &Path, data_dir: &Path) -> PathBuf {
    let config = serde_json::json!({
        "listeners": {"data": "127.0.0.1:0", "admin": "127.0.0.1:0"},
        "data_dir": data_dir,
        "fsync": "always",
        "services": [{
            "name": "kv",
            "nodes": [{"id": "r0", "url": "http://127.0.0.1:9"}],
            "key": {"path_segment": 1},
        }],
    });
    let path = dir.join("levee.json");
    std::fs::write(&path, serde_json::to_vec_pretty(&config).unwrap()).unwrap();
    path
}

/// `levee serve` as a child, killed by PID if still running when dropped.
struct Serve {
    child: std::process::Child,
    stderr_path: PathBuf,
}

impl Serve {
    fn start(config: &Path, extra: &[&str], stderr_path: PathBuf) -> Serve {
        let stderr = std::fs::File::create(&stderr_path).unwrap();
        let child = Command::new(LEVEE)
            .args(["serve", "--config", config.to_str().unwrap()])
            .args(extra)
            .env("LEVEE_LOG", "info")
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(stderr)
            .spawn()
            .expect("spawn levee serve");
        Serve { child, stderr_path }
    }

    fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr_path).unwrap_or_default()
    }

    /// Polls until the process exits (its code) or logs `levee ready` (None).
    fn exit_or_ready(&mut self) -> Option<i32> {
        for _ in 0..SERVE_POLLS {
            if let Some(status) = self.child.try_wait().unwrap() {
                return Some(status.code().unwrap_or(-1));
            }
            if self.stderr().contains("levee ready") {
                return None;
            }
            std::thread::sleep(SERVE_POLL_PAUSE);
        }
        panic!(
            "levee serve neither exited nor became ready:\n{}",
            self.stderr()
        );
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn serve_refuses_a_corrupt_log_naming_the_damage_and_repair_cuts_it() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("data");
    let log_dir = data_dir.join("log");
    write_log(&log_dir);
    // Damage followed by valid records written after it was durable.
    corrupt(&log_dir, b"first-record-payload");
    let config = serve_config(dir.path(), &data_dir);

    let mut refused = Serve::start(&config, &[], dir.path().join("refused.log"));
    let code = refused.exit_or_ready();
    let stderr = refused.stderr();
    assert!(
        matches!(code, Some(code) if code != 0),
        "must refuse:\n{stderr}"
    );
    assert!(stderr.contains("seg-00000000000000000001.log"), "{stderr}");
    assert!(stderr.contains("at byte offset 32"), "{stderr}");
    assert!(stderr.contains("levee serve --repair"), "{stderr}");

    let mut repaired = Serve::start(&config, &["--repair"], dir.path().join("repaired.log"));
    let code = repaired.exit_or_ready();
    let stderr = repaired.stderr();
    assert_eq!(code, None, "--repair must start:\n{stderr}");
    assert!(stderr.contains("--repair cut the corrupt log"), "{stderr}");
    let broken = std::fs::read_dir(&log_dir)
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .contains(".broken")
        })
        .count();
    assert_eq!(broken, 1, "the cut bytes are kept as .broken");
}
