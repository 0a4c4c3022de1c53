#!/usr/bin/env python3
"""levee vs HAProxy vs nginx vs the bare upstream, side by side in one run.

Run through `bench/peers.sh`, which installs the tools and builds levee and
the plugins first (or takes a given binary). This file is the plan of the
run; the machinery is in `peerbench/`:

1. Start three upstreams (see peerbench/upstreams.py). By default three
   nginx processes answering `return 200 "<fixed body>"`: cheap, so the
   proxy is the bottleneck. With `--upstream kv-replica` (or
   `nginx,kv-replica` for both, one table each) three `levee kv-replica`
   processes with the same keys preloaded on each.
2. Start every GET target (direct, HAProxy, nginx, levee native, levee
   Wasm) and check each answers 200 with the expected body for 50 keys.
3. Measure them in rounds, one target at a time, each round in a rotated
   order, so a burst of outside load (the machine is shared) hits one
   round of every target rather than all rounds of one. Each target keeps
   its best round: outside noise only ever makes a run slower.
   Then profile each levee once with `perf` (see peerbench/profile.py).
4. kv-replica upstreams only: measure quorum writes through levee with all
   replicas fast, then with one replica slowed by 500 ms.
5. `--tls` (nginx upstreams only): start HAProxy, nginx and levee again,
   now terminating TLS with one self-signed certificate (HTTP/2 and
   HTTP/1.1 by ALPN, plain HTTP to the same upstreams), and measure each
   in rounds over TLS/HTTP/1.1 with wrk and over HTTP/2 with h2load.
6. Print the Markdown report and save it under `bench/results/`.

Every process is stopped by PID on the way out, whatever happened.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path

from peerbench import (
    cpu,
    h2load,
    levee,
    probe,
    profile,
    replicas,
    report,
    targets,
    tls,
    upstreams,
    wrk,
)
from peerbench.procs import Processes

BENCH_DIR = Path(__file__).resolve().parent
REPO_DIR = BENCH_DIR.parent
SLOW_REPLICA_DELAY_MS = 500
GET_TARGETS = ("direct", "haproxy", "nginx", "levee-native", "levee-wasm", "levee-wasm-cached")
LEVEE_TARGETS = ("levee-native", "levee-wasm", "levee-wasm-cached")
TLS_TARGETS = ("haproxy", "nginx", "levee-native", "levee-wasm", "levee-wasm-cached")
# Three proxies × two modes × 3 rounds × 7 s: ~2.2 min. The Wasm flavours
# can be added (--tls-targets); TLS does not touch the policy path, whose
# cost the plain rows measure.
DEFAULT_TLS_TARGETS = ("haproxy", "nginx", "levee-native")
WASM_TARGETS = ("levee-wasm", "levee-wasm-cached")


def description(name: str, args: argparse.Namespace, kind: str) -> str:
    """The target's row label in the report."""
    upstream = "nginx upstream" if kind == "nginx" else "kv-replica"
    return {
        "direct": f"direct to one {upstream} (no proxy)",
        "haproxy": f"HAProxy 2.6, `nbthread {args.proxy_threads}`, `balance hdr(x-key)` consistent",
        "nginx": f"nginx 1.22, {args.proxy_threads} workers, `hash $http_x_key consistent`",
        "levee-native": "levee, native policies",
        "levee-wasm": "levee, Wasm retry-backoff + route-affinity (plan cache off: a plugin call per request)",
        "levee-wasm-cached": "levee, Wasm retry-backoff + route-affinity (default: plan cache on)",
    }[name]


def tls_description(name: str, args: argparse.Namespace) -> str:
    """A TLS row's label: what differs from the plain row of the same name."""
    return {
        "haproxy": f"HAProxy 2.6, `nbthread {args.proxy_threads}`, `bind ... ssl crt ... alpn "
                   f"h2,http/1.1`, `balance uri path-only` consistent",
        "nginx": f"nginx 1.22, {args.proxy_threads} workers, `listen ... ssl http2`, "
                 f"`hash $request_uri consistent`",
        "levee-native": "levee, native policies, `listeners.tls.data`, `server.http2`",
        "levee-wasm": "levee, Wasm policies (plan cache off), `listeners.tls.data`, "
                      "`server.http2`",
        "levee-wasm-cached": "levee, Wasm policies (plan cache on), `listeners.tls.data`, "
                             "`server.http2`",
    }[name]


