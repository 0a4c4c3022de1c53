"""How each peer is started in front of the same three upstreams.

A target is "something wrk can hit that serves GET /kv/<key>": one upstream
alone (`direct`), HAProxy, nginx, or levee with one of its policy
configurations. Each start function returns a `Running` whose `process` is
the tree the CPU and RSS columns measure, and does not return until the
target has proven it serves the expected bodies (see `verify`).
"""

from __future__ import annotations

import json
import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from . import levee, probe
from .tls import TlsFiles, client_context
from .procs import Processes, Spawned
from .replicas import key_name
from .templates import free_port, own_user_and_group, render
from .upstreams import Upstreams

START_TIMEOUT_S = 15.0
# Keys fetched through a target before it is measured: every VERIFY_STEP-th
# key below VERIFY_KEYS_SPAN, spread over the keyspace, not only its start.
VERIFY_KEYS_COUNT = 50
VERIFY_STEP = 7
VERIFY_KEYS_SPAN = VERIFY_KEYS_COUNT * VERIFY_STEP


@dataclass(frozen=True)
class ProxyLimits:
    """Connection caps and timeouts written into HAProxy's and nginx's
    configs. The defaults are the peer benchmark's; the memory-per-connection
    bench (conns.py) raises them for tens of thousands of connections held
    open longer than a measurement."""

    # HAProxy `maxconn` (global and frontend), nginx `worker_connections`.
    connections_max: int = 4096
    # Idle keep-alive connections: HAProxy `timeout http-keep-alive` and
    # `timeout client`, nginx `keepalive_timeout`. None: the peer bench's
    # settings (HAProxy 30 s, nginx its default 75 s).
    keepalive_timeout_s: int | None = None
    # Waiting for an upstream's answer: HAProxy `timeout server`, nginx
    # `proxy_read_timeout`.
    response_timeout_s: int = 30
    # HAProxy `strict-limits` (its default): refuse to start when its
    # descriptor limit cannot be raised as far as `maxconn` implies.
    haproxy_strict_limits: bool = True


PEER_LIMITS = ProxyLimits()
HAPROXY_KEEPALIVE_TIMEOUT_S = 30
NGINX_KEEPALIVE_TIMEOUT_S = 75


@dataclass
class Running:
    name: str
    host: str
    port: int
    path_prefix: str
    # The process tree the CPU and RSS columns measure.
    process: Spawned
    # True when the harness must stop it after the measurement (`direct`
    # is an upstream: it stops with the others).
    owned: bool = True
    # levee only: its admin listener, for checking which policies ran.
    admin: tuple[str, int] | None = None
    # TLS targets: the client context that trusts the run's certificate.
    ssl_context: ssl.SSLContext | None = None

    @property
    def url(self) -> str:
        scheme = "https" if self.ssl_context else "http"
        return f"{scheme}://{self.host}:{self.port}"


# How HAProxy and nginx pick an upstream by key. Plain rows: the `x-key`
# header, as wrk sends it. TLS rows: the path, because h2load cannot vary a
# header per request (see h2load.py); wrk's TLS rows send the same header
# anyway, so their requests are the plain rows' byte for byte.
HAPROXY_BALANCE = {False: "hdr(x-key)", True: "uri path-only"}
NGINX_HASH_KEY = {False: "$http_x_key", True: "$request_uri"}


def direct(ups: Upstreams) -> Running:
    """The upstream alone: wrk talks straight to the first one."""
    first = ups.members[0]
    running = Running("direct", first.host, first.port, "/kv/", first.process, owned=False)
    return _await_serving(running, ups.expected_of)


def haproxy_config(
    listen: str,
    ups: Upstreams,
    threads: int,
    limits: ProxyLimits = PEER_LIMITS,
    tls: TlsFiles | None = None,
) -> str:
    servers = "\n".join(
        f"    server {member.name} {member.host}:{member.port}" for member in ups.members
    )
    keepalive_s = limits.keepalive_timeout_s or HAPROXY_KEEPALIVE_TIMEOUT_S
    return render(
        "haproxy.cfg.tmpl",
        {
            "threads": str(threads),
            "listen": listen,
            "servers": servers,
            "maxconn": str(limits.connections_max),
            "client_timeout": f"{keepalive_s}s",
            "keepalive_timeout": f"{keepalive_s}s",
            "server_timeout": f"{limits.response_timeout_s}s",
            "strict_limits": "strict-limits" if limits.haproxy_strict_limits else "no strict-limits",
            "bind_tls": f" ssl crt {tls.combined} alpn h2,http/1.1" if tls else "",
            "balance": HAPROXY_BALANCE[tls is not None],
        },
    )


def haproxy(
    procs,
    ups: Upstreams,
    work_dir: Path,
    cpus,
    threads: int,
    limits: ProxyLimits = PEER_LIMITS,
    tls: TlsFiles | None = None,
    name: str = "haproxy",
) -> Running:
    port = free_port()
    config_path = work_dir / f"{name}.cfg"
    config_path.write_text(haproxy_config(f"127.0.0.1:{port}", ups, threads, limits, tls))
    # -db: stay in the foreground, so the PID we hold is the one serving.
    spawned = procs.spawn(name, ["haproxy", "-db", "-f", str(config_path)], cpus=cpus)
    running = Running(name, "127.0.0.1", port, "/kv/", spawned, ssl_context=_context(tls))
    return _await_serving(running, ups.expected_of)


def _context(tls: TlsFiles | None) -> ssl.SSLContext | None:
    return client_context(tls) if tls else None


