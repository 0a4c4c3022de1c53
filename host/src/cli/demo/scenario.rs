//! The narrated scenario: start the replicas and levee, write and read,
//! kill a replica, keep writing, bring it back, wait for hinted handoff to
//! converge, summarise.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::bail;

use super::processes::Cluster;
use super::requests::Reply;
use super::{DemoOptions, KEYS_PER_PHASE, NODE_IDS, VICTIM, find_plugins};

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

    let retry_plugin = options.retry_plugin();
    let plugins = find_plugins(options.plugin_dir.as_deref(), retry_plugin);
    step(
        2,
        "starting levee: every key lives on N=3 replicas, a write needs W=2 acks",
    );
    match &plugins {
        Ok(dir) => println!(
            "      policies: Wasm plugins {}, route-affinity, checkpoint-interval from {}",
            retry_plugin.name,
            dir.display()
        ),
        Err(note) => println!("      note: {note}\n      policies: native built-ins"),
    }
    cluster
        .start_levee(plugins.as_ref().ok().map(PathBuf::as_path), retry_plugin)
        .await?;
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
        print_read(
            &format!("user-{i}"),
            &cluster.get(&format!("user-{i}")).await?,
        );
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
        print_read(&key, &cluster.get(&key).await?);
    }
    println!("      (after a few failures {victim} is ejected: reads stop trying it first)");

    step(
        5,
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
        6,
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

    step(7, "summary");
    cluster.print_summary().await;
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

fn print_read(key: &str, reply: &Reply) {
    println!(
        "      GET /kv/kv/{key:<9} -> {}  {}  x-levee-attempts: {}",
        reply.status.as_u16(),
        reply.body_text(),
        reply.header("x-levee-attempts")
    );
}

fn step(number: usize, text: &str) {
    println!("\n[{number}/7] {text}");
}
