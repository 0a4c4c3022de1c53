"""Config files from the templates next to peers.py, and loopback ports.

HAProxy and nginx cannot listen on port 0 and report the port they got, so
the harness asks the OS for a free port and writes it into their config.
"""

from __future__ import annotations

import grp
import os
import pwd
import re
import socket
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent.parent


def free_port() -> int:
    """A loopback port the OS considers free now; handed over at once."""
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


def own_user_and_group() -> dict[str, str]:
    """For nginx's `user` directive: its workers run as the harness's user,
    so they can use the run's private temporary directory."""
    return {
        "user": pwd.getpwuid(os.getuid()).pw_name,
        "group": grp.getgrgid(os.getgid()).gr_name,
    }
