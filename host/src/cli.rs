//! The `levee` command line.
//!
//! - `levee serve --config FILE`: run the data and admin listeners. Prints
//!   `listening data=<addr> admin=<addr>` as its first stdout line (so a
//!   config may use port 0 and a supervisor or test learns the ports).
//! - `levee demo [--keep]`: the self-contained demonstration.
//! - `levee plugin check FILE [--config JSON]`: validate a policy plugin.
//! - `levee log inspect DIR`, `levee log dump DIR --from LSN [--limit N]`:
//!   read a durable log offline; non-zero exit on corruption.
//! - `levee kv-replica --listen ADDR --data-dir DIR` (hidden): the small
//!   key-value server used as upstream by the demo and the tests.

use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::config::Config;
use crate::state::AppState;

#[derive(Debug, Parser)]
#[command(
    name = "levee",
    version,
    about = "HTTP fault-tolerance middleware host"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve the data and admin listeners.
    Serve {
        #[arg(long)]
        config: PathBuf,
    },
    /// Run the end-to-end demonstration.
    Demo {
        /// Leave the demo's processes and files running/in place.
        #[arg(long)]
        keep: bool,
        /// Where the example policy plugins are (default: `LEVEE_PLUGIN_DIR`,
        /// else `plugins/dist` of the repository the binary was built in).
        #[arg(long)]
        plugin_dir: Option<PathBuf>,
    },
    /// Policy plugin tools.
    Plugin {
        #[command(subcommand)]
        command: PluginCommand,
    },
    /// Durable log tools.
    Log {
        #[command(subcommand)]
        command: LogCommand,
    },
    /// A small key-value replica (demo and test upstream).
    #[command(hide = true)]
    KvReplica {
        #[arg(long)]
        listen: SocketAddr,
        #[arg(long)]
        data_dir: PathBuf,
    },
}

#[derive(Debug, Subcommand)]
pub enum PluginCommand {
    /// Compile, validate and configure a plugin without serving.
    Check {
        file: PathBuf,
        /// A JSON `config` to pass to the plugin's `configure` (it is then
        /// also instantiated); without it only compilation is checked.
        #[arg(long)]
        config: Option<String>,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum LogCommand {
    /// Verify and summarise a log directory (segments, LSN range,
    /// checkpoints). Exit status 1 when damage beyond a torn tail is found.
    Inspect {
        dir: PathBuf,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Print records from an LSN on, one JSON object per line. Exit status
    /// 1 when a corrupt record is reached.
    Dump {
        dir: PathBuf,
        #[arg(long)]
        from: u64,
        #[arg(long, default_value_t = 100)]
        limit: usize,
    },
}

/// Entry point of the binary.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    init_tracing();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("levee: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli.command)) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("levee: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn init_tracing() {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_env("LEVEE_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

async fn run(command: Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::Serve { config } => serve(&config).await.map(|()| ExitCode::SUCCESS),
        Command::KvReplica { listen, data_dir } => crate::replica::run(listen, &data_dir)
            .await
            .map(|()| ExitCode::SUCCESS),
        Command::Demo { keep, plugin_dir } => {
            crate::demo::run(crate::demo::DemoOptions { keep, plugin_dir }).await
        }
        Command::Plugin {
            command: PluginCommand::Check { file, config, json },
        } => plugin_check(file, config, json).await,
        Command::Log {
            command: LogCommand::Inspect { dir, json },
        } => log_inspect(&dir, json),
        Command::Log {
            command: LogCommand::Dump { dir, from, limit },
        } => log_dump(&dir, from, limit),
    }
}

/// `levee serve`: loads the config, binds both listeners, serves until a
/// termination signal, then drains.
pub async fn serve(config_path: &Path) -> anyhow::Result<()> {
    let config = Config::load(config_path)?;
    // An admin listener reachable from other machines needs a token: refuse
    // before binding anything.
    crate::api::auth::AdminAuth::from_env_or_config(
        config.admin_token.as_deref(),
        config.listeners.admin,
    )?;
    let data = tokio::net::TcpListener::bind(config.listeners.data).await?;
    let admin = tokio::net::TcpListener::bind(config.listeners.admin).await?;
    {
        let mut stdout = std::io::stdout().lock();
        writeln!(
            stdout,
            "listening data={} admin={}",
            data.local_addr()?,
            admin.local_addr()?
        )?;
        stdout.flush()?;
    }
    // Probes get an answer ("alive, not ready") while recovery runs.
    let (booted, boot_done) = tokio::sync::oneshot::channel();
    let booting = crate::boot::serve_while_booting(admin, boot_done);
    let state = {
        let config = config.clone();
        tokio::task::spawn_blocking(move || AppState::new(config)).await??
    };
    crate::control::start(&state).await?;
    for service in state.services.load().values() {
        crate::health::spawn_active_checks(service, state.client.clone(), state.shutdown_signal());
    }
    let write_tasks = crate::write::spawn_background(state.writes.clone(), state.clone());
    let _ = booted.send(());
    let admin = booting.await?;
    state.set_ready(true);
    tracing::info!(services = config.services.len(), "levee ready");
    let signals = state.clone();
    tokio::spawn(async move {
        termination().await;
        tracing::info!("shutdown requested");
        signals.begin_shutdown();
    });
    let limits = config.server.clone();
    let data_loop = crate::listener::serve(
        data,
        crate::data_app(state.clone()),
        &limits,
        state.shutdown_signal(),
        config.shutdown_grace_ms,
    );
    let admin_loop = crate::listener::serve(
        admin,
        crate::admin_app(state.clone()),
        &limits,
        state.shutdown_signal(),
        config.shutdown_grace_ms,
    );
    tokio::join!(data_loop, admin_loop);
    // The write path's last checkpoint, then a log fsync.
    crate::shutdown::finish(&state, write_tasks).await;
    Ok(())
}

/// Resolves on SIGINT or SIGTERM.
pub async fn termination() {
    use tokio::signal::unix::{SignalKind, signal};
    match signal(SignalKind::terminate()) {
        Ok(mut terminate) => {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = terminate.recv() => {}
            }
        }
        Err(error) => {
            tracing::warn!(%error, "cannot listen for SIGTERM; only SIGINT stops levee");
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

/// Largest plugin file `plugin check` reads.
const PLUGIN_FILE_BYTES_MAX: u64 = levee_plugin::runtime::COMPONENT_BYTES_MAX_DEFAULT as u64;
/// Most records `log dump` prints in one run.
const DUMP_LIMIT_MAX: usize = 10_000_000;

/// `levee plugin check`: compile (and with a config, instantiate and
/// configure) a plugin exactly as `serve` would, without serving.
async fn plugin_check(
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
fn log_inspect(dir: &Path, json: bool) -> anyhow::Result<ExitCode> {
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
fn log_dump(dir: &Path, from: u64, limit: usize) -> anyhow::Result<ExitCode> {
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
