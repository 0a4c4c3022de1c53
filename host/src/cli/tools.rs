//! The offline tools: `levee plugin check`, `levee log inspect`, `levee
//! log dump`. Each reads a file or directory, never a running levee.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// Largest plugin file `plugin check` reads.
const PLUGIN_FILE_BYTES_MAX: u64 = levee_plugin::runtime::COMPONENT_BYTES_MAX_DEFAULT as u64;
/// Most records `log dump` prints in one run.
const DUMP_LIMIT_MAX: usize = 10_000_000;

/// `levee plugin check`: compile (and with a config, instantiate and
/// configure) a plugin exactly as `serve` would, without serving.
pub(crate) async fn plugin_check(
    file: PathBuf,
    config: Option<String>,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let bytes = std::fs::metadata(&file)
        .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", file.display()))?
        .len();
    if bytes > PLUGIN_FILE_BYTES_MAX {
        anyhow::bail!(
            "{} is {bytes} bytes, more than the {PLUGIN_FILE_BYTES_MAX} a plugin may be",
            file.display()
        );
    }
    let component =
        std::fs::read(&file).map_err(|e| anyhow::anyhow!("cannot read {}: {e}", file.display()))?;
    let checked = tokio::task::spawn_blocking(move || {
        let runtime = levee_plugin::Runtime::new(levee_plugin::RuntimeOptions::default())?;
        anyhow::Ok(levee_plugin::check(&runtime, &component, config.as_deref()))
    })
    .await??;
    match checked {
        Ok(report) if json => println!("{}", serde_json::to_string_pretty(&report)?),
        Ok(report) => print!("{report}"),
        Err(error) => {
            eprintln!("plugin check failed: {error}");
            return Ok(ExitCode::FAILURE);
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `levee log inspect`: read-only verification of a log directory.
pub(crate) fn log_inspect(dir: &Path, json: bool) -> anyhow::Result<ExitCode> {
    let report = levee_log::inspect(dir)?;
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{report}");
    }
    // A torn tail is what a crash leaves and the next open cuts; anything
    // else (corrupt records, damaged checkpoints) needs an operator.
    let torn_tail_only = report
        .problem
        .as_ref()
        .is_some_and(|p| p.kind == levee_log::ProblemKind::TornTail)
        && report.checkpoints.iter().all(|c| c.valid);
    Ok(if report.ok || torn_tail_only {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// `levee log dump`: records from `from` on as JSON lines
/// `{"lsn", "kind", "bytes", "payload_hex"}`.
pub(crate) fn log_dump(dir: &Path, from: u64, limit: usize) -> anyhow::Result<ExitCode> {
    let limit = limit.min(DUMP_LIMIT_MAX);
    let mut stdout = std::io::BufWriter::new(std::io::stdout().lock());
    for record in levee_log::dump(dir, from, limit)? {
        match record {
            Ok(record) => {
                let line = serde_json::json!({
                    "lsn": record.lsn,
                    "kind": record.kind,
                    "bytes": record.payload.len(),
                    "payload_hex": hex::encode(&record.payload),
                });
                writeln!(stdout, "{line}")?;
            }
            Err(error) => {
                stdout.flush()?;
                eprintln!("log dump stopped: {error}");
                return Ok(ExitCode::FAILURE);
            }
        }
    }
    stdout.flush()?;
    Ok(ExitCode::SUCCESS)
}