@dataclass(frozen=True)
class Layout:
    """Which CPUs wrk, the target under test and the upstreams may use."""

    name: str
    wrk_cpus: set[int] | None
    target_cpus: set[int] | None
    upstream_cpus: set[int] | None

    def describe(self) -> str:
        if self.target_cpus is None:
            return "no pinning: the kernel schedules wrk, the target and the upstreams freely"
        return (
            f"pinned: wrk and the upstreams on CPU {_cpus(self.wrk_cpus)}, the target under "
            f"test alone on CPU {_cpus(self.target_cpus)} (for `direct`, the measured "
            f"upstream moves there for its run)"
        )


def _cpus(cpus: set[int] | None) -> str:
    return ",".join(str(cpu) for cpu in sorted(cpus or ()))


def layouts() -> dict[str, Layout]:
    cpus = sorted(os.sched_getaffinity(0))
    shared = Layout("shared", None, None, None)
    if len(cpus) < 2:
        return {"shared": shared, "split": shared}
    first, second = {cpus[0]}, {cpus[1]}
    return {"shared": shared, "split": Layout("split", first, second, first)}


def _names(text: str) -> list[str]:
    return [name for name in text.split(",") if name]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--levee-bin", type=Path, default=REPO_DIR / "target/release/levee",
                        help="levee binary to measure (default: the repo's release build; "
                        "peers.sh skips its cargo build when this is given)")
    parser.add_argument("--plugins-dir", type=Path, default=levee.DEFAULT_PLUGIN_DIR,
                        help="directory holding " + " and ".join(levee.plugin_files())
                        + " (default: plugins/dist; peers.sh skips the plugin build "
                        "when this is given)")
    parser.add_argument("--upstream", default="nginx",
                        help="comma-separated upstream kinds, one GET table each, in this "
                        f"order: {', '.join(upstreams.KINDS)} (default: nginx)")
    parser.add_argument("--duration-s", type=int, default=5, help="measured wrk run per target")
    parser.add_argument("--warmup-s", type=int, default=2, help="discarded wrk run before each")
    parser.add_argument("--rounds", type=int, default=3, help="GET rounds over all targets")
    parser.add_argument("--write-rounds", type=int, default=2,
                        help="rounds of (all fast, one slow) quorum writes (kv-replica only)")
    parser.add_argument("--profile-s", type=int, default=5,
                        help="perf profile of each levee after the rounds (0: skip)")
    parser.add_argument("--connections", type=int, default=64, help="wrk connections for GET")
    parser.add_argument("--write-connections", type=int, default=16)
    parser.add_argument("--wrk-threads", type=int, default=1)
    parser.add_argument("--proxy-threads", type=int, default=2,
                        help="haproxy nbthread, nginx worker_processes, levee tokio workers")
    parser.add_argument("--replica-threads", type=int, default=1,
                        help="tokio worker threads of each kv-replica")
    parser.add_argument("--keys", type=int, default=1000)
    parser.add_argument("--layout", choices=("shared", "split"), default="shared",
                        help="shared: no pinning (default); split: wrk and the upstreams on "
                        "the first CPU, the target alone on the second")
    parser.add_argument("--targets", default=",".join(GET_TARGETS),
                        help=f"comma-separated subset of {','.join(GET_TARGETS)}")
    parser.add_argument("--no-writes", action="store_true",
                        help="skip the quorum-write part (kv-replica upstreams only)")
    parser.add_argument("--tls", action="store_true",
                        help="add the TLS rows: the --tls-targets terminating TLS, measured over "
                        "TLS/HTTP/1.1 (wrk) and HTTP/2 (h2load), nginx upstreams only; about "
                        "2.2 min more with the defaults")
    parser.add_argument("--tls-targets", default=",".join(DEFAULT_TLS_TARGETS),
                        help=f"comma-separated subset of {','.join(TLS_TARGETS)} (default: "
                        f"{','.join(DEFAULT_TLS_TARGETS)})")
    parser.add_argument("--h2-streams", type=int, default=10,
                        help="h2load concurrent streams per connection (-m); connections are "
                        "--connections")
    parser.add_argument("--h2load-threads", type=int, default=1,
                        help="h2load threads (-t), like wrk's single thread by default")
    parser.add_argument("--out", type=Path, default=None, help="report file (default: "
                        "bench/results/peers-<date>.md, or peers-<date>-N.md if taken)")
    args = parser.parse_args(argv)
    args.targets = _names(args.targets)
    unknown = set(args.targets) - set(GET_TARGETS)
    if unknown:
        parser.error(f"unknown targets {sorted(unknown)}; known: {', '.join(GET_TARGETS)}")
    args.tls_targets = _names(args.tls_targets)
    unknown = set(args.tls_targets) - set(TLS_TARGETS)
    if unknown or not args.tls_targets:
        parser.error(f"--tls-targets: one or more of {', '.join(TLS_TARGETS)}")
    args.upstream = _names(args.upstream)
    unknown = set(args.upstream) - set(upstreams.KINDS)
    if unknown or not args.upstream or len(set(args.upstream)) != len(args.upstream):
        parser.error(f"--upstream: one or more of {', '.join(upstreams.KINDS)}, each once")
    if args.tls and "nginx" not in args.upstream:
        parser.error("--tls needs the nginx upstreams (kv-replicas would be the bottleneck)")
    if not 0 <= args.profile_s <= 600:
        parser.error("--profile-s must be between 0 and 600")
    for name in ("duration_s", "warmup_s", "rounds", "write_rounds", "connections",
                 "write_connections", "h2_streams", "h2load_threads",
                 "wrk_threads", "proxy_threads", "replica_threads", "keys"):
        if not 1 <= getattr(args, name) <= 100_000:
            parser.error(f"--{name.replace('_', '-')} must be between 1 and 100000")
    if args.keys < targets.VERIFY_KEYS_SPAN:
        parser.error(f"--keys must be at least {targets.VERIFY_KEYS_SPAN}")
    if args.h2load_threads > args.connections:
        parser.error("--h2load-threads must not exceed --connections")
    return args


