"""Where the CPU went during a measured run.

On two shared cores a throughput figure alone cannot say whether the proxy
was the bottleneck, or wrk, or the upstreams, or somebody else's compiler.
So around every measured run we sample the kernel's per-CPU counters
(/proc/stat) and the CPU time of each of our own processes; whatever busy
time is left over belongs to processes that are not ours ("foreign").

A process's CPU time is utime + stime from /proc/PID/stat, summed over the
whole process tree of a target (nginx: master and every worker; HAProxy and
levee: one process, all threads), read right before and right after the
measured wrk run. Divided by the requests wrk counted, that is the target's
CPU cost per request, the figure that does not depend on how many cores the
target got.

Not in any process's figure: interrupt and softirq time, which the kernel
accounts apart (/proc/stat `irq` and `softirq`). On loopback that is mostly
the receive side of our own TCP traffic, so it is reported on its own (per
request, for the whole machine) and not counted as foreign load.
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
    # irq + softirq seconds since boot, all CPUs.
    irq_s: float
    target_s: float
    # Per upstream process tree, in the order given.
    upstream_each_s: tuple[float, ...]
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
    # The busiest single upstream's CPU seconds (each upstream has one
    # worker, so upstream_max_s / elapsed_s near 1 means it was saturated).
    upstream_max_s: float = 0.0
    # irq + softirq time of the whole machine (loopback TCP, mostly ours).
    irq_s: float = 0.0

    @property
    def upstream_max_cores(self) -> float:
        return self.upstream_max_s / self.elapsed_s if self.elapsed_s else 0.0

    @property
    def busy_s(self) -> float:
        return sum(self.busy.values()) * self.elapsed_s

    @property
    def foreign_cores(self) -> float:
        """Average cores used by processes that are not part of the run."""
        ours = self.target_s + self.upstream_s + self.wrk_s + self.irq_s
        return max(0.0, self.busy_s - ours) / self.elapsed_s if self.elapsed_s else 0.0


def parse_proc_stat(text: str) -> tuple[dict[int, tuple[float, float]], float]:
    """Per CPU (busy, total) seconds, and irq + softirq seconds of all CPUs,
    from the text of /proc/stat."""
    counters, irq_s = {}, 0.0
    for line in text.splitlines():
        name, _, rest = line.partition(" ")
        if not name.startswith("cpu"):
            continue
        ticks = [int(value) for value in rest.split()]
        if name == "cpu":
            irq_s = (ticks[5] + ticks[6]) / CLOCK_TICKS_PER_S
            continue
        # user nice system idle iowait irq softirq steal (guest time is
        # already inside user and nice, so it is not added again).
        total = sum(ticks[:8])
        idle = ticks[3] + ticks[4]
        counters[int(name[3:])] = ((total - idle) / CLOCK_TICKS_PER_S, total / CLOCK_TICKS_PER_S)
    return counters, irq_s


def _children_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def snapshot(target: Spawned, upstreams: list[Spawned]) -> Snapshot:
    per_cpu, irq_s = parse_proc_stat(Path("/proc/stat").read_text())
    return Snapshot(
        at_s=time.monotonic(),
        per_cpu=per_cpu,
        irq_s=irq_s,
        target_s=target.cpu_seconds(),
        upstream_each_s=tuple(process.cpu_seconds() for process in upstreams),
        children_s=_children_s(),
    )


def usage(before: Snapshot, after: Snapshot) -> Usage:
    busy = {}
    for cpu, (busy_after, total_after) in after.per_cpu.items():
        busy_before, total_before = before.per_cpu.get(cpu, (busy_after, total_after))
        total = total_after - total_before
        busy[cpu] = (busy_after - busy_before) / total if total > 0 else 0.0
    upstream_deltas = [
        after_s - before_s
        for before_s, after_s in zip(before.upstream_each_s, after.upstream_each_s)
    ]
    return Usage(
        elapsed_s=after.at_s - before.at_s,
        target_s=after.target_s - before.target_s,
        upstream_s=sum(upstream_deltas),
        wrk_s=after.children_s - before.children_s,
        busy=busy,
        upstream_max_s=max(upstream_deltas, default=0.0),
        irq_s=after.irq_s - before.irq_s,
    )
