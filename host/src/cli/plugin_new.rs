//! `levee plugin new NAME --lang rust|js|python --world
//! retry|routing|checkpoint|write [--dir PATH]`: writes a plugin that
//! builds and has one test, from the templates in `plugins/templates/`.
//!
//! The templates are compiled into the binary (`include_str!`), so an
//! installed levee scaffolds without this repository. A scaffold is the
//! language's `common/` files, the world's own files, a copy of
//! `wit/levee-policy.wit` and, for Rust, `scripts/wasm-route.sh` (the
//! toolchain routes `scripts/build-plugins.sh` uses). In file contents
//! `{{name}}` becomes the plugin name, `{{crate_name}}` the name with `-`
//! as `_` (Rust's library name) and `{{world}}` the WIT world
//! (`retry-policy`, ...); `Cargo.toml.tmpl` and `Cargo.lock.tmpl` lose
//! their suffix (so the templates are no crate of their own) and
//! `gitignore` becomes `.gitignore`. `tests/plugin_new.rs` builds and
//! tests every scaffold.

use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;

/// The language a plugin is written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Lang {
    /// Rust with wit-bindgen, built for wasm32-unknown-unknown.
    Rust,
    /// JavaScript, built by componentize-js 0.23.0.
    Js,
    /// Python, built by componentize-py 0.25.1.
    Python,
}

/// The world a plugin implements (see `wit/levee-policy.wit`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum World {
    /// `retry-policy`: whether, when and where to try a failed request again.
    Retry,
    /// `routing-policy`: which replicas serve a request, in what order.
    Routing,
    /// `checkpoint-policy`: when to snapshot and compact the log.
    Checkpoint,
    /// `write-policy`: when a replicated write may be acknowledged.
    Write,
}

impl Lang {
    /// The template directory, `plugins/templates/<dir>`.
    fn dir(self) -> &'static str {
        match self {
            Lang::Rust => "rust",
            Lang::Js => "js",
            Lang::Python => "python",
        }
    }

    /// The commands that come next, run in the plugin's directory, with
    /// what each does.
    fn next_steps(self, name: &str) -> Vec<(&'static str, String)> {
        let mut steps = match self {
            Lang::Rust => vec![("cargo test", "runs its test".to_string())],
            Lang::Js => vec![
                ("npm install", "installs componentize-js 0.23.0".to_string()),
                ("node --test", "runs its test".to_string()),
            ],
            Lang::Python => vec![
                (
                    "python3 -m venv .venv && .venv/bin/pip install -r requirements.txt",
                    "installs componentize-py 0.25.1".to_string(),
                ),
                ("python3 -m unittest", "runs its test".to_string()),
            ],
        };
        let build = match self {
            Lang::Rust | Lang::Python => "./build.sh",
            Lang::Js => "npm run build",
        };
        steps.push((build, format!("builds {name}.wasm")));
        steps
    }
}

impl World {
    /// The template directory within a language's.
    fn dir(self) -> &'static str {
        match self {
            World::Retry => "retry",
            World::Routing => "routing",
            World::Checkpoint => "checkpoint",
            World::Write => "write",
        }
    }

    /// The WIT world's name.
    fn wit_name(self) -> &'static str {
        match self {
            World::Retry => "retry-policy",
            World::Routing => "routing-policy",
            World::Checkpoint => "checkpoint-policy",
            World::Write => "write-policy",
        }
    }
}

impl fmt::Display for Lang {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.dir())
    }
}

/// One template file: its path under `plugins/templates/` and contents.
struct Template {
    path: &'static str,
    contents: &'static str,
}

macro_rules! templates {
    ($($path:literal),* $(,)?) => {
        &[$(Template {
            path: $path,
            contents: include_str!(concat!("../../../plugins/templates/", $path)),
        }),*]
    };
}

