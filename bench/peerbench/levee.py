"""The levee configuration the benchmark runs: the one place that knows
levee's config schema (host/src/config.rs) and URL scheme.

Two flavours serve the same service over the same three upstreams and
differ only in `policies`: "wasm" binds the example plugins (retry-backoff,
route-affinity; built into `plugins/dist/`, or taken from `--plugins-dir`),
"native" binds nothing, so levee's built-in implementations of the same
policies run. Everything else is left at levee's defaults, which is what an
operator would get.

Checked against `levee serve --config` of levee 0.1.0: the config below is
what `peers.py` writes, and `check_bindings` refuses a run whose plugins did
not bind.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from . import probe
from .replicas import Replica
from .tls import TlsFiles

SERVICE = "bench"
# "wasm" turns the routing plan cache off, so every request runs the routing
# plugin (the cost the targets are about); "wasm-cached" is what an
# operator gets by default: route-affinity declares itself cacheable, so a
# repeated (facts, candidates, health flags) plan is served from the cache.
FLAVOURS = ("wasm", "wasm-cached", "native")
# Answers 200 on the data listener once levee is ready to serve.
READY_PATH = "/_levee/healthz"
# `levee serve` prints this first; the config binds port 0 so the OS picks.
# A scheme in front of an address (a TLS listener's `https://`) is allowed.
LISTENING_PATTERN = (
    r"listening data=(?:https?://)?(\S+):(\d+) admin=(?:https?://)?(\S+):(\d+)"
)
# The TLS rows' HTTP/2 settings: offered by ALPN on the TLS data listener,
# 100 concurrent streams per connection (HAProxy 2.6's default too; nginx's
# is 128), more than the bench's h2load opens per connection.
HTTP2 = {"enabled": True, "streams_max": 100}
REPO_DIR = Path(__file__).resolve().parent.parent.parent
DEFAULT_PLUGIN_DIR = REPO_DIR / "plugins" / "dist"
WASM_POLICIES = {
    "retry": {"plugin": "retry-backoff"},
    "routing": {"plugin": "route-affinity"},
}


def path_prefix() -> str:
    """Data-plane requests are /<service>/<path on the replica>."""
    return f"/{SERVICE}/kv/"


def plugin_files() -> list[str]:
    """The components the Wasm flavour needs in its plugin directory."""
    return sorted(f"{binding['plugin']}.wasm" for binding in WASM_POLICIES.values())


def config(
    flavour: str,
    replicas: list[Replica],
    data_dir: Path,
    plugin_dir: Path = DEFAULT_PLUGIN_DIR,
    write_quorum: int = 2,
    overrides: Overrides | None = None,
    tls: TlsFiles | None = None,
) -> dict:
    """The config `levee serve` gets. With `tls`, the data listener
    terminates TLS with that certificate (`listeners.tls.data`) and offers
    HTTP/2 by ALPN (`server.http2`); the admin listener stays plain, and so
    do the upstreams."""
    if flavour not in FLAVOURS:
        raise ValueError(f"unknown levee flavour {flavour!r}, expected one of {FLAVOURS}")
    service = {
        "name": SERVICE,
        "nodes": [{"id": replica.name, "url": replica.url} for replica in replicas],
        "replicas": len(replicas),
        "write_quorum": write_quorum,
        # /bench/kv/<key>: segment 0 is "kv", segment 1 the key.
        "key": {"path_segment": 1},
    }
    if flavour == "wasm":
        uncached = {**WASM_POLICIES["routing"], "limits": {"route_plan_cache": False}}
        service["policies"] = {**WASM_POLICIES, "routing": uncached}
    elif flavour == "wasm-cached":
        service["policies"] = WASM_POLICIES
    document = {
        "listeners": {"data": "127.0.0.1:0", "admin": "127.0.0.1:0"},
        "data_dir": str(data_dir),
        "plugin_dir": str(plugin_dir),
        "services": [service],
    }
    if tls:
        document["listeners"]["tls"] = {
            "data": {"cert_chain_file": str(tls.cert), "key_file": str(tls.key)}
        }
        document["server"] = {"http2": dict(HTTP2)}
    if overrides and overrides.server:
        document["server"] = {**document.get("server", {}), **overrides.server}
    if overrides:
        service.update(overrides.service)
    return document


@dataclass(frozen=True)
class Overrides:
    """What conns.py changes in the config above: `server` fields (the
    listener's limits) and fields of the service (timeouts, concurrency
    cap, quorum), each replacing the default or the value written above."""

    server: dict = field(default_factory=dict)
    service: dict = field(default_factory=dict)


@dataclass(frozen=True)
class PluginCalls:
    """What levee's admin API says the bound plugins did."""

    calls: int
    fallbacks: int
    traps: int
    timeouts: int


def _plugins(admin: tuple[str, int]) -> list[dict]:
    conn = probe.Connection(*admin)
    try:
        status, body = conn.request("GET", "/admin/plugins")
    finally:
        conn.close()
    if status != 200:
        raise probe.ProbeError(f"GET /admin/plugins: {status} {body[:200]!r}")
    return json.loads(body)


def check_bindings(flavour: str, admin: tuple[str, int]):
    """Refuses to measure a "wasm" levee whose plugins are not bound and
    active (it would silently be measuring the native fallback), and a
    "native" one with any plugin bound to the service."""
    bound = {
        plugin["name"]
        for plugin in _plugins(admin)
        if SERVICE in plugin.get("services", []) and plugin.get("status") == "active"
    }
    wanted = {binding["plugin"] for binding in WASM_POLICIES.values()} if flavour.startswith("wasm") else set()
    if bound != wanted:
        raise probe.ProbeError(
            f"levee-{flavour}: plugins bound to {SERVICE!r} are {sorted(bound)}, "
            f"expected {sorted(wanted)}"
        )


def plugin_calls(admin: tuple[str, int]) -> dict[str, PluginCalls]:
    """Per plugin bound to the benchmark's service: calls and failures."""
    return {
        plugin["name"]: PluginCalls(
            calls=plugin.get("calls", 0),
            fallbacks=plugin.get("fallbacks", 0),
            traps=plugin.get("traps", 0),
            timeouts=plugin.get("timeouts", 0),
        )
        for plugin in _plugins(admin)
        if SERVICE in plugin.get("services", [])
    }
