//! `levee plugin new`, for every language and world: the real binary
//! writes each of the 12 scaffolds into a temporary directory, and each is
//! built once into a component with its own build command, passes its own
//! one test, and loads in `levee plugin check --json` as the world it was
//! made for, its default config accepted.
//!
//! Cost (see `scaffolds_build_pass_their_test_and_load`): the Rust
//! scaffolds share one target dir under cargo's `target/tmp`, so their
//! dependencies (and, on the Debian route, std) compile once and stay
//! compiled for the next run; the JavaScript and Python scaffolds use the
//! componentize-js and componentize-py that `scripts/build-plugins.sh`
//! installs into `plugins/target` (`scripts/test.sh` runs it before the
//! tests; this test installs nothing). The three languages run side by
//! side. A missing tool fails the test with the step that installs it.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

const LEVEE: &str = env!("CARGO_BIN_EXE_levee");

/// `--world` values with the WIT world each must implement.
const WORLDS: [(&str, &str); 4] = [
    ("retry", "retry-policy"),
    ("routing", "routing-policy"),
    ("checkpoint", "checkpoint-policy"),
    ("write", "write-policy"),
];

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The tools `scripts/build-plugins.sh` installs for JS and Python.
fn js_tools_bin() -> PathBuf {
    repo().join("plugins/target/js-tools/node_modules/.bin")
}
fn py_venv_bin() -> PathBuf {
    repo().join("plugins/target/py-venv/bin")
}

/// PATH with `dir` first.
fn path_with(dir: &Path) -> std::ffi::OsString {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let dirs = std::iter::once(dir.to_path_buf()).chain(std::env::split_paths(&path));
    std::env::join_paths(dirs).expect("PATH entries")
}

/// `command` without the outer cargo's settings (target dir, rustc, flags,
/// jobserver), as `scripts/build-plugins.sh` strips them; registry and
/// network settings stay.
fn scrubbed(mut command: Command) -> Command {
    for (name, _) in std::env::vars_os() {
        let Some(name) = name.to_str() else { continue };
        let keep = name == "CARGO_HOME"
            || [
                "CARGO_NET_",
                "CARGO_HTTP_",
                "CARGO_REGISTRY_",
                "CARGO_REGISTRIES_",
            ]
            .iter()
            .any(|prefix| name.starts_with(prefix));
        let outer = name.starts_with("CARGO")
            || name.starts_with("RUSTC")
            || name.starts_with("RUSTDOC")
            || name == "RUSTFLAGS"
            || name == "RUST_RECURSION_COUNT";
        if outer && !keep {
            command.env_remove(name);
        }
    }
    command
        .env("LEVEE_LOG", "warn")
        .env("NPM_CONFIG_UPDATE_NOTIFIER", "false");
    command
}

/// Runs `command`; its output, or what failed with the end of its output.
fn run(what: &str, command: Command) -> Result<Output, String> {
    let mut command = scrubbed(command);
    let output = command
        .output()
        .map_err(|e| format!("{what}: cannot run {:?}: {e}", command.get_program()))?;
    if output.status.success() {
        return Ok(output);
    }
    let tail = |bytes: &[u8]| {
        let text = String::from_utf8_lossy(bytes);
        let start = text.len().saturating_sub(4000);
        let start = (start..=text.len())
            .find(|&i| text.is_char_boundary(i))
            .unwrap_or(0);
        text[start..].to_string()
    };
    Err(format!(
        "{what} failed ({}):\n--- stdout\n{}\n--- stderr\n{}",
        output.status,
        tail(&output.stdout),
        tail(&output.stderr)
    ))
}

fn command_in(dir: &Path, program: impl AsRef<std::ffi::OsStr>, args: &[&str]) -> Command {
    let mut command = Command::new(program);
    command.current_dir(dir).args(args);
    command
}

/// A tool the language needs is there, or the step that installs it.
fn require(tool: &Path, install: &str) -> Result<(), String> {
    if tool.exists() {
        Ok(())
    } else {
        Err(format!("{} is missing: {install}", tool.display()))
    }
}

fn require_program(program: &str, install: &str) -> Result<(), String> {
    match Command::new(program).arg("--version").output() {
        Ok(output) if output.status.success() => Ok(()),
        _ => Err(format!("`{program} --version` does not run: {install}")),
    }
}

#[derive(Clone, Copy, Debug)]
enum Lang {
    Rust,
    Js,
    Python,
}