/// Every file under `plugins/templates/` but its README (a unit test
/// below keeps the two in step).
const TEMPLATES: &[Template] = templates![
    "rust/common/Cargo.toml.tmpl",
    "rust/common/Cargo.lock.tmpl",
    "rust/common/README.md",
    "rust/common/build.sh",
    "rust/common/gitignore",
    "rust/retry/src/lib.rs",
    "rust/routing/src/lib.rs",
    "rust/checkpoint/src/lib.rs",
    "rust/write/src/lib.rs",
    "js/common/package.json",
    "js/common/README.md",
    "js/common/gitignore",
    "js/retry/policy.js",
    "js/retry/policy.test.js",
    "js/routing/policy.js",
    "js/routing/policy.test.js",
    "js/checkpoint/policy.js",
    "js/checkpoint/policy.test.js",
    "js/write/policy.js",
    "js/write/policy.test.js",
    "python/common/README.md",
    "python/common/build.sh",
    "python/common/gitignore",
    "python/common/requirements.txt",
    "python/retry/app.py",
    "python/retry/policy.py",
    "python/retry/test_policy.py",
    "python/routing/app.py",
    "python/routing/policy.py",
    "python/routing/test_policy.py",
    "python/checkpoint/app.py",
    "python/checkpoint/policy.py",
    "python/checkpoint/test_policy.py",
    "python/write/app.py",
    "python/write/policy.py",
    "python/write/test_policy.py",
];

/// The contract, copied into every scaffold so it builds anywhere.
const WIT: &str = include_str!("../../../wit/levee-policy.wit");
/// The toolchain routes of `scripts/build-plugins.sh`, for Rust scaffolds.
const WASM_ROUTE: &str = include_str!("../../../scripts/wasm-route.sh");

/// One file of a scaffold, relative to its directory.
#[derive(Debug, PartialEq)]
pub(crate) struct ScaffoldFile {
    pub(crate) path: PathBuf,
    pub(crate) contents: String,
    pub(crate) executable: bool,
}

/// The files of the plugin `name` (already validated) in `lang` for
/// `world`, placeholders substituted.
pub(crate) fn scaffold(name: &str, lang: Lang, world: World) -> Vec<ScaffoldFile> {
    let crate_name = name.replace('-', "_");
    let substitute = |text: &str| {
        text.replace("{{name}}", name)
            .replace("{{crate_name}}", &crate_name)
            .replace("{{world}}", world.wit_name())
    };
    let common = format!("{}/common/", lang.dir());
    let own = format!("{}/{}/", lang.dir(), world.dir());
    let mut files: Vec<ScaffoldFile> = TEMPLATES
        .iter()
        .filter_map(|template| {
            let relative = template
                .path
                .strip_prefix(&common)
                .or_else(|| template.path.strip_prefix(&own))?;
            let relative = match relative {
                "gitignore" => ".gitignore",
                other => other.strip_suffix(".tmpl").unwrap_or(other),
            };
            Some(ScaffoldFile {
                path: PathBuf::from(relative),
                contents: substitute(template.contents),
                executable: relative.ends_with(".sh"),
            })
        })
        .collect();
    files.push(ScaffoldFile {
        path: PathBuf::from("wit/levee-policy.wit"),
        contents: WIT.to_string(),
        executable: false,
    });
    if lang == Lang::Rust {
        files.push(ScaffoldFile {
            path: PathBuf::from("wasm-route.sh"),
            contents: WASM_ROUTE.to_string(),
            executable: false,
        });
    }
    files
}

/// Why `name` cannot name a plugin in `lang`, if it cannot.
fn check_name(name: &str, lang: Lang) -> Result<(), String> {
    levee_config::validate_plugin_name(name)?;
    if lang == Lang::Rust && name.starts_with(|c: char| c.is_ascii_digit()) {
        return Err(format!(
            "{name:?} starts with a digit, which a Rust package name cannot"
        ));
    }
    Ok(())
}

/// `levee plugin new`: writes the scaffold into `dir` (default `./NAME`),
/// which must not exist or be empty, and prints the next steps.
pub(crate) fn plugin_new(
    name: &str,
    lang: Lang,
    world: World,
    dir: Option<PathBuf>,
) -> anyhow::Result<ExitCode> {
    check_name(name, lang).map_err(|reason| anyhow::anyhow!("invalid plugin name: {reason}"))?;
    let dir = dir.unwrap_or_else(|| PathBuf::from(name));
    let created = prepare_dir(&dir)?;
    let files = scaffold(name, lang, world);
    if let Err(error) = write_files(&dir, &files) {
        // Leave nothing half-written behind in a directory made for it.
        if created {
            let _ = std::fs::remove_dir_all(&dir);
        }
        return Err(error);
    }
    print_next_steps(name, lang, world, &dir, &files)?;
    Ok(ExitCode::SUCCESS)
}

