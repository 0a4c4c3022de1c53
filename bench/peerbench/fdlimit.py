"""The file-descriptor limit conns.py needs, raised by the run itself.

32k idle connections need 32k descriptors in the client (this process) and
as many in the proxy; a request in flight needs two in the proxy (client
and upstream connection). A shell's soft limit is often 1024 and its hard
limit may be lower than the need. Rather than asking the operator to
`ulimit -n` first, the harness raises its own RLIMIT_NOFILE, soft and hard,
before it starts any process: children inherit it across fork and exec, so
HAProxy, nginx and levee start with it too.

Raising the hard limit needs CAP_SYS_RESOURCE (root, outside containers
that drop it); the ceiling is the kernel's fs.nr_open, which is read, never
changed. When the hard limit cannot be raised, the run raises the soft
limit to the hard one, measures the largest counts that fit (`fitting`)
instead of failing, and says so in the report.
"""

from __future__ import annotations

import resource
from dataclasses import dataclass
from pathlib import Path

# Descriptors beyond the connections: listeners, logs, the runtime's own,
# upstream pools, the Python interpreter's.
FDS_SPARE = 1024
NR_OPEN_PATH = Path("/proc/sys/fs/nr_open")
# A connection count that does not fit is replaced by the largest multiple
# of this that does.
COUNT_STEP = 1000


class FdLimitError(RuntimeError):
    """Not even the smallest round fits under the descriptor limit."""


@dataclass(frozen=True)
class Limit:
    """RLIMIT_NOFILE (soft, hard) before and after the raise, what the run
    wanted, and why it got less (empty when it got it all)."""

    before: tuple[int, int]
    after: tuple[int, int]
    wanted: int
    shortfall: str = ""

    @property
    def soft(self) -> int:
        return self.after[0]


def needed(idle_conns_max: int, inflight_max: int) -> int:
    """Descriptors the busiest process of the run needs: a proxy holding
    every idle connection, or a client and an upstream connection per
    request in flight; plus FDS_SPARE."""
    return max(idle_conns_max, 2 * inflight_max) + FDS_SPARE


def kernel_ceiling() -> int:
    try:
        return int(NR_OPEN_PATH.read_text())
    except (OSError, ValueError):
        return 1 << 20


def _finite(value: int, ceiling: int) -> int:
    return ceiling if value == resource.RLIM_INFINITY else value


def raise_to(fds: int) -> Limit:
    """Raises the soft (and where needed the hard) RLIMIT_NOFILE to `fds`.
    When the hard limit cannot be raised (no CAP_SYS_RESOURCE, e.g. in a
    container) or `fds` is above fs.nr_open, it raises the soft limit to
    the hard one and says why in `shortfall`."""
    before = resource.getrlimit(resource.RLIMIT_NOFILE)
    ceiling = kernel_ceiling()
    soft, hard = (_finite(value, ceiling) for value in before)
    if soft >= fds:
        return Limit(before, before, fds)
    target = min(fds, ceiling)
    shortfall = "" if target == fds else f"{fds} is above the kernel's fs.nr_open ({ceiling})"
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, max(hard, target)))
    except (ValueError, PermissionError) as error:
        shortfall = (
            f"the hard limit {hard} cannot be raised to {target} ({error}: no "
            f"CAP_SYS_RESOURCE); raise it before the run (`ulimit -Hn {target}` as root)"
        )
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return Limit(before, resource.getrlimit(resource.RLIMIT_NOFILE), fds, shortfall)


def fitting(counts: list[int], fds_per_conn: int, soft: int) -> tuple[list[int], list[str]]:
    """The connection counts that fit under `soft` descriptors at
    `fds_per_conn` each (plus FDS_SPARE): a count that does not is replaced
    by the largest multiple of COUNT_STEP that does. Returns the counts,
    sorted and each once, and one note per replaced count."""
    largest = (soft - FDS_SPARE) // fds_per_conn
    largest -= largest % COUNT_STEP
    kept, notes = set(), []
    for count in counts:
        if count <= largest:
            kept.add(count)
        elif largest > 0:
            kept.add(largest)
            notes.append(f"{count:,} does not fit under the descriptor limit {soft:,}; "
                         f"measured {largest:,} instead")
        else:
            notes.append(f"{count:,} does not fit under the descriptor limit {soft:,}; skipped")
    return sorted(kept), notes