impl Lang {
    fn arg(self) -> &'static str {
        match self {
            Lang::Rust => "rust",
            Lang::Js => "js",
            Lang::Python => "python",
        }
    }

    fn preflight(self) -> Result<(), String> {
        const BUILD_PLUGINS: &str = "run scripts/build-plugins.sh (scripts/test.sh does), \
            which installs it";
        match self {
            Lang::Rust => {
                require_program("cargo", "install Rust with rustup")?;
                rust_route().map(drop)
            }
            Lang::Js => {
                require_program("node", BUILD_PLUGINS)?;
                require_program("npm", BUILD_PLUGINS)?;
                require(
                    &js_tools_bin().join("componentize-js"),
                    "run scripts/build-plugins.sh (scripts/test.sh does), which installs \
                     componentize-js 0.23.0 into plugins/target/js-tools",
                )
            }
            Lang::Python => require(
                &py_venv_bin().join("componentize-py"),
                "run scripts/build-plugins.sh (scripts/test.sh does), which installs \
                 componentize-py 0.25.1 into the venv plugins/target/py-venv",
            ),
        }
    }

    /// Builds the scaffold in `dir` into `<name>.wasm` with its own build
    /// command, then runs its own test; asserts the test count is one.
    fn build_and_test(self, dir: &Path) -> Result<(), String> {
        match self {
            Lang::Rust => {
                // One target dir for every Rust scaffold, kept between runs.
                let target = Path::new(env!("CARGO_TARGET_TMPDIR")).join("plugin-scaffolds");
                let mut build = command_in(dir, dir.join("build.sh"), &["--locked"]);
                build
                    .env("CARGO_TARGET_DIR", &target)
                    .env("LEVEE_PLUGINS_ROUTE", rust_route()?);
                run("./build.sh", build)?;
                let mut test = command_in(dir, "cargo", &["test", "--locked"]);
                test.env("CARGO_TARGET_DIR", &target);
                let output = run("cargo test", test)?;
                expect_one_test(&output.stdout, "test result: ok. 1 passed")
            }
            Lang::Js => {
                let mut build = command_in(dir, "npm", &["run", "build"]);
                build.env("PATH", path_with(&js_tools_bin()));
                run("npm run build", build)?;
                let output = run("node --test", command_in(dir, "node", &["--test"]))?;
                // TAP prints `# tests 1`, the spec reporter `ℹ tests 1`.
                expect_one_test(&output.stdout, "tests 1\n")
            }
            Lang::Python => {
                let mut build = command_in(dir, dir.join("build.sh"), &[]);
                build.env("PATH", path_with(&py_venv_bin()));
                run("./build.sh", build)?;
                let mut test = command_in(dir, "python3", &["-m", "unittest"]);
                test.env("PATH", path_with(&py_venv_bin()));
                let output = run("python3 -m unittest", test)?;
                expect_one_test(&output.stderr, "Ran 1 test ")
            }
        }
    }
}

/// The toolchain route `build.sh` is to take (`LEVEE_PLUGINS_ROUTE`): one
/// that is installed already, so that it installs nothing (the `auto`
/// route may `rustup target add` or `apt-get install`).
fn rust_route() -> Result<&'static str, String> {
    match std::env::var("LEVEE_PLUGINS_ROUTE").as_deref() {
        Ok("rustup") => return Ok("rustup"),
        Ok("debian") => return Ok("debian"),
        _ => {}
    }
    let rustup_has_wasm32 = Command::new("rustup")
        .args(["target", "list", "--installed"])
        .output()
        .is_ok_and(|out| {
            String::from_utf8_lossy(&out.stdout)
                .lines()
                .any(|l| l == WASM32)
        });
    if rustup_has_wasm32 {
        return Ok("rustup");
    }
    let debian = [
        "/usr/bin/rustc",
        "/usr/bin/cargo",
        "/usr/lib/rustlib/src/rust",
        "/usr/lib/llvm-16/bin/wasm-ld",
    ];
    if debian.iter().all(|path| Path::new(path).exists()) {
        return Ok("debian");
    }
    Err(format!(
        "no toolchain for {WASM32}: neither rustup's target nor Debian's rustc-web, \
         cargo-web, rust-web-src and lld-16 are installed; run scripts/build-plugins.sh \
         (scripts/test.sh does), which installs one of them"
    ))
}

const WASM32: &str = "wasm32-unknown-unknown";

fn expect_one_test(output: &[u8], marker: &str) -> Result<(), String> {
    let text = String::from_utf8_lossy(output);
    if text.contains(marker) {
        Ok(())
    } else {
        Err(format!(
            "expected exactly one passing test ({marker:?}) in:\n{text}"
        ))
    }
}