/// Makes `dir` if it is missing (true) or checks that it is an empty
/// directory (false).
fn prepare_dir(dir: &Path) -> anyhow::Result<bool> {
    match std::fs::read_dir(dir) {
        Ok(mut entries) => {
            if entries.next().is_some() {
                anyhow::bail!(
                    "{} is not empty: give a new or empty directory with --dir",
                    dir.display()
                );
            }
            Ok(false)
        }
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
            Ok(true)
        }
        Err(_) if dir.exists() && !dir.is_dir() => {
            anyhow::bail!("{} exists and is not a directory", dir.display())
        }
        Err(error) => Err(error).with_context(|| format!("cannot read {}", dir.display())),
    }
}

fn write_files(dir: &Path, files: &[ScaffoldFile]) -> anyhow::Result<()> {
    for file in files {
        let path = dir.join(&file.path);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("cannot create {}", parent.display()))?;
        }
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(if file.executable { 0o755 } else { 0o644 });
        }
        options
            .open(&path)
            .and_then(|mut out| out.write_all(file.contents.as_bytes()))
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    Ok(())
}

fn print_next_steps(
    name: &str,
    lang: Lang,
    world: World,
    dir: &Path,
    files: &[ScaffoldFile],
) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "created {name}, a {lang} plugin for the {} world, in {}:",
        world.wit_name(),
        dir.display()
    )?;
    for file in files {
        writeln!(out, "  {}", file.path.display())?;
    }
    writeln!(out, "next steps, in {}:", dir.display())?;
    let check = format!("levee plugin check {name}.wasm --config '{{}}'");
    let steps: Vec<(String, String)> = lang
        .next_steps(name)
        .into_iter()
        .map(|(command, what)| (command.to_string(), what))
        .chain([(check, "loads it as levee would".to_string())])
        .collect();
    let width = steps
        .iter()
        .map(|(command, _)| command.len())
        .max()
        .unwrap_or(0);
    for (command, what) in steps {
        writeln!(out, "  {command:<width$}  # {what}")?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every file under `plugins/templates/<lang>/` is in [`TEMPLATES`],
    /// so a new template cannot be left out of the binary.
    #[test]
    fn every_template_file_is_compiled_in() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../plugins/templates");
        let mut on_disk = Vec::new();
        let mut stack = vec![root.clone()];
        while let Some(dir) = stack.pop() {
            for entry in std::fs::read_dir(&dir).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    stack.push(path);
                } else if path.parent() != Some(root.as_path()) {
                    let relative = path.strip_prefix(&root).unwrap();
                    on_disk.push(relative.to_str().unwrap().to_string());
                }
            }
        }
        let mut listed: Vec<String> = TEMPLATES.iter().map(|t| t.path.to_string()).collect();
        on_disk.sort();
        listed.sort();
        assert_eq!(listed, on_disk);
    }

    #[test]
    fn scaffolds_substitute_every_placeholder() {
        use clap::ValueEnum;
        for &lang in Lang::value_variants() {
            for &world in World::value_variants() {
                let files = scaffold("my-plugin", lang, world);
                for file in &files {
                    assert!(
                        !file.contents.contains("{{"),
                        "{lang}/{world:?}: {} keeps a placeholder",
                        file.path.display()
                    );
                }
                let paths: Vec<_> = files.iter().map(|f| f.path.to_str().unwrap()).collect();
                assert!(paths.contains(&"wit/levee-policy.wit"), "{paths:?}");
                assert!(paths.contains(&".gitignore"), "{paths:?}");
                assert!(!paths.iter().any(|p| p.ends_with(".tmpl")), "{paths:?}");
            }
        }
        let rust = scaffold("my-plugin", Lang::Rust, World::Write);
        let build = rust
            .iter()
            .find(|f| f.path == Path::new("build.sh"))
            .unwrap();
        assert!(build.executable && build.contents.contains("release/my_plugin.wasm"));
    }

    #[test]
    fn names_are_checked() {
        assert!(check_name("my-plugin", Lang::Rust).is_ok());
        assert!(check_name("2fast", Lang::Js).is_ok());
        assert!(check_name("2fast", Lang::Rust).is_err());
        for bad in ["", "Bad", "../x", "_x", "a/b"] {
            assert!(check_name(bad, Lang::Python).is_err(), "{bad:?}");
        }
    }
}
