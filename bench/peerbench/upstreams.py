"""The three upstreams every target fronts, in one of two kinds.

- `nginx` (the default): three separate nginx processes, one worker each,
  that answer every request with `200` and the same small fixed body
  (`return 200 "..."`, see nginx-upstream.conf.tmpl). An upstream then costs
  a few microseconds of CPU per request, so the proxy in front is what
  limits the run: the benchmark measures the proxy, not the upstream.
- `kv-replica`: three `levee kv-replica` processes holding the same
  preloaded keys (the real upstream of levee's demo and tests, see
  replicas.py). They cost more per request than most proxies, so on a small
  machine they saturate first and the proxies' throughput figures converge;
  kept as a second mode because it is the only one that can take writes.

Either way the upstreams are `Replica`s (name, address, process), and
`expected_of(index)` says which body a GET of key `index` must return.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from . import probe, replicas
from .procs import Processes, Spawned
from .replicas import Replica
from .templates import free_port, own_user_and_group, render

KINDS = ("nginx", "kv-replica")
COUNT = 3
START_TIMEOUT_S = 15.0
# The nginx upstreams' answer to every request: as long as a kv-replica
# value (replicas.VALUE_BYTES), so both modes move the same bytes.
NGINX_BODY = "fixed-upstream-body".ljust(replicas.VALUE_BYTES, ".")
# Characters that `return 200 "..."` would interpret (variables, quoting).
_NGINX_BODY_FORBIDDEN = set('"$\\{};\n\r')


@dataclass
class Upstreams:
    kind: str
    members: list[Replica]
    # What a GET of key `index` must answer, byte for byte.
    expected_of: Callable[[int], bytes]
    # One line for the report.
    description: str

    @property
    def processes(self) -> list[Spawned]:
        return [member.process for member in self.members]


def fixed_body(_index: int) -> bytes:
    return NGINX_BODY.encode()


def nginx_config(listen: str, prefix: Path, body: str = NGINX_BODY) -> str:
    """The config of one nginx upstream rooted at `prefix`."""
    bad = _NGINX_BODY_FORBIDDEN & set(body)
    if bad:
        raise ValueError(f"upstream body must not contain {sorted(bad)}")
    return render(
        "nginx-upstream.conf.tmpl",
        {**own_user_and_group(), "dir": str(prefix), "listen": listen, "body": body},
    )


def start(
    kind: str,
    procs: Processes,
    levee_bin: Path,
    work_dir: Path,
    cpus: set[int] | None,
    replica_threads: int,
    keys_count: int,
) -> Upstreams:
    if kind == "nginx":
        members = start_nginx(procs, work_dir, cpus)
        return Upstreams(
            kind,
            members,
            fixed_body,
            f"{COUNT} nginx processes (1 worker each) answering every request with "
            f'`return 200 "<{len(NGINX_BODY)}-byte body>"`',
        )
    if kind == "kv-replica":
        members = replicas.start_all(procs, levee_bin, work_dir, cpus, replica_threads)
        replicas.preload(members, keys_count)
        return Upstreams(
            kind,
            members,
            replicas.value_of,
            f"{COUNT} `levee kv-replica` processes (`TOKIO_WORKER_THREADS={replica_threads}`), "
            f"{keys_count} keys with {replicas.VALUE_BYTES}-byte values preloaded on each",
        )
    raise ValueError(f"unknown upstream kind {kind!r}, expected one of {KINDS}")


def start_nginx(procs: Processes, work_dir: Path, cpus: set[int] | None) -> list[Replica]:
    started = []
    for index in range(COUNT):
        name = f"upstream-{index}"
        prefix = work_dir / name
        prefix.mkdir()
        port = free_port()
        config_path = prefix / "nginx.conf"
        config_path.write_text(nginx_config(f"127.0.0.1:{port}", prefix))
        spawned = procs.spawn(
            name, ["nginx", "-p", str(prefix), "-c", str(config_path)], cpus=cpus
        )
        started.append(Replica(name, "127.0.0.1", port, spawned))
    for member in started:
        try:
            probe.wait_status(member.host, member.port, "/", 200, START_TIMEOUT_S)
        except probe.ProbeError as error:
            raise probe.ProbeError(f"{member.name}: {error}\n{member.process.log_tail()}") from error
    return started
