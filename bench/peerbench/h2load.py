"""Running h2load (nghttp2's HTTP/2 load generator) for the HTTP/2 rows,
and reading its summary and its per-request log.

Like wrk, h2load is closed-loop: each of its C connections keeps M
streams in flight and opens the next when one completes. Every target
gets the identical command: same connections, streams per connection,
threads, duration and request sequence. Two differences from the wrk rows:

- h2load cannot vary a header per request, so the requests carry the key
  in the path only (no `x-key`): it walks the keys through a URI file
  (`--input-file`, each connection in order). The TLS configs of HAProxy
  and nginx hash on the path for that reason (targets.py); levee always
  reads the key from the path.
- h2load's summary gives latency as min/max/mean/sd only, so p50 and p99
  come from its per-request log (`--log-file`: start time, status,
  microseconds to the end of the response, one line per request).

The summary line `finished in 5.00s, 12345.67 req/s, ...` gives the
throughput over the measured duration; `requests: ... N done, N
succeeded, N failed, N errored, N timeout` and `status codes: N 2xx, ...`
give the errors; `traffic: ... N (B) data` gives the body bytes, checked
against the expected body size, because h2load does not look at bodies.
`Application protocol: h2` must be there: h2load would otherwise fall
back to HTTP/1.1 without failing.
"""

from __future__ import annotations

import math
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

from .procs import child_setup
from .replicas import key_name
from .wrk import RUN_SLACK_S, WrkError, WrkResult


TLS13_CIPHER = "TLS_AES_256_GCM_SHA384"


class H2loadError(WrkError):
    """h2load failed, printed no summary, or did not speak HTTP/2."""


@dataclass(frozen=True)
class Load:
    """What h2load sends: same for every target."""

    connections: int
    streams: int  # concurrent streams per connection (-m)
    threads: int
    duration_s: int
    keys_count: int
    path_prefix: str = "/kv/"


@dataclass(frozen=True)
class Run:
    """One h2load run: the result in wrk's shape (so the report treats
    both alike), and what h2load says the TLS session was."""

    result: WrkResult
    protocol: str  # ALPN: must be "h2"
    tls: str  # "TLSv1.3, TLS_AES_256_GCM_SHA384, X25519 253 bits"
    body_bytes: int  # DATA bytes over the run


def uris(url: str, path_prefix: str, keys_count: int) -> str:
    """The URI file: the full URL first (h2load takes scheme, host and port
    from it alone), then paths; key-00001 first, as wrk's walk starts."""
    order = [(index + 1) % keys_count for index in range(keys_count)]
    lines = [f"{path_prefix}{key_name(index)}" for index in order]
    lines[0] = url.rstrip("/") + lines[0]
    return "\n".join(lines) + "\n"


def argv(load: Load, uris_file: Path, log_file: Path) -> list[str]:
    return [
        "h2load",
        f"--clients={load.connections}",
        f"--max-concurrent-streams={load.streams}",
        f"--threads={load.threads}",
        f"--duration={load.duration_s}",
        # Offer h2 alone: a target without HTTP/2 fails instead of being
        # measured over HTTP/1.1.
        "--npn-list=h2",
        # The TLS 1.3 suite wrk (OpenSSL's default client order) ends up
        # with on every target; h2load's own order would start with
        # AES-128, which servers that follow the client's order (nginx,
        # rustls) take and HAProxy does not.
        f"--tls13-ciphers={TLS13_CIPHER}",
        f"--log-file={log_file}",
        f"--input-file={uris_file}",
    ]


def run(
    url: str, load: Load, cpus: set[int] | None, scratch: Path, body_bytes: int | None = None
) -> Run:
    """Runs h2load against `url` (https://host:port); `scratch` holds its
    URI file and log (removed after reading). With `body_bytes`, every
    answer must have carried that many body bytes."""
    scratch.mkdir(parents=True, exist_ok=True)
    uris_file, log_file = scratch / "uris.txt", scratch / "requests.tsv"
    uris_file.write_text(uris(url, load.path_prefix, load.keys_count))
    log_file.unlink(missing_ok=True)
    try:
        finished = subprocess.run(
            argv(load, uris_file, log_file),
            capture_output=True,
            text=True,
            timeout=load.duration_s + RUN_SLACK_S,
            preexec_fn=child_setup(cpus),
        )
    except subprocess.TimeoutExpired as error:
        raise H2loadError(f"h2load against {url} did not finish: {error}") from error
    try:
        log_text = log_file.read_text() if log_file.exists() else ""
    finally:
        log_file.unlink(missing_ok=True)
    if finished.returncode != 0:
        raise H2loadError(
            f"h2load against {url} exited {finished.returncode}: "
            f"{finished.stderr}{finished.stdout[-2000:]}"
        )
    done = parse(finished.stdout, log_text, url)
    if body_bytes is not None and done.result.requests:
        per_answer = done.body_bytes / done.result.requests
        if abs(per_answer - body_bytes) > 0.5:
            raise H2loadError(
                f"h2load against {url}: answers carried {per_answer:.1f} body bytes on "
                f"average, expected {body_bytes}"
            )
    return done


