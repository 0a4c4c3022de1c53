"""Running wrk and reading the one JSON line our Lua `done()` prints.

wrk is closed-loop: each of the C connections sends its next request when
the previous answer arrives, so throughput and latency are two views of the
same saturation point. Every target gets the identical command: same
connections, threads, duration, script and key order.
"""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass
from pathlib import Path

from .procs import child_setup

SCRIPTS_DIR = Path(__file__).resolve().parent.parent / "wrk"
RESULT_PREFIX = "WRK_RESULT "
# wrk's own --timeout per request; answers slower than this count as errors.
REQUEST_TIMEOUT_S = 5
# Slack on top of the duration before we declare wrk hung.
RUN_SLACK_S = 30


class WrkError(RuntimeError):
    """wrk failed or printed no result."""


@dataclass(frozen=True)
class Load:
    """What wrk sends: same for every target."""

    script: str  # "get.lua" or "put.lua"
    connections: int
    threads: int
    duration_s: int
    keys_count: int
    path_prefix: str = "/kv/"


@dataclass(frozen=True)
class WrkResult:
    requests: int
    duration_us: int
    p50_us: int
    p99_us: int
    max_us: int
    errors: int  # connect + read + write + timeout + non-2xx answers
    # The same errors by kind, only the non-zero ones: {"status": 12, ...}.
    errors_by_kind: dict[str, int]

    @property
    def rps(self) -> float:
        return self.requests * 1_000_000 / self.duration_us if self.duration_us else 0.0

    @property
    def error_ratio(self) -> float:
        return self.errors / self.requests if self.requests else 1.0


def run(url: str, load: Load, cpus: set[int] | None) -> WrkResult:
    argv = [
        "wrk",
        f"--threads={load.threads}",
        f"--connections={load.connections}",
        f"--duration={load.duration_s}s",
        f"--timeout={REQUEST_TIMEOUT_S}s",
        f"--script={SCRIPTS_DIR / load.script}",
        url,
        "--",
        str(load.keys_count),
        load.path_prefix,
    ]
    try:
        finished = subprocess.run(
            argv,
            capture_output=True,
            text=True,
            timeout=load.duration_s + RUN_SLACK_S,
            preexec_fn=child_setup(cpus),
        )
    except subprocess.TimeoutExpired as error:
        raise WrkError(f"wrk against {url} did not finish: {error}") from error
    if finished.returncode != 0:
        raise WrkError(f"wrk against {url} exited {finished.returncode}: {finished.stderr}")
    return parse(finished.stdout, url)


def parse(stdout: str, url: str) -> WrkResult:
    for line in stdout.splitlines():
        if line.startswith(RESULT_PREFIX):
            fields = json.loads(line[len(RESULT_PREFIX):])
            by_kind = {
                kind: fields[f"errors_{kind}"]
                for kind in ("connect", "read", "write", "status", "timeout")
                if fields[f"errors_{kind}"]
            }
            return WrkResult(
                requests=fields["requests"],
                duration_us=fields["duration_us"],
                p50_us=fields["p50_us"],
                p99_us=fields["p99_us"],
                max_us=fields["max_us"],
                errors=sum(by_kind.values()),
                errors_by_kind=by_kind,
            )
    raise WrkError(f"wrk against {url} printed no result line:\n{stdout}")