/// Generates, builds, tests and checks one scaffold.
fn scaffold(lang: Lang, world: &str, wit_world: &str, root: &Path) -> Result<(), String> {
    let name = format!("scaffold-{}-{world}", lang.arg());
    let dir = root.join(&name);
    let generated = run(
        "levee plugin new",
        command_in(
            root,
            LEVEE,
            &[
                "plugin",
                "new",
                &name,
                "--lang",
                lang.arg(),
                "--world",
                world,
            ],
        ),
    )?;
    let next_steps = String::from_utf8_lossy(&generated.stdout);
    let check_step = format!("levee plugin check {name}.wasm --config '{{}}'");
    if !next_steps.contains(&check_step) {
        return Err(format!(
            "the next steps do not say {check_step:?}:\n{next_steps}"
        ));
    }
    lang.build_and_test(&dir)?;
    let checked = run(
        "levee plugin check",
        command_in(
            &dir,
            LEVEE,
            &[
                "plugin",
                "check",
                &format!("{name}.wasm"),
                "--config",
                "{}",
                "--json",
            ],
        ),
    )?;
    let report: serde_json::Value = serde_json::from_slice(&checked.stdout)
        .map_err(|e| format!("plugin check --json printed no JSON: {e}"))?;
    if report["world"] != wit_world || report["config_accepted"] != true {
        return Err(format!("expected {wit_world}, configured; got {report:#}"));
    }
    if world == "routing" && report["route_traits"]["cacheable_by_health_flags"] != true {
        return Err(format!(
            "the routing scaffold promises to be cacheable; got {report:#}"
        ));
    }
    Ok(())
}

/// One language's four scaffolds, in order: failures and time per world.
fn language(lang: Lang, root: &Path) -> Vec<(String, Duration, Result<(), String>)> {
    if let Err(missing) = lang.preflight() {
        return vec![(lang.arg().to_string(), Duration::ZERO, Err(missing))];
    }
    WORLDS
        .iter()
        .map(|&(world, wit_world)| {
            let started = Instant::now();
            let result = scaffold(lang, world, wit_world, root);
            (format!("{} {world}", lang.arg()), started.elapsed(), result)
        })
        .collect()
}

/// Measured on a 2-core machine shared with a CI run (load ~8): 824 s
/// with the Rust target dir cold (11.7 CPU-min; the Rust dependencies
/// build once, for wasm32 and for the tests), 500 s warm (8 CPU-min).
/// Warm, each JavaScript or Python scaffold takes ~2 min, about half of it
/// compiling its ~12-18 MiB component in `levee plugin check` (a test build
/// of levee; Cranelift at opt-level 1), the rest componentize-js/-py; a
/// Rust scaffold takes ~10 s.
#[test]
fn scaffolds_build_pass_their_test_and_load() {
    let root = tempfile::tempdir().unwrap();
    let started = Instant::now();
    let results: Vec<_> = std::thread::scope(|scope| {
        let root = root.path();
        let threads: Vec<_> = [Lang::Rust, Lang::Js, Lang::Python]
            .map(|lang| scope.spawn(move || language(lang, root)))
            .into_iter()
            .collect();
        threads
            .into_iter()
            .flat_map(|thread| thread.join().expect("a language thread panicked"))
            .collect()
    });
    let mut failures = Vec::new();
    for (what, took, result) in &results {
        println!("{what:<18} {:>6.1} s", took.as_secs_f64());
        if let Err(error) = result {
            failures.push(format!("{what}: {error}"));
        }
    }
    println!("all scaffolds: {:.1} s", started.elapsed().as_secs_f64());
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[test]
fn refuses_bad_names_and_used_directories() {
    let root = tempfile::tempdir().unwrap();
    let new = |args: &[&str]| {
        let mut command = command_in(root.path(), LEVEE, &["plugin", "new"]);
        command.args(args);
        scrubbed(command).output().expect("run levee")
    };
    let refused = |output: Output, reason: &str| {
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            !output.status.success() && stderr.contains(reason),
            "expected a refusal with {reason:?}: {output:?}"
        );
    };

    let ok = new(&["p", "--lang", "js", "--world", "retry"]);
    assert!(ok.status.success(), "{ok:?}");
    assert!(root.path().join("p/policy.js").is_file());
    refused(
        new(&["p", "--lang", "js", "--world", "retry"]),
        "is not empty",
    );
    refused(
        new(&["Bad", "--lang", "rust", "--world", "write"]),
        "invalid plugin name",
    );
    refused(
        new(&["9lives", "--lang", "rust", "--world", "write"]),
        "starts with a digit",
    );
    refused(
        new(&["q", "--lang", "cobol", "--world", "write"]),
        "invalid value 'cobol'",
    );
    assert!(!root.path().join("Bad").exists() && !root.path().join("q").exists());
}
