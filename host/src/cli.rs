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

/// How long in-flight requests get to finish at shutdown.
pub const DRAIN_MS: u64 = 10_000;

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
        /// The JSON `config` to pass to the plugin's `configure`.
        #[arg(long, default_value = "{}")]
        config: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum LogCommand {
    /// Summarise a log directory (segments, LSN range, checkpoints).
    Inspect { dir: PathBuf },
    /// Print records from an LSN on.
    Dump {
        dir: PathBuf,
        #[arg(long)]
        from: u64,
        #[arg(long, default_value_t = 100)]
        limit: u64,
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
        Command::Demo { keep: _ } => {
            anyhow::bail!("`levee demo` is not available yet")
        }
        Command::Plugin {
            command: PluginCommand::Check { file, config },
        } => plugin_check(&file, &config),
        Command::Log {
            command: LogCommand::Inspect { dir },
        } => log_inspect(&dir),
        Command::Log {
            command: LogCommand::Dump { dir, from, limit },
        } => log_dump(&dir, from, limit),
    }
}

/// `levee serve`: loads the config, binds both listeners, serves until a
/// termination signal, then drains.
pub async fn serve(config_path: &Path) -> anyhow::Result<()> {
    let config = Config::load(config_path)?;
    let data = tokio::net::TcpListener::bind(config.listeners.data).await?;
    let admin = tokio::net::TcpListener::bind(config.listeners.admin).await?;
    let state = AppState::new(config.clone())?;
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
    for service in state.services.load().values() {
        crate::health::spawn_active_checks(service, state.client.clone(), state.shutdown_signal());
    }
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
        DRAIN_MS,
    );
    let admin_loop = crate::listener::serve(
        admin,
        crate::admin_app(state.clone()),
        &limits,
        state.shutdown_signal(),
        DRAIN_MS,
    );
    tokio::join!(data_loop, admin_loop);
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

fn plugin_check(_file: &Path, _config: &str) -> anyhow::Result<ExitCode> {
    anyhow::bail!("plugin check: the plugin runtime is not wired in yet")
}

fn log_inspect(_dir: &Path) -> anyhow::Result<ExitCode> {
    anyhow::bail!("log inspect: the durable log is not wired in yet")
}

fn log_dump(_dir: &Path, _from: u64, _limit: u64) -> anyhow::Result<ExitCode> {
    anyhow::bail!("log dump: the durable log is not wired in yet")
}
