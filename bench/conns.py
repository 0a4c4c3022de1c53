#!/usr/bin/env python3
"""Memory per connection: levee vs HAProxy vs nginx, side by side in one run.

Run through `bench/conns.sh` (installs the tools, builds levee and the
plugins unless given). This file is the plan; the machinery is in
`peerbench/` (memtargets, memrounds, clients, hold, fdlimit, memreport):

1. Raise this process's descriptor limit to what the largest N needs
   (children inherit it); counts that cannot fit are replaced by the
   largest that does, and the report says so.
2. Start the peer bench's three nginx upstreams and the hold upstream.
3. Idle rounds, largest N first, one target at a time, each on a freshly
   started proxy: RSS before, with N idle keep-alive connections (each
   after one GET answered 200), right after they close, and `--close-wait-s`
   later (read on a timer while the next rounds run; the proxy stays up
   until then).
4. In-flight rounds: each proxy freshly started in front of the hold
   upstream; RSS before and with N requests held upstream; then all are
   released and every client must get its 200.
5. Print one table (proxy × N: KiB per idle connection, KiB per in-flight
   request, RSS start/with/after close, ratios to HAProxy) and the goals,
   and save the report under `bench/results/` (never overwriting).

Every process is stopped by PID on the way out, whatever happened.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

import peers
from peerbench import clients, fdlimit, hold, levee, memreport, memrounds, memtargets, probe
from peerbench.procs import Processes, StartError
from peerbench.upstreams import Upstreams
from peerbench import upstreams as upstream_kinds

BENCH_DIR = Path(__file__).resolve().parent
REPO_DIR = BENCH_DIR.parent
DEFAULTS = {"conns": "1000,8000,32000", "inflight": "1000,4000", "close_wait_s": 60.0}
QUICK = {"conns": "1000,4000", "inflight": "1000", "close_wait_s": 10.0}
# Idle keep-alive timeout written into every proxy: longer than a whole
# run, so no proxy closes an idle connection while it is measured. 600 s
# is also the largest `server.header_read_timeout_ms` levee accepts, which
# stands in for it on levee builds without `keepalive_timeout_ms`.
KEEPALIVE_TIMEOUT_S = 600
# The hold upstream answers a held request after this at the latest; the
# proxies wait longer for an upstream's answer than that.
HOLD_S_MAX = 240
RESPONSE_TIMEOUT_S = 300
COUNT_MAX = 500_000


def _counts(text: str, flag: str, parser: argparse.ArgumentParser) -> list[int]:
    try:
        counts = sorted({int(part) for part in text.split(",") if part.strip()})
    except ValueError:
        parser.error(f"{flag}: a comma-separated list of numbers, got {text!r}")
    if not counts or not all(1 <= count <= COUNT_MAX for count in counts):
        parser.error(f"{flag}: each between 1 and {COUNT_MAX}")
    return counts


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--levee-bin", type=Path, default=REPO_DIR / "target/release/levee",
                        help="levee binary to measure (default: the repo's release build; "
                        "conns.sh skips its cargo build when this is given)")
    parser.add_argument("--plugins-dir", type=Path, default=levee.DEFAULT_PLUGIN_DIR,
                        help="directory holding " + " and ".join(levee.plugin_files())
                        + " (default: plugins/dist)")
    parser.add_argument("--conns", default=None,
                        help=f"idle rounds: connection counts (default {DEFAULTS['conns']})")
    parser.add_argument("--inflight", default=None,
                        help=f"in-flight rounds: request counts (default {DEFAULTS['inflight']}; "
                        "'none' skips them)")
    parser.add_argument("--close-wait-s", type=float, default=None,
                        help="RSS is read again this long after an idle round's connections "
                        f"close (default {DEFAULTS['close_wait_s']:g})")
    parser.add_argument("--quick", action="store_true",
                        help=f"--conns {QUICK['conns']} --inflight {QUICK['inflight']} "
                        f"--close-wait-s {QUICK['close_wait_s']:g} unless given (~1.5 min)")
    parser.add_argument("--targets", default=",".join(memtargets.TARGETS),
                        help=f"comma-separated subset of {','.join(memtargets.KNOWN_TARGETS)}")
    parser.add_argument("--concurrency", type=int, default=256,
                        help="connections opened (and requests sent) at a time")
    parser.add_argument("--settle-s", type=float, default=2.0,
                        help="wait before reading RSS, then until two readings agree")
    parser.add_argument("--proxy-threads", type=int, default=2,
                        help="haproxy nbthread, nginx worker_processes, levee tokio workers")
    parser.add_argument("--out", type=Path, default=None, help="report file (default: "
                        "bench/results/conns-<date>.md, or conns-<date>-N.md if taken)")
    args = parser.parse_args(argv)
    base = QUICK if args.quick else DEFAULTS
    args.conns = _counts(args.conns or base["conns"], "--conns", parser)
    inflight = args.inflight or base["inflight"]
    args.inflight = [] if inflight == "none" else _counts(inflight, "--inflight", parser)
    args.close_wait_s = base["close_wait_s"] if args.close_wait_s is None else args.close_wait_s
    args.targets = [name for name in args.targets.split(",") if name]
    unknown = set(args.targets) - set(memtargets.KNOWN_TARGETS)
    if unknown or not args.targets or len(set(args.targets)) != len(args.targets):
        parser.error(f"--targets: one or more of {', '.join(memtargets.KNOWN_TARGETS)}, each once")
    if not 0 <= args.close_wait_s <= 3600:
        parser.error("--close-wait-s must be between 0 and 3600")
    if not 0 <= args.settle_s <= 60:
        parser.error("--settle-s must be between 0 and 60")
    for name in ("concurrency", "proxy_threads"):
        if not 1 <= getattr(args, name) <= 10_000:
            parser.error(f"--{name.replace('_', '-')} must be between 1 and 10000")
    return args


def plan_counts(args) -> tuple[fdlimit.Limit, list[str]]:
    """Raises the descriptor limit; replaces the counts that cannot fit."""
    limit = fdlimit.raise_to(fdlimit.needed(max(args.conns), max(args.inflight, default=0)))
    notes = []
    if limit.shortfall:
        notes.append(f"Descriptor limit: wanted {limit.wanted:,}, got {limit.soft:,}: "
                     f"{limit.shortfall}.")
    args.conns, idle_notes = fdlimit.fitting(args.conns, 1, limit.soft)
    args.inflight, inflight_notes = fdlimit.fitting(args.inflight, 2, limit.soft)
    notes += [f"Idle round: {note}." for note in idle_notes]
    notes += [f"In-flight round: {note}." for note in inflight_notes]
    if not args.conns:
        raise fdlimit.FdLimitError("no idle round fits under the descriptor limit")
    return limit, notes


class Instances:
    """Every started proxy with its own Processes registry (and log dir),
    stopped by PID when its last reading is done, or at exit."""

    def __init__(self, stack: contextlib.ExitStack, work_dir: Path):
        self.stack = stack
        self.work_dir = work_dir
        self.started = 0

    def new(self, label: str) -> tuple[Processes, Path]:
        self.started += 1
        directory = self.work_dir / f"{self.started:02d}-{label}"
        directory.mkdir()
        return self.stack.enter_context(Processes(directory)), directory


def start(name, instances: Instances, label: str, ups: Upstreams, setup, args):
    procs, directory = instances.new(label)
    try:
        running = memtargets.start(name, procs, ups, directory, setup, args.levee_bin,
                                   args.plugins_dir)
    except (StartError, probe.ProbeError):
        procs.stop_all()
        raise
    return procs, running


def run_idle(args, setup, instances, nginx_ups, later, results, count):
    for name in args.targets:
        print(f"==> idle {name}, {count:,} connections", flush=True)
        try:
            procs, running = start(name, instances, f"idle-{count}-{name}", nginx_ups, setup, args)
        except (StartError, probe.ProbeError) as error:
            results.append(memrounds.IdleResult(name, count, 0, error=f"start failed: {error}"))
            continue
        began = time.monotonic()
        result, closed_at = memrounds.idle(running, count, args.concurrency, args.settle_s)
        results.append(result)
        print(f"    {describe_idle(result)} ({time.monotonic() - began:.0f} s)", flush=True)
        later.schedule(result, running.process, closed_at, args.close_wait_s, procs)
        for done in later.due():
            done.stop_all()


def describe_idle(result: memrounds.IdleResult) -> str:
    kib = result.kib_per_conn
    return (f"{'–' if kib is None else f'{kib:.2f}'} KiB/conn, RSS {result.rss_start / 2**20:.1f}"
            f" → {result.rss_warm / 2**20:.1f} → {result.rss_with / 2**20:.1f} → "
            f"{result.rss_closed / 2**20:.1f} MiB, "
            f"problems: {'; '.join(result.problems()) or 'none'}")


def run_inflight(args, setup, instances, hold_ups, results, count):
    member = hold_ups.members[0]
    for name in args.targets:
        print(f"==> in flight {name}, {count:,} requests", flush=True)
        try:
            procs, running = start(name, instances, f"inflight-{count}-{name}", hold_ups, setup,
                                   args)
        except (StartError, probe.ProbeError) as error:
            results.append(memrounds.InflightResult(name, count, 0, error=f"start failed: {error}"))
            continue
        began = time.monotonic()
        try:
            result = memrounds.inflight(running, member, count, args.concurrency, args.settle_s)
        finally:
            procs.stop_all()
        results.append(result)
        kib = result.kib_per_request
        print(f"    {'–' if kib is None else f'{kib:.2f}'} KiB/request, RSS "
              f"{result.rss_start / 2**20:.1f} → {result.rss_warm / 2**20:.1f} → "
              f"{result.rss_with / 2**20:.1f} MiB, held "
              f"{result.held:,}, problems: {'; '.join(result.problems()) or 'none'} "
              f"({time.monotonic() - began:.0f} s)", flush=True)


def notes_of(args, setup, fd_notes, limit) -> list[str]:
    notes = list(fd_notes)
    notes.append(
        f"Descriptors: RLIMIT_NOFILE raised from {limit.before[0]:,} (hard {limit.before[1]:,}) "
        f"to {limit.after[0]:,} (hard {limit.after[1]:,}) by the harness itself; the proxies "
        "inherit it."
        + ("" if setup.haproxy_strict_limits else
           f" HAProxy runs with `no strict-limits`: its maxconn {setup.client_conns_max:,} implies "
           f"twice as many descriptors, more than the hard limit; it uses {limit.after[0]:,}.")
    )
    if any(name.startswith("levee") for name in args.targets) and not setup.levee_keepalive:
        notes.append(
            "This levee has no `server.keepalive_timeout_ms` (it refused the field), so its idle "
            "keep-alive connections are closed by hyper's header-read timer; the run raised "
            f"`server.header_read_timeout_ms` to {KEEPALIVE_TIMEOUT_S * 1000:,} instead."
        )
    if "nginx" in args.targets:
        notes.append(
            f"nginx allocates its connection and event structures for all "
            f"`worker_connections` ({setup.nginx_connections_max:,}) per worker at start: they are in "
            "its start RSS, not in its per-connection figure."
        )
    notes.append(
        "RSS is VmRSS summed over the proxy's processes (nginx: master + workers), read once "
        "two readings 0.5 s apart agree. Each round runs on a freshly started proxy that "
        "served 50 checked GETs (start), then holds "
        f"{args.concurrency} warm-up connections open, each after one GET (warm: its upstream "
        "pool and allocator have seen a burst). Per connection or request: (RSS with N − "
        "warm) / N. After close: all connections closed, compared with the start."
    )
    return notes


def preamble(args, origin, load_before, elapsed_s) -> list[str]:
    return [
        f"Machine: {peers.cpu_model()}, {os.cpu_count()} CPUs (shared with other work; RSS "
        f"does not depend on CPU load), Linux {platform.release()}, everything on loopback. "
        f"Load average before/after: {load_before} / {peers.loadavg()}.",
        f"levee: {origin}; plugins from `{args.plugins_source}`. "
        f"{peers.command_output(['haproxy', '-v'])}; {peers.command_output(['nginx', '-v'])}.",
        f"Idle rounds: N = {', '.join(f'{count:,}' for count in args.conns)} keep-alive "
        f"connections, each after one GET answered 200 (opened {args.concurrency} at a time, "
        f"from {clients.SOURCE_ADDRESSES_COUNT} loopback source addresses), in front of "
        f"{upstream_kinds.COUNT} nginx upstreams. In-flight rounds: N = "
        f"{', '.join(f'{count:,}' for count in args.inflight) or 'none'} GETs held by one "
        f"upstream. RSS read again {args.close_wait_s:g} s after the idle connections close.",
        f"Threads: HAProxy `nbthread {args.proxy_threads}`, nginx `worker_processes "
        f"{args.proxy_threads}`, levee `TOKIO_WORKER_THREADS={args.proxy_threads}`.",
        f"Whole run took {elapsed_s:.0f} s.",
    ]


def measure(args, work_dir: Path, limit, fd_notes):
    idle_results: list[memrounds.IdleResult] = []
    inflight_results: list[memrounds.InflightResult] = []
    later = memrounds.LaterReadings()
    with contextlib.ExitStack() as stack:
        stack.callback(later.cancel_all)
        shared = stack.enter_context(Processes(work_dir))
        levee_keepalive = False
        if any(name.startswith("levee") for name in args.targets):
            levee_keepalive = memtargets.levee_knows_keepalive(shared, args.levee_bin, work_dir)
        setup = memtargets.Setup(
            idle_max=max(args.conns),
            inflight_max=max(args.inflight, default=0),
            keepalive_timeout_s=KEEPALIVE_TIMEOUT_S,
            response_timeout_s=RESPONSE_TIMEOUT_S,
            fd_limit=limit.soft,
            levee_keepalive=levee_keepalive,
            threads=args.proxy_threads,
        )
        print(f"==> upstreams: {upstream_kinds.COUNT} nginx and the hold upstream", flush=True)
        nginx_ups = upstream_kinds.start("nginx", shared, args.levee_bin, work_dir, None, 1, 1000)
        hold_ups = hold.start(shared, HOLD_S_MAX)
        instances = Instances(stack, work_dir)
        for count in sorted(args.conns, reverse=True):
            run_idle(args, setup, instances, nginx_ups, later, idle_results, count)
        for count in args.inflight:
            run_inflight(args, setup, instances, hold_ups, inflight_results, count)
        if later.pending():
            print(f"==> waiting for the last readings {args.close_wait_s:g} s after close",
                  flush=True)
        later.wait_all(args.close_wait_s + 30)
    return idle_results, inflight_results, notes_of(args, setup, fd_notes, limit)


def main() -> int:
    peers.stop_on_signals()
    args = parse_args()
    levee_wanted = any(name.startswith("levee") for name in args.targets)
    if levee_wanted and not args.levee_bin.is_file():
        print(f"error: {args.levee_bin} not found; build it with "
              f"`cargo build --release -p levee` or pass --levee-bin", file=sys.stderr)
        return 2
    wasm_wanted = any(name.startswith("levee-wasm") for name in args.targets)
    missing = [name for name in levee.plugin_files() if not (args.plugins_dir / name).is_file()]
    if wasm_wanted and missing:
        print(f"error: {', '.join(missing)} not in {args.plugins_dir}; build them with "
              f"`bash scripts/build-plugins.sh` or pass --plugins-dir", file=sys.stderr)
        return 2
    limit, fd_notes = plan_counts(args)
    for note in fd_notes:
        print(f"warning: {note}", file=sys.stderr, flush=True)
    started = time.monotonic()
    load_before = peers.loadavg()
    original_bin, args.plugins_source = args.levee_bin, args.plugins_dir
    with tempfile.TemporaryDirectory(prefix="levee-conns-") as work:
        work_dir = Path(work)
        origin = "not run"
        if levee_wanted:
            args.levee_bin = Path(shutil.copy2(args.levee_bin, work_dir / "levee"))
            origin = peers.levee_origin(args, original_bin)
        if wasm_wanted:
            args.plugins_dir = peers.private_plugins(args.plugins_dir, work_dir)
        idle_results, inflight_results, notes = measure(args, work_dir, limit, fd_notes)
    today = datetime.date.today().isoformat()
    text = memreport.render(
        f"levee memory per connection, {today}",
        preamble(args, origin, load_before, time.monotonic() - started),
        memreport.table(args.targets, idle_results, inflight_results, args.close_wait_s),
        notes,
        memreport.goals(idle_results, inflight_results, args.close_wait_s),
    )
    out = args.out or memreport.default_out(BENCH_DIR / "results", today)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    print()
    print(text)
    print(f"(saved to {out})")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except (probe.ProbeError, fdlimit.FdLimitError, RuntimeError) as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(1)
