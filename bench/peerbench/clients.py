"""Thousands of client connections from one process, for conns.py.

wrk keeps a fixed set of busy connections; the memory bench needs the
opposite: N connections that each did one request and then sit idle (or
hold one unanswered request) while the proxy's memory is read. A few
hundred lines of asyncio on plain non-blocking sockets do that cheaply: no
per-connection task or buffer survives the request, only the socket.

- **Bounded concurrency**: connections are opened and served by
  `concurrency` workers (default 256 at a time), so the proxy's listen
  backlog never overflows and no request waits behind thousands of others.
- **Many source addresses**: loopback has ~28k ephemeral ports per (source
  address, destination address and port); 32k connections to one proxy
  port would run out. Every address of 127.0.0.0/8 is loopback on Linux, so
  connection i binds to SOURCE_ADDRESSES[i mod 8] (127.0.0.2 .. 127.0.0.9)
  with IP_BIND_ADDRESS_NO_PORT, which defers the port choice to connect(),
  where the kernel picks it per full 4-tuple. No sysctl is changed.
- **Bounded waits**: every connect and response has a timeout, and every
  batch an overall deadline; what failed is counted by kind, never hidden.
"""

from __future__ import annotations

import asyncio
import signal
import socket
import threading
from collections import Counter
from dataclasses import dataclass, field

from .replicas import key_name

# Linux's value; Python's socket module names it from 3.12 on.
IP_BIND_ADDRESS_NO_PORT = getattr(socket, "IP_BIND_ADDRESS_NO_PORT", 24)
SOURCE_ADDRESSES_COUNT = 8
SOURCE_ADDRESSES = tuple(f"127.0.0.{2 + index}" for index in range(SOURCE_ADDRESSES_COUNT))
CONNECT_TIMEOUT_S = 10.0
RESPONSE_TIMEOUT_S = 30.0
RESPONSE_BYTES_MAX = 64 * 1024
RECV_BYTES = 4096
# A whole batch may take this long plus one second per RATE_MIN_PER_S
# connections before what is left is counted as timed out.
BATCH_SLACK_S = 30.0
RATE_MIN_PER_S = 200
OK = "200"


class ResponseError(RuntimeError):
    """An answer that is not a complete, length-delimited HTTP/1.1 response."""


@dataclass(frozen=True)
class Target:
    host: str
    port: int
    path_prefix: str
    keys: int = 1000


@dataclass
class Outcome:
    """Connections that got as far as asked (in no particular order), and
    what every attempt ended with: a status ("200", "503") or an error kind
    ("error: connect timeout")."""

    socks: list[socket.socket] = field(default_factory=list)
    results: Counter = field(default_factory=Counter)

    @property
    def ok(self) -> int:
        return self.results[OK]

    def failures(self) -> str:
        """'' when every attempt answered 200, else a summary of the rest."""
        bad = {kind: count for kind, count in self.results.items() if kind != OK}
        return ", ".join(f"{count}× {kind}" for kind, count in sorted(bad.items()))


def source_of(index: int) -> str:
    return SOURCE_ADDRESSES[index % len(SOURCE_ADDRESSES)]


def request_bytes(target: Target, index: int) -> bytes:
    """GET of key `index mod keys`, as wrk sends it: the key in the path and
    in `x-key` (what HAProxy and nginx hash on)."""
    key = key_name(index % target.keys)
    return (
        f"GET {target.path_prefix}{key} HTTP/1.1\r\nHost: {target.host}:{target.port}\r\n"
        f"x-key: {key}\r\n\r\n"
    ).encode()


def response_status(buffer: bytes) -> int | None:
    """The status once `buffer` holds one complete response, else None."""
    end = buffer.find(b"\r\n\r\n")
    if end < 0:
        if len(buffer) > RESPONSE_BYTES_MAX:
            raise ResponseError("response head too large")
        return None
    lines = buffer[:end].decode("latin-1").split("\r\n")
    parts = lines[0].split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/1.") or not parts[1].isdigit():
        raise ResponseError(f"bad status line {lines[0][:80]!r}")
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip().lower()
    body = buffer[end + 4 :]
    if "content-length" in headers:
        return int(parts[1]) if len(body) >= int(headers["content-length"]) else None
    if headers.get("transfer-encoding") == "chunked":
        return int(parts[1]) if body.endswith(b"0\r\n\r\n") else None
    raise ResponseError("response without length (not keep-alive)")