def tls_targets(args: argparse.Namespace) -> list[str]:
    """The targets measured over TLS in this run (none without --tls)."""
    return list(args.tls_targets) if args.tls else []


def wasm_targets(args: argparse.Namespace) -> set[str]:
    """Targets that need the plugins."""
    return set(WASM_TARGETS) & (set(args.targets) | set(tls_targets(args)))


def writes_wanted(args: argparse.Namespace) -> bool:
    """Quorum writes need upstreams that store: the kv-replicas."""
    return "kv-replica" in args.upstream and not args.no_writes


def needs_levee_bin(args: argparse.Namespace) -> bool:
    wanted = set(args.targets) | set(tls_targets(args))
    return bool(wanted & set(LEVEE_TARGETS)) or "kv-replica" in args.upstream


def stop_on_signals():
    """SIGTERM/SIGINT/SIGHUP become SystemExit, so `finally` stops processes."""

    def handler(signum, _frame):
        print(f"==> interrupted by signal {signum}: stopping what this run started",
              file=sys.stderr, flush=True)
        raise SystemExit(128 + signum)

    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(signum, handler)


def start_target(name, procs, args, layout, ups, work_dir) -> targets.Running:
    if name == "direct":
        return targets.direct(ups)
    if name == "haproxy":
        return targets.haproxy(procs, ups, work_dir, layout.target_cpus, args.proxy_threads)
    if name == "nginx":
        return targets.nginx(procs, ups, work_dir, layout.target_cpus, args.proxy_threads)
    flavour = name.removeprefix("levee-")
    return targets.levee_target(
        procs, args.levee_bin, args.plugins_dir, ups, work_dir, layout.target_cpus,
        args.proxy_threads, flavour, name,
    )


