//! `levee serve`: the process's lifecycle, in order. Load the config and
//! bind both listeners (the admin listener answers probes while recovery
//! runs), build the state (log recovery, services), bring the plugins up,
//! start the background tasks it owns (health checks, handoff,
//! checkpoints), serve until SIGTERM or SIGINT, drain, then join the write
//! path's tasks and flush the log.

use std::io::Write;
use std::path::Path;

use std::sync::Arc;

use crate::api::state::AppState;
use crate::app::listener::Listener;
use crate::app::tls::Terminator;
use crate::config::Config;

/// `levee serve --repair`: start-up cuts a corrupt log at its first damage
/// instead of refusing (see `replication::set_repair_log_at_open`). Call
/// before [`serve`].
pub fn set_repair_log_at_open(repair: bool) {
    crate::replication::set_repair_log_at_open(repair);
}

/// `levee serve`: loads the config, binds both listeners, serves until a
/// termination signal, then drains.
pub async fn serve(config_path: &Path) -> anyhow::Result<()> {
    let config = Config::load(config_path)?;
    // One descriptor per client and per upstream connection.
    if let Some(files) = crate::app::memory::raise_file_limit()
        && files < u64::from(config.server.connections_max) * 2
    {
        tracing::warn!(
            files,
            connections_max = config.server.connections_max,
            "the open-file limit is below twice server.connections_max: raise it (ulimit -Hn)"
        );
    }
    // An admin listener reachable from other machines needs a token: refuse
    // before binding anything.
    crate::control::auth::AdminAuth::from_env_or_config(
        config.admin_token.as_deref(),
        config.listeners.admin,
    )?;
    crate::control::auth::check_admin_transport(
        config.listeners.admin,
        config.listeners.tls.admin.is_some(),
        config.listeners.insecure_admin_token_over_plain_http,
    )?;
    // Certificates are read (and a bad file refused, naming it) before
    // anything is bound or recovered.
    let (data_tls, admin_tls) = terminators(&config)?;
    let data = tokio::net::TcpListener::bind(config.listeners.data).await?;
    let admin = tokio::net::TcpListener::bind(config.listeners.admin).await?;
    let (data_address, admin_address) = (data.local_addr()?, admin.local_addr()?);
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
    let booting = crate::app::boot::serve_while_booting(admin, admin_tls.clone(), boot_done);
    let state = {
        let config = config.clone();
        tokio::task::spawn_blocking(move || AppState::new(config)).await??
    };
    crate::control::start(&state.control.plugins, &state.shutdown).await?;
    for service in state.directory.services.load().values() {
        crate::cluster::probe::spawn_active_checks(
            service,
            state.client.clone(),
            state.shutdown_signal(),
        );
    }
    // Cluster mode: etcd's services replace the file's (seeding etcd when
    // it holds none), each through the service-change transaction as an
    // admin change would be, before the instance is ready; bounded, so an
    // etcd outage delays readiness, never prevents it.
    if let Some(cluster) = &config.cluster {
        crate::app::cluster::start(&state, cluster, data_address, admin_address).await?;
    }
    // Histogram samples are buffered until drained: drain them on a timer
    // too, so memory stays bounded when nobody scrapes `/metrics`.
    let upkeep = {
        let shutdown = state.shutdown.clone();
        crate::base::metrics::spawn_upkeep(async move { shutdown.requested().await })
    };
    let write_tasks = crate::replication::spawn_background(
        state.writes.clone(),
        state.directory.clone(),
        state.client.clone(),
        state.shutdown.clone(),
    );
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
    let counts = std::sync::Arc::new(crate::app::memory::ConnectionCounts::default());
    let trim = {
        let shutdown = state.shutdown.clone();
        let counts = std::sync::Arc::clone(&counts);
        tokio::spawn(crate::app::memory::trim_after_bursts(counts, async move {
            shutdown.requested().await
        }))
    };
    let data = Listener {
        socket: data,
        name: "data",
        tls: data_tls,
    };
    let admin = Listener {
        socket: admin,
        name: "admin",
        tls: admin_tls,
    };
    let data_loop = crate::app::listener::serve(
        data,
        crate::api::data_app(state.clone()),
        &limits,
        std::sync::Arc::clone(&counts),
        state.shutdown_signal(),
        config.shutdown_grace_ms,
    );
    let admin_loop = crate::app::listener::serve(
        admin,
        crate::app::listener::router(crate::api::admin_app(state.clone())),
        &limits,
        counts,
        state.shutdown_signal(),
        config.shutdown_grace_ms,
    );
    tokio::join!(data_loop, admin_loop);
    let _ = trim.await;
    // The write path's last checkpoint, then a log fsync.
    crate::app::shutdown::finish(&state, write_tasks).await;
    let _ = upkeep.await;
    Ok(())
}

/// Each listener's TLS, loaded from its files, if it has one.
type ListenerTls = Option<Arc<Terminator>>;

fn terminators(config: &Config) -> anyhow::Result<(ListenerTls, ListenerTls)> {
    let http2 = config.server.http2.enabled;
    let load = |name, spec: &Option<crate::config::ListenerTls>| {
        spec.as_ref()
            .map(|spec| Terminator::load(name, spec, http2))
            .transpose()
    };
    Ok((
        load("data", &config.listeners.tls.data)?,
        load("admin", &config.listeners.tls.admin)?,
    ))
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
