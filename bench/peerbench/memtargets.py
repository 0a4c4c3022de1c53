"""The peer bench's proxies, configured for tens of thousands of
connections held open longer than a measurement (conns.py).

Same proxies, same settings as `peers.py` (targets.py starts them), except
what many long-lived connections need:
- connection caps above the largest count: HAProxy `maxconn`, nginx
  `worker_connections` (twice the count: a proxied request holds a client
  and an upstream connection), levee `server.connections_max` and the
  service's `concurrency_max`;
- idle keep-alive timeouts far above a round's length, so no proxy closes
  an idle connection while its memory is read: HAProxy `timeout
  http-keep-alive`/`client`, nginx `keepalive_timeout`, levee
  `server.keepalive_timeout_ms`;
- upstream answer timeouts above the hold upstream's longest hold, so a
  held request is never timed out (or retried) by the proxy: HAProxy
  `timeout server`, nginx `proxy_read_timeout`, levee
  `timeouts.per_try_ms`/`total_ms`.

levee builds before `server.keepalive_timeout_ms` existed refuse the field
(unknown fields are errors). In those, hyper's header-read timer is what
closes an idle keep-alive connection (it runs while hyper waits for the
next request head), so for them the run raises
`server.header_read_timeout_ms` instead and says so in the report.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from . import levee, targets
from .procs import Processes, StartError
from .upstreams import Upstreams

TARGETS = ("haproxy", "nginx", "levee-native", "levee-wasm")
KNOWN_TARGETS = TARGETS + ("levee-wasm-cached",)
PROBE_TIMEOUT_S = 15.0
# Connections per proxy beyond the largest count (upstream pools, checks).
CONNECTIONS_SPARE = 1024
# Descriptors HAProxy adds to 2 × maxconn (listeners, pollers, logs).
HAPROXY_FDS_SPARE = 100


@dataclass(frozen=True)
class Setup:
    """The limits every proxy of one run gets."""

    # Largest idle round and largest in-flight round.
    idle_max: int
    inflight_max: int
    # Idle keep-alive timeout of every proxy, above any round's length.
    keepalive_timeout_s: int
    # Upstream answer timeout of every proxy, above the longest hold.
    response_timeout_s: int
    # The descriptor limit the proxies inherit (RLIMIT_NOFILE, soft).
    fd_limit: int
    # Whether the levee binary knows `server.keepalive_timeout_ms`.
    levee_keepalive: bool
    threads: int

    @property
    def client_conns_max(self) -> int:
        """HAProxy `maxconn`, levee `connections_max` and `concurrency_max`:
        client connections (and requests) at once, plus spare."""
        return max(self.idle_max, self.inflight_max) + CONNECTIONS_SPARE

    @property
    def nginx_connections_max(self) -> int:
        """nginx `worker_connections` counts upstream connections too, and
        one worker may get nearly all of them."""
        return max(self.idle_max, 2 * self.inflight_max) + CONNECTIONS_SPARE

    @property
    def haproxy_strict_limits(self) -> bool:
        """HAProxy wants 2 descriptors per `maxconn` (plus a few); with
        fewer it must run with `no strict-limits` (haproxy.cfg.tmpl)."""
        return 2 * self.client_conns_max + HAPROXY_FDS_SPARE <= self.fd_limit

    def proxy_limits(self, name: str) -> targets.ProxyLimits:
        return targets.ProxyLimits(
            connections_max=self.nginx_connections_max if name == "nginx" else self.client_conns_max,
            keepalive_timeout_s=self.keepalive_timeout_s,
            response_timeout_s=self.response_timeout_s,
            haproxy_strict_limits=self.haproxy_strict_limits,
        )

    def levee_overrides(self, upstream_count: int) -> levee.Overrides:
        keepalive_ms = self.keepalive_timeout_s * 1000
        idle_field = "keepalive_timeout_ms" if self.levee_keepalive else "header_read_timeout_ms"
        response_ms = self.response_timeout_s * 1000
        return levee.Overrides(
            server={"connections_max": self.client_conns_max, idle_field: keepalive_ms},
            service={
                "concurrency_max": self.client_conns_max,
                "timeouts": {"per_try_ms": response_ms, "total_ms": response_ms},
                "write_quorum": min(2, upstream_count),
            },
        )


def start(
    name: str,
    procs: Processes,
    ups: Upstreams,
    work_dir: Path,
    setup: Setup,
    levee_bin: Path,
    plugins_dir: Path,
) -> targets.Running:
    """Starts one target in front of `ups` and checks it serves (50 keys,
    200 and the expected body), as peers.py does."""
    if name == "haproxy":
        return targets.haproxy(procs, ups, work_dir, None, setup.threads, setup.proxy_limits(name))
    if name == "nginx":
        return targets.nginx(procs, ups, work_dir, None, setup.threads, setup.proxy_limits(name))
    if name in KNOWN_TARGETS:
        return targets.levee_target(
            procs, levee_bin, plugins_dir, ups, work_dir, None, setup.threads,
            name.removeprefix("levee-"), name, setup.levee_overrides(len(ups.members)),
        )
    raise ValueError(f"unknown target {name!r}, expected one of {KNOWN_TARGETS}")


def levee_knows_keepalive(procs: Processes, levee_bin: Path, work_dir: Path) -> bool:
    """Starts the binary once with `server.keepalive_timeout_ms` and no
    service: True when it serves, False when it refuses that field."""
    probe_dir = work_dir / "levee-keepalive-probe"
    probe_dir.mkdir()
    config = {
        "listeners": {"data": "127.0.0.1:0", "admin": "127.0.0.1:0"},
        "data_dir": str(probe_dir / "data"),
        "server": {"keepalive_timeout_ms": 60_000},
        "services": [],
    }
    config_path = probe_dir / "levee.json"
    config_path.write_text(json.dumps(config))
    spawned = procs.spawn(
        "levee-keepalive-probe", [str(levee_bin), "serve", "--config", str(config_path)],
        env={"LEVEE_LOG": "warn"},
    )
    try:
        spawned.wait_for_line(levee.LISTENING_PATTERN, PROBE_TIMEOUT_S)
        return True
    except StartError:
        if "keepalive_timeout_ms" in spawned.log_tail():
            return False
        raise
    finally:
        procs.stop(spawned)