_FINISHED = re.compile(r"^finished in ([\d.]+)(m?s), ([\d.]+) req/s", re.MULTILINE)
_REQUESTS = re.compile(
    r"^requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, (\d+) failed, "
    r"(\d+) errored, (\d+) timeout",
    re.MULTILINE,
)
_STATUS = re.compile(r"^status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx", re.MULTILINE)
_TRAFFIC_DATA = re.compile(r"^traffic: .*, \S+ \((\d+)\) data", re.MULTILINE)
_REQUEST_TIME = re.compile(
    r"^time for request:\s+(\S+)\s+(\S+)\s+(\S+)\s+(\S+)", re.MULTILINE
)
_PROTOCOL = re.compile(r"^Application protocol: (\S+)", re.MULTILINE)
_TLS_FIELDS = (("TLS Protocol", "protocol"), ("Cipher", "cipher"), ("Server Temp Key", "key"))


def duration_us(text: str) -> int:
    """h2load's durations: `837us`, `10.88ms`, `1.03s`."""
    match = re.fullmatch(r"([\d.]+)(us|ms|s)", text)
    if not match:
        raise H2loadError(f"h2load: unreadable duration {text!r}")
    scale = {"us": 1, "ms": 1_000, "s": 1_000_000}[match.group(2)]
    return round(float(match.group(1)) * scale)


def latencies_us(log_text: str) -> list[int]:
    """Per completed request (status not -1), microseconds from the
    stream's start to the end of its response, sorted."""
    found = []
    for line in log_text.splitlines():
        fields = line.split("\t")
        if len(fields) >= 3 and fields[1] != "-1":
            found.append(int(fields[2]))
    found.sort()
    return found


def percentile(sorted_values: list[int], fraction: float) -> int:
    """Nearest rank: the smallest value with at least `fraction` of all
    values at or below it."""
    if not sorted_values:
        return 0
    rank = max(1, math.ceil(fraction * len(sorted_values)))
    return sorted_values[rank - 1]


def parse(stdout: str, log_text: str, url: str) -> Run:
    finished = _FINISHED.search(stdout)
    requests = _REQUESTS.search(stdout)
    status = _STATUS.search(stdout)
    if not (finished and requests and status):
        raise H2loadError(f"h2load against {url} printed no summary:\n{stdout[-3000:]}")
    protocol = _PROTOCOL.search(stdout)
    if not protocol or protocol.group(1) != "h2":
        raise H2loadError(
            f"h2load against {url} did not negotiate h2 "
            f"({protocol.group(1) if protocol else 'no application protocol'})"
        )
    rps = float(finished.group(3))
    done, succeeded = int(requests.group(3)), int(requests.group(4))
    errored, timeout = int(requests.group(6)), int(requests.group(7))
    not_2xx = sum(int(status.group(index)) for index in (2, 3, 4))
    by_kind = {
        kind: count
        for kind, count in (("status", not_2xx), ("errored", errored - timeout),
                            ("timeout", timeout))
        if count
    }
    # The throughput h2load prints is `succeeded` over the measured
    # duration; the duration is recomputed from the two, as the printed one
    # is rounded to 10 ms. Like wrk's, our request count is every answer
    # (non-2xx ones are counted as errors besides).
    if rps > 0 and succeeded:
        measured_us = round(succeeded * 1_000_000 / rps)
    else:
        scale = 1_000 if finished.group(2) == "ms" else 1_000_000
        measured_us = round(float(finished.group(1)) * scale)
    times = latencies_us(log_text)
    request_time = _REQUEST_TIME.search(stdout)
    if times:
        p50_us, p99_us, max_us = percentile(times, 0.50), percentile(times, 0.99), times[-1]
    elif request_time and done:
        # No log: the mean stands in for the median, and p99 is unknown (0).
        p50_us, p99_us, max_us = (duration_us(request_time.group(3)), 0,
                                  duration_us(request_time.group(2)))
    else:
        p50_us = p99_us = max_us = 0
    tls = {}
    for label, field in _TLS_FIELDS:
        match = re.search(rf"^{label}: (.+)$", stdout, re.MULTILINE)
        if match:
            tls[field] = match.group(1).strip()
    data = _TRAFFIC_DATA.search(stdout)
    return Run(
        result=WrkResult(
            requests=done,
            duration_us=measured_us,
            p50_us=p50_us,
            p99_us=p99_us,
            max_us=max_us,
            errors=sum(by_kind.values()),
            errors_by_kind=by_kind,
        ),
        protocol=protocol.group(1),
        tls=", ".join(tls[field] for _, field in _TLS_FIELDS if field in tls) or "no TLS",
        body_bytes=int(data.group(1)) if data else 0,
    )
