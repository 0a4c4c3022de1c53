//! WASI 0.2 for plugins whose language runtime imports it, granting
//! nothing.
//!
//! A Rust policy imports nothing but `levee:policy`. CPython
//! (componentize-py) and StarlingMonkey (componentize-js) are built
//! against `wasi:cli`, `wasi:io`, `wasi:clocks`, `wasi:random`,
//! `wasi:filesystem` and `wasi:sockets` and cannot be instantiated
//! without them. A policy needs none of those capabilities, so levee links
//! the interfaces (wasmtime-wasi, the version matching wasmtime) over a
//! context that grants nothing:
//! - no preopened directories: opening any path fails, there is no
//!   directory to open it in;
//! - no sockets: `create-tcp-socket` and `create-udp-socket` answer
//!   `access-denied`, name lookup `permanent-resolver-failure` (`deny`);
//! - empty environment and arguments, no working directory, stdin closed
//!   (a read sees end of file);
//! - stdout and stderr into the host log, line by line, bounded and tagged
//!   with the plugin's name and version (`sink`);
//! - wall clock, monotonic clock and both random sources from the host's
//!   [`HostEnv`], seeded in tests (`ambient`); at most
//!   [`RANDOM_BYTES_PER_CALL_MAX`] random bytes per `get-random-bytes`;
//! - `wasi:cli/exit` ends the call as a trap;
//! - nothing ever waits: a blocking function whose answer is not ready at
//!   once fails the call (`no_block`).
//!
//! The context is built on an instance's first WASI call, so a plugin that
//! imports no WASI (every Rust example) pays nothing for it.
//!
//! Which imports a plugin may have is [`is_granted_import`]: these six
//! packages at 0.2.x; anything else (`wasi:http`, `wasi:keyvalue`, a 0.3
//! interface) is refused at load like any foreign import.

mod ambient;
mod deny;
mod no_block;
mod sink;

use std::sync::Arc;

use wasmtime::component::{Linker, ResourceTable};
use wasmtime_wasi::cli::{WasiCli, WasiCliView};
use wasmtime_wasi::clocks::{WasiClocks, WasiClocksView};
use wasmtime_wasi::filesystem::{WasiFilesystem, WasiFilesystemView};
use wasmtime_wasi::p2::bindings::{cli, clocks, filesystem, random, sockets, sync};
use wasmtime_wasi::p2::pipe::ClosedInputStream;
use wasmtime_wasi::random::{WasiRandom, WasiRandomView};
use wasmtime_wasi::sockets::{WasiSockets, WasiSocketsView};
use wasmtime_wasi::{WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};

use crate::env::HostEnv;
use crate::host::{HostState, PluginTag};
pub use crate::kind::is_granted_import;
use crate::stats::Counters;
use ambient::Ambient;
use deny::{Own, OwnData};
use no_block::{NoBlock, NoBlockData, TableData};
use sink::{LineQuota, LogSink, Which};

pub use no_block::WOULD_BLOCK;

/// Bytes one `get-random-bytes` / `get-insecure-random-bytes` may ask for.
pub const RANDOM_BYTES_PER_CALL_MAX: u64 = 64 * 1024;
/// What `get-insecure-seed` answers: fixed, so that a seeded host replays
/// a plugin exactly (CPython derives its string hashing from it).
const INSECURE_SEED: u128 = 0x6c65_7665_655f_7761_7369_5f73_6565_6421;
/// One instance's WASI state, built on its first WASI call.
pub(crate) struct WasiState {
    ctx: WasiCtx,
    table: ResourceTable,
    ambient: Ambient,
    quota: Arc<LineQuota>,
}

impl WasiState {
    /// A context granting nothing; `lines_max` output lines allowed in the
    /// call in progress.
    pub(crate) fn new(
        tag: &Arc<PluginTag>,
        env: &HostEnv,
        counters: &Arc<Counters>,
        lines_max: u32,
    ) -> WasiState {
        let ambient = Ambient::new(env.clone());
        let quota = Arc::new(LineQuota::default());
        quota.reset(lines_max);
        let sink = |which| LogSink {
            tag: tag.clone(),
            which,
            quota: quota.clone(),
            counters: counters.clone(),
        };
        let ctx = WasiCtxBuilder::new()
            .stdin(ClosedInputStream)
            .stdout(sink(Which::Stdout))
            .stderr(sink(Which::Stderr))
            .wall_clock(ambient::WallClock(ambient.clone()))
            .monotonic_clock(ambient::MonotonicClock(ambient.clone()))
            .secure_random(ambient::Random(ambient.clone()))
            .insecure_random(ambient::Random(ambient.clone()))
            .insecure_random_seed(INSECURE_SEED)
            .max_random_size(RANDOM_BYTES_PER_CALL_MAX)
            .allow_ip_name_lookup(false)
            .allow_tcp(false)
            .allow_udp(false)
            .build();
        WasiState {
            ctx,
            table: ResourceTable::new(),
            ambient,
            quota,
        }
    }