def measure(running, load, warmup_s, layout, ups, client=None) -> tuple[wrk.WrkResult, cpu.Usage]:
    """One warmup (discarded) and one measured run of the load generator;
    returns the result and where the CPU went during the measured run.
    `client(duration_s)` runs the load generator (default: wrk with `load`)."""
    if client is None:
        def client(duration_s: int) -> wrk.WrkResult:
            return wrk.run(running.url, replace(load, duration_s=duration_s), layout.wrk_cpus)
    moved = running.name == "direct" and layout.target_cpus is not None
    if moved:
        running.process.pin_all_threads(layout.target_cpus)
    others = [process for process in ups.processes if process is not running.process]
    try:
        client(warmup_s)
        before = cpu.snapshot(running.process, others)
        result = client(load.duration_s)
        used = cpu.usage(before, cpu.snapshot(running.process, others))
    finally:
        if moved:
            running.process.pin_all_threads(layout.upstream_cpus)
    return result, used


def describe_round(label: str, result: wrk.WrkResult, used: cpu.Usage) -> str:
    busy = " ".join(f"cpu{index} {fraction:4.0%}" for index, fraction in sorted(used.busy.items()))
    return (
        f"    {label:<22} {result.rps:>9,.0f} req/s  p50 {result.p50_us / 1000:6.2f} ms  "
        f"p99 {result.p99_us / 1000:6.2f} ms  errors {report.errors_text(result)}  "
        f"[{busy}, target {used.target_s / used.elapsed_s:.2f} cores, "
        f"upstreams {used.upstream_s / used.elapsed_s:.2f}, "
        f"foreign {used.foreign_cores:.2f}]"
    )


@dataclass
class Rounds:
    """Every round of every target, and each target's best one."""

    best: dict[str, tuple[wrk.WrkResult, cpu.Usage]]
    rps: dict[str, list[float]]
    requests: dict[str, int]

    def record(self, name: str, result: wrk.WrkResult, used: cpu.Usage):
        self.rps.setdefault(name, []).append(result.rps)
        self.requests[name] = self.requests.get(name, 0) + result.requests
        if name not in self.best or result.rps > self.best[name][0].rps:
            self.best[name] = (result, used)


def run_gets(procs, args, layout, ups, work_dir):
    load = wrk.Load("get.lua", args.connections, args.wrk_threads, args.duration_s, args.keys)
    running = []
    for name in args.targets:
        print(f"==> starting {name} (checking 200 + expected body for "
              f"{targets.VERIFY_KEYS_COUNT} keys)", flush=True)
        running.append(start_target(name, procs, args, layout, ups, work_dir))
    rounds = Rounds({}, {}, {})
    for round_index in range(args.rounds):
        # Each round starts one target later, so no target is always the
        # one measured right after (or before) the same neighbour.
        shift = round_index % len(running)
        for target in running[shift:] + running[:shift]:
            target_load = replace(load, path_prefix=target.path_prefix)
            result, used = measure(target, target_load, args.warmup_s, layout, ups)
            rounds.record(target.name, result, used)
            print(describe_round(f"round {round_index + 1} {target.name}", result, used), flush=True)
    notes = [plugin_note(target, rounds.requests[target.name]) for target in running if target.admin]
    profiles = profile_levees(running, load, args, layout, work_dir)
    # Peak RSS is read last: VmHWM only grows, so it covers every round.
    rows = [
        report.Row(
            name=target.name,
            description=description(target.name, args, ups.kind),
            result=rounds.best[target.name][0],
            peak_rss_bytes=target.process.peak_rss_bytes(),
            usage=rounds.best[target.name][1],
            rounds_rps=rounds.rps[target.name],
        )
        for target in running
    ]
    for target in running:
        if target.owned:
            procs.stop(target.process)
    return rows, [note for note in notes if note], profiles


