"""Where levee's own CPU time goes, from a sampling profile.

Throughput on a shared two-core machine moves by ±20% between rounds, far
more than the few percent the Wasm policies cost. A profile does not have
that problem: what share of levee's samples fall in the Wasm machinery
(JIT-compiled plugin code, the wasmtime runtime, levee-plugin's glue), next
to the share the native policy takes in the native flavour, is a
property of levee, not of how busy the machine was. So after the rounds,
each levee is profiled once with `perf record` (no call graphs, 999 Hz: a
small, even overhead) under the same load, and its samples are grouped by
what they were doing.

Optional: without a usable `perf` the report says so and carries on.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

SAMPLE_HZ = 999
REPORT_TIMEOUT_S = 120

# Ordered: the first matching group wins. Patterns match "dso symbol".
GROUPS: list[tuple[str, re.Pattern]] = [
    ("kernel (syscalls, TCP, wakeups)", re.compile(r"^\[kernel")),
    ("policy: JIT-compiled plugin code", re.compile(r"^\[JIT\]")),
    ("policy: wasmtime runtime", re.compile(r"wasmtime|cranelift")),
    ("policy: levee-plugin glue, levee-policy types and logic", re.compile(r"levee_plugin|levee_policy")),
    ("malloc/free", re.compile(
        r"malloc|_int_free|cfree|\bfree\b|realloc|unlink_chunk|malloc_consolidate"
        r"|__rdl_alloc|__rdl_dealloc|__rdl_realloc|__rust_alloc|__rust_dealloc")),
    ("memcpy/memmove/memcmp", re.compile(r"mem(move|cpy|set|cmp|chr)")),
    ("tokio runtime", re.compile(r"tokio|mio::")),
    ("hyper, hyper-util, http, httparse", re.compile(r"hyper|http::|httparse|h2::")),
    ("axum, tower", re.compile(r"axum|tower|matchit")),
    ("bytes", re.compile(r"bytes::")),
    ("levee request path", re.compile(r"levee::")),
]
OTHER = "other (std, libc, vdso, ...)"
# Everything that decides policy: the plugin (JIT code, wasmtime, glue) in
# the Wasm flavour, the native implementation in the native one. The
# difference between the two flavours' shares is what Wasm costs.
POLICY_PREFIX = "policy:"
# Work both levee flavours do identically per request (same syscalls, same
# HTTP handling, same request path): its share of each profile scales
# inversely with the total, which gives the flavours' cost ratio without
# trusting wall-clock CPU time on a busy machine.
SAME_WORK = (
    "kernel (syscalls, TCP, wakeups)",
    "tokio runtime",
    "hyper, hyper-util, http, httparse",
    "axum, tower",
    "bytes",
    "levee request path",
)
# Lines of `perf report --stdio`: "  12.34%  dso  [.] symbol".
LINE = re.compile(r"^\s*([\d.]+)%\s+(\S.*?)\s+\[[.k]\]\s+(.*)$")


@dataclass(frozen=True)
class Profile:
    # Group name -> percent of the process's samples.
    shares: dict[str, float]
    samples: int

    @property
    def policy_share(self) -> float:
        return sum(share for name, share in self.shares.items() if name.startswith(POLICY_PREFIX))


def same_work_share(found: Profile) -> float:
    return sum(found.shares.get(name, 0.0) for name in SAME_WORK)


def cost_ratio(baseline: Profile, other: Profile) -> float | None:
    """CPU per request of `other` relative to `baseline`, assuming both do
    the SAME_WORK groups identically. None when a profile is empty."""
    base, alt = same_work_share(baseline), same_work_share(other)
    return base / alt if alt > 0 and base > 0 else None


def available() -> bool:
    if shutil.which("perf") is None:
        return False
    probe = subprocess.run(
        ["perf", "record", "-q", "-F", str(SAMPLE_HZ), "-o", "/dev/null", "--", "true"],
        capture_output=True,
        timeout=30,
    )
    return probe.returncode == 0


def start(pid: int, seconds: int, out: Path) -> subprocess.Popen:
    """Samples `pid` for `seconds`; the caller runs the load meanwhile."""
    return subprocess.Popen(
        ["perf", "record", "-q", "-F", str(SAMPLE_HZ), "-p", str(pid), "-o", str(out),
         "--", "sleep", str(seconds)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def finish(recording: subprocess.Popen, out: Path, timeout_s: float) -> Profile | None:
    try:
        recording.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        recording.kill()
        recording.wait(timeout=10)
        return None
    if recording.returncode != 0 or not out.exists():
        return None
    return summarize(out)


def summarize(data: Path) -> Profile | None:
    report = subprocess.run(
        ["perf", "report", "-i", str(data), "--no-children", "--sort", "dso,symbol",
         "--stdio", "-q"],
        capture_output=True,
        text=True,
        timeout=REPORT_TIMEOUT_S,
    )
    if report.returncode != 0:
        return None
    shares: dict[str, float] = {name: 0.0 for name, _ in GROUPS}
    shares[OTHER] = 0.0
    for line in report.stdout.splitlines():
        match = LINE.match(line)
        if match:
            percent, dso, symbol = float(match.group(1)), match.group(2), match.group(3)
            shares[group_of(f"{dso} {symbol}")] += percent
    return Profile(shares, _sample_count(data))


def _sample_count(data: Path) -> int:
    """Total samples, from the per-DSO sample counts (`-n`)."""
    counts = subprocess.run(
        ["perf", "report", "-i", str(data), "--no-children", "--sort", "dso", "--stdio",
         "-q", "-n"],
        capture_output=True,
        text=True,
        timeout=REPORT_TIMEOUT_S,
    )
    total = 0
    for line in counts.stdout.splitlines():
        fields = line.split()
        if len(fields) >= 2 and fields[0].endswith("%") and fields[1].isdigit():
            total += int(fields[1])
    return total


def group_of(dso_and_symbol: str) -> str:
    for name, pattern in GROUPS:
        if pattern.search(dso_and_symbol):
            return name
    return OTHER
