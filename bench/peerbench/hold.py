"""Starting and steering the hold upstream (see hold_server.py).

The in-flight round of conns.py points each proxy at this one upstream:
it answers at once while the proxy is started and checked, holds every
request while the proxy's memory with N requests in flight is read, and
answers them all on release. Its count of held requests is how the harness
knows all N requests really reached the upstream through the proxy.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from . import probe
from .procs import Processes
from .replicas import Replica
from .upstreams import NGINX_BODY, Upstreams, fixed_body

START_TIMEOUT_S = 15.0
HOLD_SERVER = Path(__file__).resolve().parent / "hold_server.py"
# Poll interval while waiting for the held count.
POLL_INTERVAL_S = 0.2


def start(procs: Processes, hold_s_max: float, cpus: set[int] | None = None) -> Upstreams:
    """The hold upstream as the only member of an `Upstreams`, answering
    the nginx upstreams' fixed body (so `targets.verify` passes)."""
    spawned = procs.spawn(
        "hold-upstream",
        [sys.executable, str(HOLD_SERVER), "--body", NGINX_BODY, "--hold-s-max", str(hold_s_max)],
        cpus=cpus,
    )
    match = spawned.wait_for_line(r"listening (\S+):(\d+)", START_TIMEOUT_S)
    member = Replica("hold", match.group(1), int(match.group(2)), spawned)
    probe.wait_status(member.host, member.port, "/", 200, START_TIMEOUT_S)
    return Upstreams(
        "hold",
        [member],
        fixed_body,
        "one Python asyncio upstream that holds every request until released "
        f'(then `200 "<{len(NGINX_BODY)}-byte body>"`)',
    )


def _control(member: Replica, action: str) -> str:
    conn = probe.Connection(member.host, member.port)
    try:
        status, body = conn.request("GET", f"/_hold/{action}")
    finally:
        conn.close()
    if status != 200:
        raise probe.ProbeError(f"hold upstream /_hold/{action}: {status} {body[:200]!r}")
    return body.decode()


def hold_on(member: Replica):
    _control(member, "on")


def held(member: Replica) -> int:
    return int(_control(member, "count"))


def release(member: Replica) -> int:
    """Answers every held request; returns how many there were."""
    return int(_control(member, "release"))


def wait_held(member: Replica, count: int, timeout_s: float) -> int:
    """Waits until `count` requests are held, bounded; returns how many
    are held when it gives up (or `count`)."""
    deadline = time.monotonic() + timeout_s
    now_held = held(member)
    while now_held < count and time.monotonic() < deadline:
        time.sleep(POLL_INTERVAL_S)
        now_held = held(member)
    return now_held
