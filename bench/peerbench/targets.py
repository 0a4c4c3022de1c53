"""How each peer is started in front of the same three replicas.

A target is "something wrk can hit that serves GET /kv/<key>": the bare
replica, HAProxy, nginx, or levee with one of its policy configurations.
Each start function returns a `Running` whose `process` is what the RSS
column measures, and does not return until the target has proven it serves
the preloaded values (see `verify`).
"""

from __future__ import annotations

import grp
import json
import os
import pwd
import re
import socket
from dataclasses import dataclass
from pathlib import Path

from . import levee, probe
from .procs import Processes, Spawned
from .replicas import Replica, key_name, value_of

BENCH_DIR = Path(__file__).resolve().parent.parent
START_TIMEOUT_S = 15.0
# Keys fetched through a target before it is measured: every VERIFY_STEP-th
# key below VERIFY_KEYS_SPAN, spread over the keyspace, not only its start.
VERIFY_KEYS_COUNT = 50
VERIFY_STEP = 7
VERIFY_KEYS_SPAN = VERIFY_KEYS_COUNT * VERIFY_STEP


@dataclass
class Running:
    name: str
    host: str
    port: int
    path_prefix: str
    # What the RSS column measures; None when the target is not ours to stop.
    process: Spawned
    # True when the harness must stop it after the measurement.
    owned: bool = True
    # levee only: its admin listener, for checking which policies ran.
    admin: tuple[str, int] | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"


def free_port() -> int:
    """A port the OS considers free now. HAProxy and nginx cannot bind :0
    and report it, so we ask the OS, then hand the number over at once."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def render(template_name: str, values: dict[str, str]) -> str:
    """Fills {{name}} placeholders; a leftover placeholder is a bug."""
    text = (BENCH_DIR / template_name).read_text()
    for name, value in values.items():
        text = text.replace("{{" + name + "}}", value)
    leftover = re.search(r"\{\{\w+\}\}", text)
    if leftover:
        raise ValueError(f"{template_name}: no value for {leftover.group(0)}")
    return text


def direct(replicas: list[Replica]) -> Running:
    """The upstream alone: wrk talks straight to the first replica."""
    first = replicas[0]
    return Running("direct", first.host, first.port, "/kv/", first.process, owned=False)


def haproxy(procs, replicas, work_dir: Path, cpus, threads: int) -> Running:
    port = free_port()
    servers = "\n".join(
        f"    server {replica.name} {replica.host}:{replica.port}" for replica in replicas
    )
    config = render(
        "haproxy.cfg.tmpl",
        {"threads": str(threads), "listen": f"127.0.0.1:{port}", "servers": servers},
    )
    config_path = work_dir / "haproxy.cfg"
    config_path.write_text(config)
    # -db: stay in the foreground, so the PID we hold is the one serving.
    spawned = procs.spawn("haproxy", ["haproxy", "-db", "-f", str(config_path)], cpus=cpus)
    return _await_serving(Running("haproxy", "127.0.0.1", port, "/kv/", spawned))


def nginx(procs, replicas, work_dir: Path, cpus, workers: int) -> Running:
    port = free_port()
    prefix = work_dir / "nginx"
    prefix.mkdir(exist_ok=True)
    servers = "\n".join(
        f"        server {replica.host}:{replica.port} max_fails=3 fail_timeout=10s;"
        for replica in replicas
    )
    config = render(
        "nginx.conf.tmpl",
        {
            "workers": str(workers),
            "user": pwd.getpwuid(os.getuid()).pw_name,
            "group": grp.getgrgid(os.getgid()).gr_name,
            "dir": str(prefix),
            "listen": f"127.0.0.1:{port}",
            "servers": servers,
        },
    )
    config_path = prefix / "nginx.conf"
    config_path.write_text(config)
    spawned = procs.spawn(
        "nginx", ["nginx", "-p", str(prefix), "-c", str(config_path)], cpus=cpus
    )
    return _await_serving(Running("nginx", "127.0.0.1", port, "/kv/", spawned))


def levee_target(
    procs: Processes,
    levee_bin: Path,
    replicas: list[Replica],
    work_dir: Path,
    cpus,
    threads: int,
    flavour: str,
    name: str,
) -> Running:
    """levee serving one service over the three replicas; `flavour` picks
    the policy set (see `levee.FLAVOURS`), `name` its process and dir."""
    instance_dir = work_dir / name
    instance_dir.mkdir()
    config_path = instance_dir / "levee.json"
    config_path.write_text(json.dumps(levee.config(flavour, replicas, instance_dir), indent=2))
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
    probe.wait_status(host, port, levee.READY_PATH, 200, START_TIMEOUT_S)
    running = Running(name, host, port, levee.path_prefix(), spawned, admin=admin)
    levee.check_bindings(flavour, admin)
    return _await_serving(running)


def _await_serving(running: Running) -> Running:
    """Bounded wait until the first key comes back, then the full check."""
    first_key_path = f"{running.path_prefix}{key_name(0)}"
    try:
        probe.wait_status(running.host, running.port, first_key_path, 200, START_TIMEOUT_S)
    except probe.ProbeError as error:
        raise probe.ProbeError(f"{running.name}: {error}\n{running.process.log_tail()}") from error
    verify(running)
    return running


def verify(running: Running):
    """GETs a spread of keys through the target, as wrk will, and checks
    each body is the preloaded value."""
    _verify_bodies(running, value_of)


def written_value_of(index: int) -> bytes:
    """What wrk/put.lua writes for key `index`."""
    return f"written-{key_name(index)}".ljust(64).encode()


def verify_written(running: Running):
    """After the write load: the keys read back as wrk/put.lua wrote them,
    so the write benchmark measured writes that really landed."""
    _verify_bodies(running, written_value_of)


def _verify_bodies(running: Running, expected_of):
    conn = probe.Connection(running.host, running.port)
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