    /// Called before each policy call: a fresh line quota, and forget what
    /// the last call read.
    pub(crate) fn begin_call(&mut self, lines_max: u32) {
        self.quota.reset(lines_max);
        self.ambient.clear_read();
    }

    /// Whether the call read the clock or the random source through WASI.
    pub(crate) fn read_ambient(&self) -> bool {
        self.ambient.was_read()
    }
}

impl WasiView for HostState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        let wasi = self.wasi();
        WasiCtxView {
            ctx: &mut wasi.ctx,
            table: &mut wasi.table,
        }
    }
}

fn own(state: &mut HostState) -> Own<'_> {
    let wasi = state.wasi();
    Own {
        table: &mut wasi.table,
        ambient: &wasi.ambient,
    }
}

fn no_block(state: &mut HostState) -> NoBlock<'_> {
    NoBlock(&mut state.wasi().table)
}

fn table(state: &mut HostState) -> &mut ResourceTable {
    &mut state.wasi().table
}

/// Links every granted WASI interface into `linker`.
pub(crate) fn add_to_linker(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
    type S = HostState;
    let l = linker;
    wasmtime_wasi_io::bindings::wasi::io::error::add_to_linker::<S, TableData>(l, table)?;
    sync::io::poll::add_to_linker::<S, NoBlockData>(l, no_block)?;
    sync::io::streams::add_to_linker::<S, NoBlockData>(l, no_block)?;

    clocks::wall_clock::add_to_linker::<S, WasiClocks>(l, S::clocks)?;
    clocks::monotonic_clock::add_to_linker::<S, OwnData>(l, own)?;
    random::random::add_to_linker::<S, WasiRandom>(l, S::random)?;
    random::insecure::add_to_linker::<S, WasiRandom>(l, S::random)?;
    random::insecure_seed::add_to_linker::<S, WasiRandom>(l, S::random)?;

    cli::exit::add_to_linker::<S, WasiCli>(l, S::cli)?;
    cli::environment::add_to_linker::<S, WasiCli>(l, S::cli)?;
    cli::stdin::add_to_linker::<S, WasiCli>(l, S::cli)?;
    cli::stdout::add_to_linker::<S, WasiCli>(l, S::cli)?;
    cli::stderr::add_to_linker::<S, WasiCli>(l, S::cli)?;
    cli::terminal_input::add_to_linker::<S, WasiCli>(l, S::cli)?;
    cli::terminal_output::add_to_linker::<S, WasiCli>(l, S::cli)?;
    cli::terminal_stdin::add_to_linker::<S, WasiCli>(l, S::cli)?;
    cli::terminal_stdout::add_to_linker::<S, WasiCli>(l, S::cli)?;
    cli::terminal_stderr::add_to_linker::<S, WasiCli>(l, S::cli)?;

    // No preopens: descriptors, and so every `types` function past
    // `filesystem-error-code`, are unreachable.
    filesystem::preopens::add_to_linker::<S, WasiFilesystem>(l, S::filesystem)?;
    sync::filesystem::types::add_to_linker::<S, WasiFilesystem>(l, S::filesystem)?;

    // No socket is ever created (`deny`): tcp and udp are unreachable.
    let network_options = sockets::network::LinkOptions::default();
    sockets::network::add_to_linker::<S, WasiSockets>(l, &network_options, S::sockets)?;
    sockets::instance_network::add_to_linker::<S, WasiSockets>(l, S::sockets)?;
    sockets::ip_name_lookup::add_to_linker::<S, WasiSockets>(l, S::sockets)?;
    sockets::tcp_create_socket::add_to_linker::<S, OwnData>(l, own)?;
    sync::sockets::udp_create_socket::add_to_linker::<S, OwnData>(l, own)?;
    sync::sockets::tcp::add_to_linker::<S, WasiSockets>(l, S::sockets)?;
    sync::sockets::udp::add_to_linker::<S, WasiSockets>(l, S::sockets)?;
    Ok(())
}
