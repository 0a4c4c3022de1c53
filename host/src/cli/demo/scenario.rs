//! The narrated scenario: start the replicas and levee, write and read,
//! kill a replica, show the reads failing over with retries decided in
//! Rust, JavaScript and Python, keep writing, bring the replica back, wait
//! for hinted handoff to converge, summarise.

use std::time::Instant;

use anyhow::bail;

use super::processes::Cluster;
use super::requests::Reply;
use super::setup::Plugins;
use super::{DemoOptions, KEYS_PER_PHASE, NODE_IDS, SERVICE, VICTIM};

/// Steps the narration counts.
const STEPS: usize = 8;

/// The narrated scenario.
pub(super) async fn scenario(cluster: &mut Cluster, options: &DemoOptions) -> anyhow::Result<()> {
    println!("levee demo: three key-value replicas behind levee; one of them dies and comes back.");

    step(
        1,
        "starting three replicas (`levee kv-replica`, real processes on loopback)",
    );
    for id in NODE_IDS {
        let replica = cluster.start_replica(id, None).await?;
        println!(
            "      {id}  http://{}  pid {}",
            replica.address,
            replica.child.id()
        );
    }

    let plugins = Plugins::prepare(
        options.plugin_dir.as_deref(),
        options.retry_plugin(),
        &cluster.dir,
        &cluster.data_dir(),
    );
    step(
        2,
        "starting levee: every key lives on N=3 replicas, a write needs W=2 acks",
    );
    print_policies(&plugins);
    let plugins = plugins.ok();
    cluster.start_levee(plugins.as_ref()).await?;
    cluster.language_services = plugins
        .iter()
        .flat_map(|plugins| plugins.languages.iter().map(|(service, _)| *service))
        .collect();
    cluster.learn_plugin_names().await;
    println!(
        "      data  http://{}   admin http://{}",
        cluster.data(),
        cluster.admin()
    );

    step(
        3,
        "writes: logged durably first, then sent to the key's 3 replicas; answered at 2 acks",
    );
    for i in 0..KEYS_PER_PHASE {
        let response = cluster
            .put(
                &format!("user-{i}"),
                &format!("{{\"name\":\"user {i}\",\"v\":1}}"),
            )
            .await?;
        ensure_success(&response)?;
        if i < 3 {
            print_write(&format!("user-{i}"), &response);
        }
    }
    let (keys, _) = cluster.wait_converged().await?;
    println!(
        "      ... {KEYS_PER_PHASE} writes; the third copies landed in the background: every replica holds {keys} keys"
    );
    for i in 0..2 {
        let key = format!("user-{i}");
        let reply = cluster.get(SERVICE, &key).await?;
        print_read(cluster, SERVICE, &key, &reply);
    }

    let victim = NODE_IDS[VICTIM];
    let victim_pid = cluster.kill_replica(VICTIM)?;
    step(
        4,
        &format!(
            "SIGKILL replica {victim} (pid {victim_pid}); reads of keys it served first fail over"
        ),
    );
    for key in keys_led_by(VICTIM, 5) {
        let reply = cluster.get(SERVICE, &key).await?;
        print_read(cluster, SERVICE, &key, &reply);
    }
    println!("      (after 3 failures in a row {victim} is ejected: reads stop trying it first)");

    step(
        5,
        "the same failover, the retries decided by the same rules in JavaScript and in Python",
    );
    languages(cluster, plugins.as_ref()).await?;

    step(
        6,
        &format!("writes with {victim} down: still acknowledged by W=2"),
    );
    for i in 0..KEYS_PER_PHASE {
        let key = if i % 3 == 0 {
            format!("user-{i}")
        } else {
            format!("order-{i}")
        };
        let response = cluster
            .put(&key, &format!("{{\"key\":\"{key}\",\"v\":2}}"))
            .await?;
        ensure_success(&response)?;
        if i < 3 {
            print_write(&key, &response);
        }
    }
    println!(
        "      ... {KEYS_PER_PHASE} writes acknowledged; {victim} missed them: each is a hint, read back from the log later"
    );
    if let Some(hints) = cluster.node_hints(victim).await {
        println!(
            "      hint backlog for {victim}: {} writes ({} bytes) waiting in the log",
            hints["backlog_records"], hints["backlog_bytes"]
        );
    }

    step(
        7,
        &format!(
            "restarting replica {victim} on its old port and data; hinted handoff replays what it missed"
        ),
    );
    cluster.restart_replica(VICTIM).await?;
    let started = Instant::now();
    let (keys, digest) = cluster.wait_converged().await?;
    println!(
        "      all three replicas identical after {:.1} s: {keys} keys, /_dump sha256 {}",
        started.elapsed().as_secs_f64(),
        &digest[..16]
    );
    if let Some(hints) = cluster.node_hints(victim).await {
        println!(
            "      hints delivered to {victim}: {}, dropped: {}",
            hints["delivered_records"], hints["dropped_records"]
        );
    }

    step(8, "summary");
    cluster.print_summary().await;
    Ok(())
}

