"""`sandbox-probe-py`: a test plugin, not a policy (built into
plugins/dist/sandbox-probe-py.wasm, never bound by the demo).

It proves what crates/plugin/src/wasi says: a WASI plugin is granted
nothing. Its config names one probe, `{"probe": "open"}`, and every
`decide` tries that one thing and gives up with what happened, e.g.
`refused: FileNotFoundError: ...`. crates/plugin/tests/wasi_sandbox.rs
runs each probe in the host and checks the answer.

Probes: open, write, listdir (files); socket, resolve (network); env,
stdin (environment and input); print (stdout/stderr into the host log);
time, random (the host's seeded clock and random stream); sleep (a call
that would block: the call fails, there is no answer to give).
"""

import json
import os
import sys

from componentize_py_types import Err
from wit_world import exports
from wit_world.exports.retry import Decision_GiveUp

PROBES = ("open", "write", "listdir", "socket", "resolve", "env", "stdin",
          "print", "time", "random", "sleep")
PROBE = ["open"]
PORT = [9]


def run(probe):
    if probe == "open":
        with open("/etc/hostname") as f:
            return "opened: " + f.read(64)
    if probe == "write":
        with open("levee-probe.txt", "w") as f:
            f.write("x")
        return "wrote levee-probe.txt"
    if probe == "listdir":
        return "listed: " + ",".join(os.listdir("/"))
    if probe == "socket":
        import socket
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.connect(("127.0.0.1", PORT[0]))
        return "connected"
    if probe == "resolve":
        import socket
        return "resolved: " + repr(socket.getaddrinfo("localhost", 80))
    if probe == "env":
        return f"env: {dict(os.environ)!r} argv: {sys.argv!r} cwd: {os.getcwd()!r}"
    if probe == "stdin":
        return "stdin: " + repr(sys.stdin.read())
    if probe == "print":
        print("hello from python on stdout")
        print("hello from python on stderr", file=sys.stderr)
        return "printed"
    if probe == "time":
        import time
        return f"time_ms: {int(time.time() * 1000)}"
    if probe == "random":
        return "random: " + os.urandom(8).hex()
    if probe == "sleep":
        import time
        time.sleep(0.05)
        return "slept"
    return "unknown probe"


class Retry(exports.Retry):
    def configure(self, config):
        try:
            value = json.loads(config or "{}")
        except ValueError as e:
            raise Err(f"config is not JSON: {e}")
        probe = value.get("probe", "open")
        if probe not in PROBES:
            raise Err(f"config field `probe`: unknown probe {probe!r}")
        PROBE[0] = probe
        PORT[0] = int(value.get("port", 9))

    def set_nodes(self, nodes):
        pass

    def decide(self, facts, outcome, context):
        try:
            answer = run(PROBE[0])
        except Exception as e:  # what the sandbox said, as the answer
            answer = f"refused: {type(e).__name__}: {e}"
        return Decision_GiveUp(answer)
