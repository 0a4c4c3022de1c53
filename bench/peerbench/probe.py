"""A small, bounded HTTP/1.1 client for everything that is not the load.

The load itself is wrk's job. This is for the few hundred requests around
it: preloading keys, waiting for readiness, flipping fault knobs and
checking, before a target is measured, that it really returns the stored
values (a proxy answering 404 fast would otherwise win the benchmark).
Every call has a timeout; every wait has a deadline.
"""

from __future__ import annotations

import http.client
import ssl
import time

REQUEST_TIMEOUT_S = 5.0
POLL_INTERVAL_S = 0.05


class ProbeError(RuntimeError):
    """A request failed or a wait ran out."""


class Connection:
    """One keep-alive connection to host:port, reopened after errors; over
    TLS when given a client context (peerbench/tls.py)."""

    def __init__(self, host: str, port: int, ssl_context: ssl.SSLContext | None = None):
        self.host = host
        self.port = port
        self.ssl_context = ssl_context
        self._conn: http.client.HTTPConnection | None = None

    @property
    def scheme(self) -> str:
        return "https" if self.ssl_context else "http"

    def request(
        self, method: str, path: str, body: bytes | None = None, headers: dict | None = None
    ) -> tuple[int, bytes]:
        for attempt in (1, 2):  # a server may close an idle keep-alive connection
            if self._conn is None and self.ssl_context:
                self._conn = http.client.HTTPSConnection(
                    self.host, self.port, timeout=REQUEST_TIMEOUT_S, context=self.ssl_context
                )
            elif self._conn is None:
                self._conn = http.client.HTTPConnection(
                    self.host, self.port, timeout=REQUEST_TIMEOUT_S
                )
            try:
                self._conn.request(method, path, body=body, headers=headers or {})
                response = self._conn.getresponse()
                return response.status, response.read()
            except (http.client.HTTPException, OSError) as error:
                self.close()
                if attempt == 2:
                    raise ProbeError(
                        f"{method} {self.scheme}://{self.host}:{self.port}{path}: {error}"
                    ) from error
        raise AssertionError("unreachable")

    def close(self):
        if self._conn is not None:
            self._conn.close()
            self._conn = None


def split_addr(addr: str) -> tuple[str, int]:
    """'127.0.0.1:8080' (or 'http://127.0.0.1:8080') -> ('127.0.0.1', 8080)."""
    addr = addr.removeprefix("http://").rstrip("/")
    host, _, port = addr.rpartition(":")
    return host, int(port)


def wait_status(
    host: str,
    port: int,
    path: str,
    want: int,
    timeout_s: float,
    ssl_context: ssl.SSLContext | None = None,
):
    """Polls `GET path` until it answers `want`, bounded by `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    last = "no answer"
    while time.monotonic() < deadline:
        conn = Connection(host, port, ssl_context)
        try:
            status, body = conn.request("GET", path)
            if status == want:
                return
            last = f"status {status}: {body[:200]!r}"
        except ProbeError as error:
            last = str(error)
        finally:
            conn.close()
        time.sleep(POLL_INTERVAL_S)
    scheme = "https" if ssl_context else "http"
    raise ProbeError(
        f"GET {scheme}://{host}:{port}{path} not {want} within {timeout_s} s ({last})"
    )