def profile_levees(running, load, args, layout, work_dir) -> dict[str, profile.Profile | None]:
    """One extra run per levee under `perf record` (see peerbench/profile.py)."""
    levees = [target for target in running if target.admin]
    if not levees or args.profile_s == 0:
        return {}
    if not profile.available():
        print("    (perf not usable here: no profile)", flush=True)
        return {target.name: None for target in levees}
    profiles = {}
    for target in levees:
        out = work_dir / f"{target.name}.perf.data"
        recording = profile.start(target.process.pid, args.profile_s, out)
        wrk.run(
            target.url,
            replace(load, duration_s=args.profile_s, path_prefix=target.path_prefix),
            layout.wrk_cpus,
        )
        profiles[target.name] = profile.finish(recording, out, timeout_s=args.profile_s + 30)
        found = profiles[target.name]
        print(
            f"    profile {target.name}: "
            + (f"{found.samples} samples, policy share {found.policy_share:.1f}%" if found
               else "failed"),
            flush=True,
        )
    return profiles


def plugin_note(target: targets.Running, measured_requests: int) -> str:
    """What levee says its plugins did: proof that the Wasm row ran Wasm."""
    calls = levee.plugin_calls(target.admin)
    if not calls:
        return ""
    parts = [
        f"`{name}` {plugin.calls:,} calls, {plugin.fallbacks} fallbacks, "
        f"{plugin.traps} traps, {plugin.timeouts} timeouts"
        for name, plugin in sorted(calls.items())
    ]
    routing = calls.get(levee.WASM_POLICIES["routing"]["plugin"])
    if routing and routing.calls < measured_requests and target.name != "levee-wasm-cached":
        parts.append(
            f"**warning**: the routing plugin answered fewer calls than requests were "
            f"measured ({measured_requests:,}): some requests did not run Wasm"
        )
    if routing and routing.fallbacks:
        parts.append(
            f"**warning**: the routing plugin fell back to the native policy "
            f"{routing.fallbacks:,} times ({routing.timeouts:,} timeouts, {routing.traps:,} "
            f"traps), out of {routing.calls:,} calls (warmups and checks included)"
        )
    return (
        f"{target.name} plugins (from `/admin/plugins`): " + "; ".join(parts)
        + ". The retry plugin is consulted only after a failed attempt, so it has no calls "
        "on a healthy run; the routing plugin orders the upstreams of every request."
    )


def start_tls_target(name, procs, args, layout, ups, work_dir, files) -> targets.Running:
    """The target `name` terminating TLS with `files`; its process, dir and
    log are `<name>-tls`."""
    process_name = f"{name}-tls"
    if name == "haproxy":
        return targets.haproxy(procs, ups, work_dir, layout.target_cpus, args.proxy_threads,
                               tls=files, name=process_name)
    if name == "nginx":
        return targets.nginx(procs, ups, work_dir, layout.target_cpus, args.proxy_threads,
                             tls=files, name=process_name)
    return targets.levee_target(
        procs, args.levee_bin, args.plugins_dir, ups, work_dir, layout.target_cpus,
        args.proxy_threads, name.removeprefix("levee-"), process_name, tls=files,
    )


def tls_setup(args, files: tls.TlsFiles) -> str:
    return (
        f"Every proxy terminates TLS towards the client with the same self-signed ECDSA P-256 "
        f"certificate made for this run (`{' '.join(tls.openssl_argv(Path('cert.pem'), Path('key.pem')))}`"
        f"), TLS 1.2 and 1.3 allowed, `h2` and `http/1.1` offered by ALPN, and speaks plain "
        f"HTTP/1.1 to the same three upstreams as above. Each is a fresh process with the "
        f"plain row's settings plus TLS (its peak RSS covers both TLS modes); the plain "
        f"targets were stopped first. HAProxy hashes `uri path-only` and nginx "
        f"`$request_uri` here, as h2load cannot vary the `x-key` header per request; "
        f"levee reads the key from the path, as always. HTTP/2 streams per connection: "
        f"HAProxy 100 and nginx 128 (their defaults), levee `server.http2.streams_max` "
        f"{levee.HTTP2['streams_max']}. {args.warmup_s} s warmup + {args.duration_s} s "
        f"measured per target, mode and round, best of {args.rounds} rounds in rotated order; "
        f"each target is checked first (50 GETs over TLS with the expected body, the "
        f"certificate verified; ALPN picks `h2` when offered and `http/1.1` alone otherwise)."
    )