/// What step 2 says about the policies, compiling included.
fn print_policies(plugins: &Result<Plugins, String>) {
    let plugins = match plugins {
        Ok(plugins) => plugins,
        Err(note) => {
            println!("      note: {note}\n      policies: native built-ins");
            return;
        }
    };
    println!(
        "      policies: Wasm plugins from {}",
        plugins.source.display()
    );
    let retry = std::iter::once((SERVICE, plugins.retry)).chain(plugins.languages.iter().copied());
    for (service, plugin) in retry {
        println!(
            "        {service:<6} retry {} ({}), config {}",
            plugin.name, plugin.language, plugin.config
        );
    }
    println!("        routing route-affinity on each; checkpoint-interval for the log");
    for note in &plugins.notes {
        println!("      note: {note}");
    }
    if plugins.uncached.is_empty() {
        return;
    }
    let languages: Vec<&str> = plugins.uncached.iter().map(|p| p.language).collect();
    let kept = match &plugins.cache {
        Some(cache) => format!(
            "first run only: later runs load the compiled code from {}",
            cache.display()
        ),
        None => "the compiled code is not kept, so every run compiles".to_owned(),
    };
    println!(
        "      compiling the {} plugin{} before levee is ready: ~20 s each in a release build, \
         ~40 s in a debug one;\n      {kept}",
        languages.join(" and "),
        if languages.len() == 1 { "" } else { "s" },
    );
}

/// Step 5: the reads of step 4 through the services whose retry policy is
/// written in JavaScript and in Python, then what `/admin/plugins` counted.
async fn languages(cluster: &mut Cluster, plugins: Option<&Plugins>) -> anyhow::Result<()> {
    let Some(plugins) = plugins.filter(|plugins| !plugins.languages.is_empty()) else {
        println!("      skipped: no JavaScript or Python retry plugin is bound (see step 2)");
        return Ok(());
    };
    println!(
        "      services kv-js and kv-py: the same replicas and routing, {} still down; \
         each plugin reads its own config fields",
        NODE_IDS[VICTIM]
    );
    let keys = keys_led_by(VICTIM, 2);
    for (service, plugin) in &plugins.languages {
        println!(
            "      {service}: {} ({}), config {}",
            plugin.name, plugin.language, plugin.config
        );
        for key in &keys {
            let reply = cluster.get(service, key).await?;
            print_read(cluster, service, key, &reply);
        }
    }
    let counted = cluster.plugins().await;
    let mut retry = vec![plugins.retry];
    for (_, plugin) in &plugins.languages {
        if !retry.contains(plugin) {
            retry.push(*plugin);
        }
    }
    for plugin in retry {
        if let Some(view) = counted.iter().find(|view| view["name"] == plugin.name) {
            println!(
                "      /admin/plugins: {:<16} {:<10} calls {}  fallbacks {}  traps {}  timeouts {}",
                plugin.name,
                plugin.language,
                view["calls"],
                view["fallbacks"],
                view["traps"],
                view["timeouts"]
            );
        }
    }
    Ok(())
}

/// `count` demo keys whose first replica (ring order) is node `index`.
fn keys_led_by(index: usize, count: usize) -> Vec<String> {
    let ring = levee::cluster::ring::Ring::new(
        NODE_IDS.iter().map(|id| (*id, 1)),
        levee::cluster::ring::VNODES_PER_WEIGHT_DEFAULT,
    )
    .expect("three distinct nodes make a ring");
    (0..KEYS_PER_PHASE)
        .map(|i| format!("user-{i}"))
        .filter(|key| ring.preference(key.as_bytes(), 1).get(0) == Some(index))
        .take(count)
        .collect()
}

fn ensure_success(reply: &Reply) -> anyhow::Result<()> {
    if !reply.status.is_success() {
        bail!("a write failed: {} {}", reply.status, reply.body_text());
    }
    Ok(())
}

fn print_write(key: &str, reply: &Reply) {
    println!(
        "      PUT /kv/kv/{key:<9} -> {}  x-levee-acks: {}",
        reply.status.as_u16(),
        reply.header("x-levee-acks")
    );
}

fn print_read(cluster: &Cluster, service: &str, key: &str, reply: &Reply) {
    let decided = cluster
        .decided_by(reply)
        .map(|who| format!("  retry decided by {who}"))
        .unwrap_or_default();
    println!(
        "      GET /{service}/kv/{key:<9} -> {}  {}  x-levee-attempts: {}{decided}",
        reply.status.as_u16(),
        reply.body_text(),
        reply.header("x-levee-attempts")
    );
}

fn step(number: usize, text: &str) {
    println!("\n[{number}/{STEPS}] {text}");
}
