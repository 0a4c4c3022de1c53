"""One measurement of conns.py: a proxy's resident memory with N idle
keep-alive connections, or with N requests in flight.

RSS is VmRSS summed over the proxy's process tree (nginx: master and
workers), read only once it has settled: memory is allocated lazily and
freed in batches, so a reading taken the moment the last connection opened
can miss part of it. Every round runs on a freshly started proxy and reads:

1. **start**: the fresh proxy (it has served the 50 checked GETs);
2. **warm**: with one batch of warm-up connections open (`warm_up`), the
   baseline of the per-connection figure: (with N − warm) / N;
3. **with N**: N idle connections, or N requests in flight, on top.

- **Idle**: N connections each send one GET, read its 200 and stay open.
  How many the proxy closed by the time RSS is read is counted (a proxy
  that closed some would look cheaper). Then every connection is closed;
  RSS is read once the proxy's descriptor count shows it let go of them,
  and again `close_wait_s` later, on a timer thread (`LaterReadings`), so
  the wait overlaps the next rounds instead of adding to the run's length.
  "After close" compares with the fresh start.
- **In flight**: the proxy fronts the hold upstream (hold.py). N
  connections each send one GET, the upstream holds them, and RSS is read
  once the upstream reports all N held; then they are released and every
  client must get its 200.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

from . import clients, hold
from .procs import Spawned
from .replicas import Replica
from .targets import Running

KIB = 1024
MIB = 1024 * 1024
# RSS has settled when two readings SETTLE_POLL_S apart differ by at most
# SETTLE_BYTES or SETTLE_FRACTION of it, whichever is larger; at most
# SETTLE_S_MAX of polling after the initial wait.
SETTLE_POLL_S = 0.5
SETTLE_BYTES = 128 * KIB
SETTLE_FRACTION = 0.002
SETTLE_S_MAX = 10.0
# After closing: the proxy must have let go of the client connections
# (its descriptors down by this share of their number) within
# FDS_BACK_TIMEOUT_S.
FDS_BACK_SHARE = 0.95
FDS_BACK_TIMEOUT_S = 15.0
# Waiting for the hold upstream to see all N: this plus one second per
# HELD_RATE_MIN_PER_S requests.
HELD_WAIT_SLACK_S = 30.0
HELD_RATE_MIN_PER_S = 200
POLL_INTERVAL_S = 0.05


@dataclass
class IdleResult:
    target: str
    conns: int
    # Fresh proxy (after the 50 checked GETs); then with the warm-up
    # connections open (`warm_up`), the baseline of the per-conn figure.
    rss_start: int
    rss_warm: int = 0
    rss_with: int = 0
    rss_closed: int = 0
    # Read `later_s` after the close by `LaterReadings`; None until then.
    rss_later: int | None = None
    later_s: float | None = None
    failures: str = ""
    closed_early: int = 0
    error: str = ""

    @property
    def kib_per_conn(self) -> float | None:
        if self.error or not self.rss_with:
            return None
        return (self.rss_with - self.rss_warm) / self.conns / KIB

    @property
    def later_share(self) -> float | None:
        """RSS `later_s` after close as a share of the fresh proxy's."""
        return self.rss_later / self.rss_start if self.rss_later and self.rss_start else None

    def problems(self) -> list[str]:
        found = [self.error] if self.error else []
        if self.failures:
            found.append(f"opening: {self.failures}")
        if self.closed_early:
            found.append(f"{self.closed_early:,} closed by the proxy before the reading")
        return found


@dataclass
class InflightResult:
    target: str
    requests: int
    rss_start: int
    rss_warm: int = 0
    rss_with: int = 0
    held: int = 0
    failures: str = ""
    error: str = ""

    @property
    def kib_per_request(self) -> float | None:
        if self.error or not self.rss_with:
            return None
        return (self.rss_with - self.rss_warm) / self.requests / KIB

    def problems(self) -> list[str]:
        found = [self.error] if self.error else []
        if self.rss_with and self.held < self.requests:
            found.append(f"only {self.held:,} requests reached the upstream")
        if self.failures:
            found.append(f"answers: {self.failures}")
        return found


def settled_rss(process: Spawned, settle_s: float) -> int:
    """RSS of the tree after `settle_s`, once two readings agree (bounded)."""
    time.sleep(settle_s)
    previous = process.rss_bytes()
    deadline = time.monotonic() + SETTLE_S_MAX
    while time.monotonic() < deadline:
        time.sleep(SETTLE_POLL_S)
        now = process.rss_bytes()
        if abs(now - previous) <= max(SETTLE_BYTES, SETTLE_FRACTION * previous):
            return now
        previous = now
    return previous