def run_tls(procs, args, layout, ups, work_dir) -> report.TlsPart:
    """The TLS rows: each --tls-targets proxy terminating TLS, in rounds,
    over TLS/HTTP/1.1 (wrk, the plain rows' load) and HTTP/2 (h2load)."""
    files = tls.make_certificate(work_dir)
    running: list[tuple[str, targets.Running]] = []
    sessions: dict[str, str] = {}
    for name in args.tls_targets:
        print(f"==> starting {name} with TLS (checking 200 + expected body for "
              f"{targets.VERIFY_KEYS_COUNT} keys, ALPN)", flush=True)
        target = start_tls_target(name, procs, args, layout, ups, work_dir, files)
        sessions[name] = "harness " + tls.check_alpn(
            target.name, target.host, target.port, files
        ).describe()
        running.append((name, target))
    h1_load = wrk.Load("get.lua", args.connections, args.wrk_threads, args.duration_s, args.keys)
    h2_load = h2load.Load(args.connections, args.h2_streams, args.h2load_threads,
                          args.duration_s, args.keys)
    body_bytes = len(ups.expected_of(0))
    h1_rounds, h2_rounds = Rounds({}, {}, {}), Rounds({}, {}, {})
    h2load_sessions: dict[str, str] = {}

    def h2_client(name: str, target: targets.Running):
        def client(duration_s: int) -> wrk.WrkResult:
            done = h2load.run(
                target.url,
                replace(h2_load, duration_s=duration_s, path_prefix=target.path_prefix),
                layout.wrk_cpus,
                work_dir / "h2load" / name,
                body_bytes,
            )
            h2load_sessions[name] = f"h2load {done.protocol}, {done.tls}"
            return done.result
        return client

    for round_index in range(args.rounds):
        shift = round_index % len(running)
        for name, target in running[shift:] + running[:shift]:
            load = replace(h1_load, path_prefix=target.path_prefix)
            result, used = measure(target, load, args.warmup_s, layout, ups)
            h1_rounds.record(name, result, used)
            print(describe_round(f"round {round_index + 1} {name} tls/1.1", result, used),
                  flush=True)
            result, used = measure(target, h2_load, args.warmup_s, layout, ups,
                                   client=h2_client(name, target))
            h2_rounds.record(name, result, used)
            print(describe_round(f"round {round_index + 1} {name} h2", result, used), flush=True)
    rows: dict[str, list[report.Row]] = {"h1": [], "h2": []}
    for name, target in running:
        peak = target.process.peak_rss_bytes()
        for mode, rounds in (("h1", h1_rounds), ("h2", h2_rounds)):
            best, used = rounds.best[name]
            rows[mode].append(report.Row(name, tls_description(name, args), best, peak, used,
                                         rounds.rps[name]))
        procs.stop(target.process)
    for name in sessions:
        if name in h2load_sessions:
            sessions[name] += f"; {h2load_sessions[name]}"
    return report.TlsPart(
        h1_rows=rows["h1"],
        h2_rows=rows["h2"],
        h1_client=f"`wrk -t{args.wrk_threads} -c{args.connections}` to https://, the plain "
                  f"rows' requests (`x-key` included)",
        h2_client=f"`h2load -c{args.connections} -m{args.h2_streams} -t{args.h2load_threads}` "
                  f"(ALPN `h2` only: {args.connections * args.h2_streams} streams in flight), "
                  f"GET of the key's path without `x-key`; p50/p99 from h2load's per-request log",
        h1_client_threads=args.wrk_threads,
        h2_client_threads=args.h2load_threads,
        sessions=sessions,
        setup=tls_setup(args, files),
    )