def nginx_tls_settings(tls: TlsFiles | None) -> str:
    """The server block's TLS lines. TLS 1.2 and 1.3, as HAProxy 2.6 and
    rustls offer by default (nginx 1.22's default has no 1.3 but 1.0 and
    1.1); everything else is nginx's default."""
    if not tls:
        return ""
    return (
        f"        ssl_certificate {tls.cert};\n"
        f"        ssl_certificate_key {tls.key};\n"
        f"        ssl_protocols TLSv1.2 TLSv1.3;\n"
    )


def nginx_config(
    listen: str,
    ups: Upstreams,
    prefix: Path,
    workers: int,
    limits: ProxyLimits = PEER_LIMITS,
    tls: TlsFiles | None = None,
) -> str:
    servers = "\n".join(
        f"        server {member.host}:{member.port} max_fails=3 fail_timeout=10s;"
        for member in ups.members
    )
    return render(
        "nginx.conf.tmpl",
        {
            **own_user_and_group(),
            "workers": str(workers),
            "dir": str(prefix),
            "listen": listen,
            "servers": servers,
            "worker_connections": str(limits.connections_max),
            "keepalive_timeout": f"{limits.keepalive_timeout_s or NGINX_KEEPALIVE_TIMEOUT_S}s",
            "read_timeout": f"{limits.response_timeout_s}s",
            "listen_tls": " ssl http2" if tls else "",
            "tls_settings": nginx_tls_settings(tls),
            "hash_key": NGINX_HASH_KEY[tls is not None],
        },
    )


def nginx(
    procs,
    ups: Upstreams,
    work_dir: Path,
    cpus,
    workers: int,
    limits: ProxyLimits = PEER_LIMITS,
    tls: TlsFiles | None = None,
    name: str = "nginx",
) -> Running:
    port = free_port()
    prefix = work_dir / name
    prefix.mkdir(exist_ok=True)
    config_path = prefix / "nginx.conf"
    config_path.write_text(nginx_config(f"127.0.0.1:{port}", ups, prefix, workers, limits, tls))
    spawned = procs.spawn(
        name, ["nginx", "-p", str(prefix), "-c", str(config_path)], cpus=cpus
    )
    running = Running(name, "127.0.0.1", port, "/kv/", spawned, ssl_context=_context(tls))
    return _await_serving(running, ups.expected_of)


def levee_target(
    procs: Processes,
    levee_bin: Path,
    plugin_dir: Path,
    ups: Upstreams,
    work_dir: Path,
    cpus,
    threads: int,
    flavour: str,
    name: str,
    overrides: levee.Overrides | None = None,
    tls: TlsFiles | None = None,
) -> Running:
    """levee serving one service over the three upstreams; `flavour` picks
    the policy set (see `levee.FLAVOURS`), `name` its process and dir,
    `overrides` changes server limits and service fields (conns.py), `tls`
    makes the data listener terminate TLS with HTTP/2 by ALPN."""
    instance_dir = work_dir / name
    instance_dir.mkdir()
    config_path = instance_dir / "levee.json"
    config = levee.config(
        flavour, ups.members, instance_dir, plugin_dir, overrides=overrides, tls=tls
    )
    config_path.write_text(json.dumps(config, indent=2))
    spawned = procs.spawn(
        name,
        [str(levee_bin), "serve", "--config", str(config_path)],
        cpus=cpus,
        # No per-request logging: none of the peers logs requests in this run.
        env={"TOKIO_WORKER_THREADS": str(threads), "LEVEE_LOG": "warn"},
    )
    match = spawned.wait_for_line(levee.LISTENING_PATTERN, START_TIMEOUT_S)
    host, port = match.group(1), int(match.group(2))
    admin = (match.group(3), int(match.group(4)))
    context = _context(tls)
    probe.wait_status(host, port, levee.READY_PATH, 200, START_TIMEOUT_S, context)
    running = Running(
        name, host, port, levee.path_prefix(), spawned, admin=admin, ssl_context=context
    )
    levee.check_bindings(flavour, admin)
    return _await_serving(running, ups.expected_of)


def _await_serving(running: Running, expected_of: Callable[[int], bytes]) -> Running:
    """Bounded wait until the first key comes back, then the full check."""
    first_key_path = f"{running.path_prefix}{key_name(0)}"
    try:
        probe.wait_status(
            running.host, running.port, first_key_path, 200, START_TIMEOUT_S, running.ssl_context
        )
    except probe.ProbeError as error:
        raise probe.ProbeError(f"{running.name}: {error}\n{running.process.log_tail()}") from error
    verify(running, expected_of)
    return running


def verify(running: Running, expected_of: Callable[[int], bytes]):
    """GETs a spread of keys through the target, as wrk will (path and
    `x-key` header), and checks each answer is 200 with the body the
    upstreams serve for that key: the preloaded value (kv-replica) or the
    fixed body (nginx). A target answering errors fast cannot win."""
    _verify_bodies(running, expected_of)


def written_value_of(index: int) -> bytes:
    """What wrk/put.lua writes for key `index`."""
    return f"written-{key_name(index)}".ljust(64).encode()


def verify_written(running: Running):
    """After the write load: the keys read back as wrk/put.lua wrote them,
    so the write benchmark measured writes that really landed."""
    _verify_bodies(running, written_value_of)


def _verify_bodies(running: Running, expected_of):
    conn = probe.Connection(running.host, running.port, running.ssl_context)
    try:
        for index in range(0, VERIFY_KEYS_SPAN, VERIFY_STEP):
            key = key_name(index)
            status, body = conn.request(
                "GET", f"{running.path_prefix}{key}", headers={"x-key": key}
            )
            if status != 200 or body != expected_of(index):
                raise probe.ProbeError(
                    f"{running.name}: GET {key} gave {status} {body[:100]!r}, "
                    f"expected 200 {expected_of(index)!r}"
                )
    finally:
        conn.close()
