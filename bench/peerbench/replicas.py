"""The upstream: three `levee kv-replica` processes on loopback.

Every target is measured against these same three processes holding the
same keys. Each key is preloaded on all three replicas (not only on the
ones a ring would pick) because the peers hash differently: HAProxy's and
nginx's consistent hashes place a key on another replica than levee's
SHA-1 ring does, and every target must find every key.
"""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from . import probe
from .procs import Processes, Spawned

REPLICAS_COUNT = 3
START_TIMEOUT_S = 15.0
# Small values, all the same size, so every answer costs the same to move.
VALUE_BYTES = 64


def key_name(index: int) -> str:
    """Must match wrk/keys.lua."""
    return f"key-{index:05d}"


def value_of(index: int) -> bytes:
    return f"value-of-{key_name(index)}".ljust(VALUE_BYTES, ".").encode()


@dataclass
class Replica:
    name: str
    host: str
    port: int
    process: Spawned

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"


def start_all(
    procs: Processes, levee_bin: Path, work_dir: Path, cpus: set[int] | None, threads: int
) -> list[Replica]:
    started = [
        _start_one(procs, levee_bin, work_dir, f"replica-{index}", cpus, threads)
        for index in range(REPLICAS_COUNT)
    ]
    return [_await_listening(replica_name, spawned) for replica_name, spawned in started]


def _start_one(procs, levee_bin, work_dir, name, cpus, threads):
    data_dir = work_dir / name
    data_dir.mkdir()
    spawned = procs.spawn(
        name,
        [str(levee_bin), "kv-replica", "--listen", "127.0.0.1:0", "--data-dir", str(data_dir)],
        cpus=cpus,
        env={"TOKIO_WORKER_THREADS": str(threads), "LEVEE_LOG": "warn"},
    )
    return name, spawned


def _await_listening(name: str, spawned: Spawned) -> Replica:
    match = spawned.wait_for_line(r"listening (?:http://)?(\S+):(\d+)", START_TIMEOUT_S)
    host, port = match.group(1), int(match.group(2))
    probe.wait_status(host, port, "/healthz", 200, START_TIMEOUT_S)
    return Replica(name, host, port, spawned)


def preload(replicas: list[Replica], keys_count: int):
    """PUTs every key on every replica, one keep-alive connection each."""
    with ThreadPoolExecutor(max_workers=len(replicas)) as pool:
        for done in pool.map(lambda replica: _preload_one(replica, keys_count), replicas):
            del done


def _preload_one(replica: Replica, keys_count: int):
    conn = probe.Connection(replica.host, replica.port)
    try:
        for index in range(keys_count):
            status, body = conn.request("PUT", f"/kv/{key_name(index)}", body=value_of(index))
            if status not in (200, 201, 204):
                raise probe.ProbeError(
                    f"preload {replica.name} {key_name(index)}: {status} {body[:200]!r}"
                )
    finally:
        conn.close()


def set_delay(replica: Replica, delay_ms: int):
    """The replica's fault knob: answer every request `delay_ms` late."""
    conn = probe.Connection(replica.host, replica.port)
    try:
        body = json.dumps({"delay_ms": delay_ms}).encode()
        status, answer = conn.request(
            "POST", "/_fault", body=body, headers={"content-type": "application/json"}
        )
    finally:
        conn.close()
    if status not in (200, 204):
        raise probe.ProbeError(f"fault knob on {replica.name}: {status} {answer[:200]!r}")
