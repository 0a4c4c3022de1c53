"""Where the CPU went during a measured run.

On two shared cores a throughput figure alone cannot say whether the proxy
was the bottleneck, or wrk, or the replicas, or somebody else's compiler.
So around every measured run we sample the kernel's per-CPU counters
(/proc/stat) and the CPU time of each of our own processes; whatever busy
time is left over belongs to processes that are not ours ("foreign").
"""

from __future__ import annotations

import resource
import time
from dataclasses import dataclass
from pathlib import Path

from .procs import CLOCK_TICKS_PER_S, Spawned


@dataclass(frozen=True)
class Snapshot:
    at_s: float
    # Per CPU index: (busy seconds, total seconds) since boot.
    per_cpu: dict[int, tuple[float, float]]
    target_s: float
    upstream_s: float
    # CPU time of every child we have waited for (wrk): RUSAGE_CHILDREN.
    children_s: float


@dataclass(frozen=True)
class Usage:
    """CPU use over one measured run."""

    elapsed_s: float
    target_s: float
    upstream_s: float
    wrk_s: float
    # Per CPU index: fraction of the run it was busy (0..1).
    busy: dict[int, float]

    @property
    def busy_s(self) -> float:
        return sum(self.busy.values()) * self.elapsed_s

    @property
    def foreign_cores(self) -> float:
        """Average cores used by processes that are not part of the run."""
        ours = self.target_s + self.upstream_s + self.wrk_s
        return max(0.0, self.busy_s - ours) / self.elapsed_s if self.elapsed_s else 0.0


def _per_cpu() -> dict[int, tuple[float, float]]:
    counters = {}
    for line in Path("/proc/stat").read_text().splitlines():
        name, _, rest = line.partition(" ")
        if not name.startswith("cpu") or name == "cpu":
            continue
        ticks = [int(value) for value in rest.split()]
        # user nice system idle iowait irq softirq steal (guest time is
        # already inside user and nice, so it is not added again).
        total = sum(ticks[:8])
        idle = ticks[3] + ticks[4]
        counters[int(name[3:])] = ((total - idle) / CLOCK_TICKS_PER_S, total / CLOCK_TICKS_PER_S)
    return counters


def _children_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def snapshot(target: Spawned, upstreams: list[Spawned]) -> Snapshot:
    return Snapshot(
        at_s=time.monotonic(),
        per_cpu=_per_cpu(),
        target_s=target.cpu_seconds(),
        upstream_s=sum(process.cpu_seconds() for process in upstreams),
        children_s=_children_s(),
    )


def usage(before: Snapshot, after: Snapshot) -> Usage:
    busy = {}
    for cpu, (busy_after, total_after) in after.per_cpu.items():
        busy_before, total_before = before.per_cpu.get(cpu, (busy_after, total_after))
        total = total_after - total_before
        busy[cpu] = (busy_after - busy_before) / total if total > 0 else 0.0
    return Usage(
        elapsed_s=after.at_s - before.at_s,
        target_s=after.target_s - before.target_s,
        upstream_s=after.upstream_s - before.upstream_s,
        wrk_s=after.children_s - before.children_s,
        busy=busy,
    )
