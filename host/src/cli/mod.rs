//! The `levee` command line.
//!
//! - `levee serve --config FILE [--repair]`: run the data and admin
//!   listeners. Prints `listening data=<addr> admin=<addr>` as its first
//!   stdout line (so a config may use port 0 and a supervisor or test
//!   learns the ports). `--repair` lets start-up cut a corrupt log at its
//!   first damage instead of refusing to start.
//! - `levee demo [--keep]`: the self-contained demonstration.
//! - `levee plugin check FILE [--config JSON]`: validate a policy plugin.
//! - `levee plugin push FILE REGISTRY/REPOSITORY:TAG [--plain-http]`:
//!   validate a plugin and push it to an OCI registry, printing its
//!   digest ([`plugin_push`]).
//! - `levee plugin new NAME --lang rust|js|python --world
//!   retry|routing|checkpoint|write [--dir PATH]`: scaffold a plugin
//!   ([`plugin_new`]).
//! - `levee log inspect DIR`, `levee log dump DIR --from LSN [--limit N]`:
//!   read a durable log offline; non-zero exit on corruption.
//! - `levee kv-replica --listen ADDR --data-dir DIR [--tls-cert FILE
//!   --tls-key FILE [--tls-client-ca FILE]]` (hidden): the small key-value
//!   server used as upstream by the demo and the tests (the
//!   `levee-kv-replica` crate), over HTTPS when given a certificate.
//!
//! This module and [`demo`] are the binary's, not the library's: the
//! library (`levee::`) is the product; the command line only parses and
//! dispatches.

mod demo;
mod plugin_new;
mod plugin_push;
mod tools;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

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
        /// If the write log is corrupt (damage followed by valid records,
        /// which start-up otherwise refuses, naming the segment file and
        /// byte offset), cut it at the damage instead: every later record
        /// is dropped from the log (writes that were acknowledged may be
        /// lost; replicas that already hold them keep them), the damaged
        /// bytes are kept as `<segment>.broken` and later segments are
        /// renamed to `.broken`, nothing is deleted. Run `levee log inspect
        /// DIR` first to see what would be cut. A torn tail (a crash
        /// artefact, never acknowledged) is always cut without this flag.
        #[arg(long)]
        repair: bool,
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
        /// The retry plugin: the `retry-backoff` rules in Rust, JavaScript
        /// or Python, each with its own config fields.
        #[arg(long, default_value = demo::RETRY_PLUGINS[0].name,
              value_parser = clap::builder::PossibleValuesParser::new(
                  demo::RETRY_PLUGINS.map(|plugin| plugin.name)))]
        retry_plugin: String,
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
        /// Serve HTTPS with this certificate chain (PEM), with `--tls-key`.
        #[arg(long, requires = "tls_key")]
        tls_cert: Option<PathBuf>,
        /// The private key (PEM) of `--tls-cert`.
        #[arg(long, requires = "tls_cert")]
        tls_key: Option<PathBuf>,
        /// Require client certificates chaining to these CAs (PEM).
        #[arg(long, requires = "tls_cert")]
        tls_client_ca: Option<PathBuf>,
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
    /// Scaffold a plugin that builds and has one test, from the templates
    /// in the repository's `plugins/templates` (compiled into levee).
    New {
        /// The plugin's name: a-z, 0-9, '_' and '-', as in levee's config.
        name: String,
        #[arg(long, value_enum)]
        lang: plugin_new::Lang,
        #[arg(long, value_enum)]
        world: plugin_new::World,
        /// Where to write it (a new or empty directory; default: ./NAME).
        #[arg(long)]
        dir: Option<PathBuf>,
    },
    /// Validate a plugin (as `check` does) and push it to an OCI registry
    /// as a Wasm artifact; prints the digest to bind (pulls name digests).
    Push {
        file: PathBuf,
        /// REGISTRY/REPOSITORY:TAG, e.g. 127.0.0.1:5000/levee/retry:v1.
        target: String,
        /// Plain HTTP to a registry that is not on loopback (loopback ones
        /// always are; every other registry is spoken to over TLS).
        #[arg(long)]
        plain_http: bool,
        /// A JSON `config` that `configure` must accept before the push.
        #[arg(long)]
        config: Option<String>,
        /// Print the result as JSON.
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
        Command::Serve { config, repair } => {
            levee::app::serve::set_repair_log_at_open(repair);
            levee::app::serve::serve(&config)
                .await
                .map(|()| ExitCode::SUCCESS)
        }
        Command::KvReplica {
            listen,
            data_dir,
            tls_cert,
            tls_key,
            tls_client_ca,
        } => {
            let tls = tls_cert
                .zip(tls_key)
                .map(|(cert, key)| levee_kv_replica::TlsFiles {
                    cert,
                    key,
                    client_ca: tls_client_ca,
                });
            let stop = levee::app::serve::termination();
            levee_kv_replica::run(listen, &data_dir, tls.as_ref(), stop)
                .await
                .map(|()| ExitCode::SUCCESS)
        }
        Command::Demo {
            keep,
            plugin_dir,
            retry_plugin,
        } => {
            let retry_plugin = demo::RetryPlugin::named(&retry_plugin);
            demo::run(demo::DemoOptions {
                keep,
                plugin_dir,
                retry_plugin,
            })
            .await
        }
        Command::Plugin {
            command: PluginCommand::Check { file, config, json },
        } => tools::plugin_check(file, config, json).await,
        Command::Plugin {
            command:
                PluginCommand::New {
                    name,
                    lang,
                    world,
                    dir,
                },
        } => plugin_new::plugin_new(&name, lang, world, dir),
        Command::Plugin {
            command:
                PluginCommand::Push {
                    file,
                    target,
                    plain_http,
                    config,
                    json,
                },
        } => {
            let args = plugin_push::PushArgs {
                file,
                target,
                plain_http,
                config,
                json,
            };
            plugin_push::plugin_push(args).await
        }
        Command::Log {
            command: LogCommand::Inspect { dir, json },
        } => tools::log_inspect(&dir, json),
        Command::Log {
            command: LogCommand::Dump { dir, from, limit },
        } => tools::log_dump(&dir, from, limit),
    }
}