def run_writes(procs, args, layout, ups, work_dir) -> list[report.WriteRow]:
    print("==> starting levee for quorum writes", flush=True)
    running = targets.levee_target(
        procs, args.levee_bin, args.plugins_dir, ups, work_dir, layout.target_cpus,
        args.proxy_threads, "wasm", "levee-writes",
    )
    load = wrk.Load(
        "put.lua", args.write_connections, args.wrk_threads, args.duration_s, args.keys,
        running.path_prefix,
    )
    slowed = ups.members[-1]
    conditions = ("all 3 fast", f"{slowed.name} slowed by {SLOW_REPLICA_DELAY_MS} ms")
    results: dict[str, list[wrk.WrkResult]] = {condition: [] for condition in conditions}
    # Fast and slow alternate, like the GET rounds, so outside load (disk
    # too: every write is fsynced) spreads over both conditions.
    for round_index in range(args.write_rounds):
        fast, used = measure(running, load, args.warmup_s, layout, ups)
        if round_index == 0:
            targets.verify_written(running)
        results[conditions[0]].append(fast)
        print(describe_round(f"round {round_index + 1} writes fast", fast, used), flush=True)
        replicas.set_delay(slowed, SLOW_REPLICA_DELAY_MS)
        try:
            slow, used = measure(running, load, args.warmup_s, layout, ups)
        finally:
            replicas.set_delay(slowed, 0)
        results[conditions[1]].append(slow)
        print(describe_round(f"round {round_index + 1} writes slow", slow, used), flush=True)
    procs.stop(running.process)
    return [
        report.WriteRow(
            condition,
            max(runs, key=lambda result: result.rps),
            [result.p50_us for result in runs],
        )
        for condition, runs in results.items()
    ]


def run_mode(kind: str, args, layout: Layout, work_dir: Path) -> report.Section:
    """Everything measured against one kind of upstreams: its own
    processes, stopped (by PID) before the next kind starts."""
    mode_dir = work_dir / kind
    mode_dir.mkdir()
    with Processes(mode_dir) as procs:
        print(f"==> upstreams: starting {upstreams.COUNT} {kind}", flush=True)
        ups = upstreams.start(
            kind, procs, args.levee_bin, mode_dir, layout.upstream_cpus, args.replica_threads,
            args.keys,
        )
        rows, notes, profiles = run_gets(procs, args, layout, ups, mode_dir)
        writes = []
        if kind == "kv-replica" and writes_wanted(args):
            writes = run_writes(procs, args, layout, ups, mode_dir)
        tls_part = run_tls(procs, args, layout, ups, mode_dir) if kind == "nginx" and args.tls else None
    return report.Section(kind, ups.description, rows, notes, profiles, writes, tls_part)


def command_output(argv: list[str]) -> str:
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return "?"
    # `wrk -v` prints its version and exits 1: take the first line either way.
    lines = (done.stdout + done.stderr).strip().splitlines()
    return lines[0].strip() if lines else "?"


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "?"


def levee_origin(args, original_bin: Path) -> str:
    """Which levee was measured: the repo's build (and its commit) or a
    binary given with --levee-bin."""
    version = command_output([str(args.levee_bin), "--version"])
    if original_bin.resolve() == (REPO_DIR / "target/release/levee").resolve():
        # "-dirty": the tree had uncommitted changes (others work in it too).
        commit = command_output(["git", "-C", str(REPO_DIR), "describe", "--always", "--dirty"])
        return f"{version}, `target/release/levee` built from commit {commit}"
    return f"{version}, binary `{original_bin}` (`--levee-bin`; not built by this run)"


