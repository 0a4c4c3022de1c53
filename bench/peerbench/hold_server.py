#!/usr/bin/env python3
"""The "hold" upstream of the memory-per-connection bench (conns.py).

To measure what a proxy spends per request *in flight*, the requests must
stay in flight while its memory is read: this upstream answers nothing
while it is holding, counts the requests it holds, and answers them all
when told to. It runs as its own process (started and stopped by PID, like
every upstream), standalone Python with no imports from the package, so it
can be started by path.

Control, straight to this server (never through a proxy), on the same port:
- `GET /_hold/on`: from now on hold every request; answers `on`.
- `GET /_hold/count`: answers how many requests are held right now.
- `GET /_hold/release`: answer every held request, stop holding; answers
  how many were released.

Any other request is answered `200` with the fixed body given by `--body`
(the nginx upstreams' body, so a proxy in front passes the same checks),
at once, or when released while holding. A held request is answered anyway
after `--hold-s-max` seconds, so a harness that died cannot leave requests
(and a proxy's connections) hanging. HTTP/1.1 keep-alive, request heads of
at most HEAD_BYTES_MAX, request bodies read and ignored.

It prints `listening 127.0.0.1:<port>` once it accepts connections.
"""

from __future__ import annotations

import argparse
import asyncio
import sys

HEAD_BYTES_MAX = 16 * 1024
BODY_BYTES_MAX = 1024 * 1024
# Backlog of the listening socket: conns.py opens thousands of upstream
# connections through a proxy within seconds (the kernel caps it at
# net.core.somaxconn).
BACKLOG = 65535
CONTROL_PREFIX = "/_hold/"


class Hold:
    """Whether requests are held, and how many are."""

    def __init__(self, hold_s_max: float):
        self.hold_s_max = hold_s_max
        self.holding = False
        self.held = 0
        self.released = asyncio.Event()

    def start(self):
        self.holding = True
        self.released = asyncio.Event()

    def release(self) -> int:
        count = self.held
        self.holding = False
        self.released.set()
        return count

    async def wait(self):
        """Returns when released, or after hold_s_max at the latest."""
        released = self.released
        self.held += 1
        try:
            await asyncio.wait_for(released.wait(), self.hold_s_max)
        except asyncio.TimeoutError:
            pass
        finally:
            self.held -= 1


def response(status: str, body: bytes) -> bytes:
    head = f"HTTP/1.1 {status}\r\ncontent-length: {len(body)}\r\ncontent-type: text/plain\r\n\r\n"
    return head.encode() + body


def parse_head(head: bytes) -> tuple[str, str, int, bool]:
    """(method, path, content length, keep alive) of a request head."""
    lines = head.decode("latin-1").split("\r\n")
    method, path, version = (lines[0].split(" ") + ["", "", ""])[:3]
    length, keep_alive = 0, version == "HTTP/1.1"
    for line in lines[1:]:
        name, _, value = line.partition(":")
        name, value = name.strip().lower(), value.strip().lower()
        if name == "content-length":
            length = int(value)
        elif name == "connection":
            keep_alive = value != "close" if version == "HTTP/1.1" else value == "keep-alive"
    return method, path, length, keep_alive


async def answer(hold: Hold, path: str, body: bytes) -> bytes:
    if path == CONTROL_PREFIX + "on":
        hold.start()
        return response("200 OK", b"on")
    if path == CONTROL_PREFIX + "count":
        return response("200 OK", str(hold.held).encode())
    if path == CONTROL_PREFIX + "release":
        return response("200 OK", str(hold.release()).encode())
    if hold.holding:
        await hold.wait()
    return response("200 OK", body)


async def serve_connection(hold: Hold, body: bytes, reader, writer):
    try:
        while True:
            try:
                head = await reader.readuntil(b"\r\n\r\n")
            except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
                return
            method, path, length, keep_alive = parse_head(head)
            if not 0 <= length <= BODY_BYTES_MAX:
                writer.write(response("413 Content Too Large", b"request body too large"))
                return
            if length:
                await reader.readexactly(length)
            writer.write(await answer(hold, path, body))
            await writer.drain()
            if not keep_alive or method == "":
                return
    except (ConnectionError, asyncio.IncompleteReadError, ValueError):
        return
    finally:
        writer.close()


async def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--body", required=True)
    parser.add_argument("--hold-s-max", type=float, default=300.0)
    args = parser.parse_args(argv)
    hold = Hold(args.hold_s_max)
    body = args.body.encode()
    server = await asyncio.start_server(
        lambda reader, writer: serve_connection(hold, body, reader, writer),
        "127.0.0.1",
        args.port,
        backlog=BACKLOG,
        limit=HEAD_BYTES_MAX,
    )
    host, port = server.sockets[0].getsockname()[:2]
    print(f"listening {host}:{port}", flush=True)
    async with server:
        await server.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main(sys.argv[1:])))