def wait_fds_at_most(process: Spawned, fds: int, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.open_fds() <= fds:
            return True
        time.sleep(POLL_INTERVAL_S)
    return False


def _client_target(running: Running) -> clients.Target:
    return clients.Target(running.host, running.port, running.path_prefix)


def warm_up(running: Running, concurrency: int) -> clients.Outcome:
    """One batch of `concurrency` connections, each after one GET, left
    open through the round: the proxy's upstream pool grows to what a
    burst at that concurrency needs and its allocator has served
    connections before the "warm" reading, so (with N − warm) / N is about
    the N connections, not first use. Kept open rather than closed: memory
    freed by closed warm-up connections would be reused by the first N and
    hide their cost."""
    return clients.open_with_get(_client_target(running), concurrency, concurrency)


def idle(running: Running, conns: int, concurrency: int, settle_s: float) -> tuple[IdleResult, float]:
    """The idle round on a started proxy; returns the result and when the
    connections were closed (time.monotonic), for `LaterReadings`."""
    process = running.process
    result = IdleResult(running.name, conns, settled_rss(process, settle_s))
    warm = warm_up(running, concurrency)
    opened = clients.Outcome()
    try:
        result.rss_warm = settled_rss(process, settle_s)
        opened = clients.open_with_get(_client_target(running), conns, concurrency)
        result.failures = _failures(warm, opened.results)
        result.rss_with = settled_rss(process, settle_s)
        fds_with = process.open_fds()
        result.closed_early = clients.closed_by_peer(opened.socks)
    finally:
        clients.close_all(opened.socks)
        clients.close_all(warm.socks)
    closed_at = time.monotonic()
    # The client connections are gone from the proxy once its descriptors
    # are down by (nearly) their number; its upstream pool may have
    # changed meanwhile.
    fds_back = fds_with - int(FDS_BACK_SHARE * (opened.ok + warm.ok))
    if not wait_fds_at_most(process, fds_back, FDS_BACK_TIMEOUT_S):
        result.error = (f"the proxy still had {process.open_fds():,} descriptors open "
                        f"{FDS_BACK_TIMEOUT_S:g} s after close (had {fds_with:,})")
    result.rss_closed = process.rss_bytes()
    return result, closed_at


def _failures(warm: clients.Outcome, results) -> str:
    """What did not answer 200, warm-up and round."""
    parts = [f"warm-up {warm.failures()}" if warm.failures() else "",
             clients.Outcome(results=results).failures()]
    return "; ".join(part for part in parts if part)


def inflight(
    running: Running, member: Replica, requests: int, concurrency: int, settle_s: float
) -> InflightResult:
    """The in-flight round on a proxy started in front of the hold upstream."""
    process = running.process
    result = InflightResult(running.name, requests, settled_rss(process, settle_s))
    warm = warm_up(running, concurrency)
    sent = clients.Outcome()
    try:
        result.rss_warm = settled_rss(process, settle_s)
        hold.hold_on(member)
        try:
            sent = clients.open_with_request(_client_target(running), requests, concurrency)
            timeout_s = HELD_WAIT_SLACK_S + requests / HELD_RATE_MIN_PER_S
            result.held = hold.wait_held(member, sent.results["sent"], timeout_s)
            result.rss_with = settled_rss(process, settle_s)
            result.held = min(result.held, hold.held(member))
        finally:
            hold.release(member)
        answers = clients.read_statuses(sent.socks, concurrency)
    finally:
        clients.close_all(sent.socks)
        clients.close_all(warm.socks)
    del sent.results["sent"]
    answers.update(sent.results)
    result.failures = _failures(warm, answers)
    return result


class LaterReadings:
    """Reads a proxy's RSS again a fixed time after its connections closed,
    on timer threads, while the main thread measures other rounds. Readings
    of /proc are all a timer does; stopping the proxy stays with the
    harness (`due` says which readings are done)."""

    def __init__(self):
        self._timers: list[tuple[threading.Timer, IdleResult, object]] = []

    def schedule(self, result: IdleResult, process: Spawned, closed_at: float, delay_s: float,
                 owner: object):
        def read():
            result.rss_later = process.rss_bytes()
            result.later_s = time.monotonic() - closed_at

        timer = threading.Timer(max(0.0, closed_at + delay_s - time.monotonic()), read)
        timer.daemon = True
        timer.start()
        self._timers.append((timer, result, owner))

    def due(self) -> list[object]:
        """Owners whose reading is done, removed from the list."""
        done = [entry for entry in self._timers if not entry[0].is_alive()]
        self._timers = [entry for entry in self._timers if entry[0].is_alive()]
        return [owner for _, _, owner in done]

    def pending(self) -> int:
        return len(self._timers)

    def wait_all(self, timeout_s: float) -> list[object]:
        """Waits (bounded) for every reading; returns every owner."""
        deadline = time.monotonic() + timeout_s
        for timer, _, _ in self._timers:
            timer.join(max(0.0, deadline - time.monotonic()))
        owners = [owner for _, _, owner in self._timers]
        self.cancel_all()
        return owners

    def cancel_all(self):
        for timer, _, _ in self._timers:
            timer.cancel()
        self._timers = []