def preamble(args, layout: Layout, origin: str, load_before: str, load_after: str,
             elapsed_s: float) -> list[str]:
    return [
        f"Machine: {cpu_model()}, {os.cpu_count()} CPUs (shared with other work), "
        f"Linux {platform.release()}, everything on loopback. "
        f"Load average before/after: {load_before} / {load_after}.",
        f"levee: {origin}; plugins from `{args.plugins_source}`. "
        f"{command_output(['haproxy', '-v'])}; {command_output(['nginx', '-v'])}; "
        f"{command_output(['wrk', '-v'])}"
        + (f"; {command_output(['h2load', '--version'])}; "
           f"{command_output(['openssl', 'version'])}." if args.tls else "."),
        f"Load: `wrk -t{args.wrk_threads} -c{args.connections}`, GET /kv/<key> with an "
        f"`x-key: <key>` header, walking {args.keys} keys, {args.warmup_s} s warmup + "
        f"{args.duration_s} s measured per target and round, best of {args.rounds} rounds "
        f"in rotated order, one target at a time.",
        f"Threads: HAProxy `nbthread {args.proxy_threads}`, nginx `worker_processes "
        f"{args.proxy_threads}`, levee `TOKIO_WORKER_THREADS={args.proxy_threads}`; each "
        f"nginx upstream 1 worker, each kv-replica `TOKIO_WORKER_THREADS="
        f"{args.replica_threads}`.",
        f"CPU layout: {layout.describe()}.",
        f"Whole measurement took {elapsed_s:.0f} s.",
    ]


def loadavg() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "?"


def default_out(results_dir: Path, today: str) -> Path:
    """bench/results/peers-<date>.md, or -2, -3, ... when a run of the same
    day is already there: an earlier report is never overwritten."""
    out = results_dir / f"peers-{today}.md"
    number = 2
    while out.exists():
        out = results_dir / f"peers-{today}-{number}.md"
        number += 1
    return out


def private_plugins(plugins_dir: Path, work_dir: Path) -> Path:
    """A private copy of the two plugins the Wasm flavour binds (those of
    them that exist): levee watches its plugin directory, and others
    rebuilding plugins/dist mid-run must not swap a plugin between rounds.
    Every levee of the run gets this directory, a native one too: levee
    loads whatever its plugin directory holds, and plugins/dist also holds
    JavaScript and Python components whose first compile outlasts the
    readiness wait."""
    copy = work_dir / "plugins"
    copy.mkdir()
    for name in levee.plugin_files():
        if (plugins_dir / name).is_file():
            shutil.copy2(plugins_dir / name, copy / name)
    return copy


def main() -> int:
    stop_on_signals()
    args = parse_args()
    if needs_levee_bin(args) and not args.levee_bin.is_file():
        print(f"error: {args.levee_bin} not found; build it with "
              f"`cargo build --release -p levee` or pass --levee-bin", file=sys.stderr)
        return 2
    missing = [name for name in levee.plugin_files() if not (args.plugins_dir / name).is_file()]
    if wasm_targets(args) and missing:
        print(f"error: {', '.join(missing)} not in {args.plugins_dir}; build them with "
              f"`bash scripts/build-plugins.sh` or pass --plugins-dir", file=sys.stderr)
        return 2
    layout = layouts()[args.layout]
    started = time.monotonic()
    load_before = loadavg()
    # What was given, for the report (the run uses private copies).
    original_bin, args.plugins_source = args.levee_bin, args.plugins_dir
    with tempfile.TemporaryDirectory(prefix="levee-peers-") as work:
        work_dir = Path(work)
        origin = "not run"
        if needs_levee_bin(args):
            # A private copy: others rebuilding target/release mid-run must
            # not change the binary between the targets of one run.
            args.levee_bin = Path(shutil.copy2(args.levee_bin, work_dir / "levee"))
            origin = levee_origin(args, original_bin)
            args.plugins_dir = private_plugins(args.plugins_dir, work_dir)
        sections = [run_mode(kind, args, layout, work_dir) for kind in args.upstream]
    elapsed_s = time.monotonic() - started
    today = datetime.date.today().isoformat()
    text = report.render(
        f"levee peer benchmark, {today}",
        preamble(args, layout, origin, load_before, loadavg(), elapsed_s),
        sections,
        args.connections,
        args.write_connections,
    )
    out = args.out or default_out(BENCH_DIR / "results", today)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    print()
    print(text)
    print(f"(saved to {out})")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except (probe.ProbeError, wrk.WrkError, tls.TlsError, RuntimeError) as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(1)