def new_socket(index: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.setblocking(False)
        sock.setsockopt(socket.IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, 1)
        sock.bind((source_of(index), 0))
    except OSError:
        sock.close()
        raise
    return sock


async def _connect(target: Target, index: int) -> socket.socket:
    sock = new_socket(index)
    try:
        await asyncio.wait_for(
            asyncio.get_running_loop().sock_connect(sock, (target.host, target.port)),
            CONNECT_TIMEOUT_S,
        )
    except BaseException:
        sock.close()
        raise
    return sock


async def _read_status(sock: socket.socket) -> int:
    loop = asyncio.get_running_loop()
    buffer = b""
    while True:
        chunk = await loop.sock_recv(sock, RECV_BYTES)
        if not chunk:
            raise ResponseError("closed before a complete response")
        buffer += chunk
        status = response_status(buffer)
        if status is not None:
            return status


def _error_kind(error: BaseException, step: str) -> str:
    if isinstance(error, asyncio.TimeoutError):
        return f"error: {step} timeout"
    if isinstance(error, ResponseError):
        return f"error: {error}"
    return f"error: {step} {type(error).__name__}"


async def _workers(count: int, concurrency: int, work, outcome: Outcome):
    """Runs `work(index)` for index in range(count) on `concurrency`
    workers, bounded by an overall deadline; unfinished ones count as
    'error: batch deadline'."""
    indices = iter(range(count))
    done = Counter()

    async def worker():
        for index in indices:
            await work(index)
            done["n"] += 1

    tasks = [asyncio.ensure_future(worker()) for _ in range(max(1, min(concurrency, count)))]
    deadline_s = BATCH_SLACK_S + count / RATE_MIN_PER_S
    _, pending = await asyncio.wait(tasks, timeout=deadline_s)
    for task in pending:
        task.cancel()
    await asyncio.gather(*pending, return_exceptions=True)
    if done["n"] < count:
        outcome.results["error: batch deadline"] += count - done["n"]


STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


def _run(coro):
    """asyncio.run, but a stop signal (Ctrl-C, SIGTERM) cancels the batch
    cleanly and then goes to the harness's own handler (which stops every
    process), instead of raising in the middle of the event loop."""
    if threading.current_thread() is not threading.main_thread():
        return asyncio.run(coro)
    saved = {signum: signal.getsignal(signum) for signum in STOP_SIGNALS}
    received: list[int] = []

    async def main():
        loop, task = asyncio.get_running_loop(), asyncio.current_task()
        for signum in STOP_SIGNALS:
            loop.add_signal_handler(signum, lambda signum=signum: (received.append(signum),
                                                                   task.cancel()))
        return await coro

    try:
        return asyncio.run(main())
    except asyncio.CancelledError:
        if not received:
            raise
    finally:
        for signum, handler in saved.items():
            signal.signal(signum, handler)
    handler = saved[received[0]]
    if callable(handler):
        handler(received[0], None)
    raise SystemExit(128 + received[0])


def open_with_get(target: Target, count: int, concurrency: int) -> Outcome:
    """`count` keep-alive connections, each after one GET answered in full.
    Connections that failed are closed and counted, not returned."""
    outcome = Outcome()

    async def one(index: int):
        try:
            sock = await _connect(target, index)
        except (OSError, asyncio.TimeoutError) as error:
            outcome.results[_error_kind(error, "connect")] += 1
            return
        try:
            await asyncio.get_running_loop().sock_sendall(sock, request_bytes(target, index))
            status = await asyncio.wait_for(_read_status(sock), RESPONSE_TIMEOUT_S)
        except (OSError, asyncio.TimeoutError, ResponseError, ValueError) as error:
            sock.close()
            outcome.results[_error_kind(error, "response")] += 1
            return
        outcome.socks.append(sock)
        outcome.results[str(status)] += 1

    _run(_workers(count, concurrency, one, outcome))
    return outcome


def open_with_request(target: Target, count: int, concurrency: int) -> Outcome:
    """`count` connections, each with one GET sent and not yet answered
    (the in-flight round reads the answers later, `read_statuses`)."""
    outcome = Outcome()

    async def one(index: int):
        try:
            sock = await _connect(target, index)
        except (OSError, asyncio.TimeoutError) as error:
            outcome.results[_error_kind(error, "connect")] += 1
            return
        try:
            await asyncio.get_running_loop().sock_sendall(sock, request_bytes(target, index))
        except OSError as error:
            sock.close()
            outcome.results[_error_kind(error, "send")] += 1
            return
        outcome.socks.append(sock)
        outcome.results["sent"] += 1

    _run(_workers(count, concurrency, one, outcome))
    return outcome


def read_statuses(socks: list[socket.socket], concurrency: int) -> Counter:
    """Reads one response on each connection; what each ended with."""
    outcome = Outcome()

    async def one(index: int):
        try:
            status = await asyncio.wait_for(_read_status(socks[index]), RESPONSE_TIMEOUT_S)
        except (OSError, asyncio.TimeoutError, ResponseError, ValueError) as error:
            outcome.results[_error_kind(error, "response")] += 1
            return
        outcome.results[str(status)] += 1

    _run(_workers(len(socks), concurrency, one, outcome))
    return outcome.results


def closed_by_peer(socks: list[socket.socket]) -> int:
    """How many of these idle connections the other side has closed (or
    reset), without consuming anything: a peek that would block means the
    connection is open and idle."""
    closed = 0
    for sock in socks:
        try:
            if sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) == b"":
                closed += 1
        except BlockingIOError:
            continue
        except OSError:
            closed += 1
    return closed


def close_all(socks: list[socket.socket]):
    for sock in socks:
        sock.close()
    socks.clear()
