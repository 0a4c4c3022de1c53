"""Processes the benchmark starts, and the guarantee that it stops them.

Every process is started through `Processes.spawn`, which records its PID;
`Processes.stop_all` (run from a `finally` and from the signal handlers in
`peers.py`) stops each one by that PID, never by name, because other work
shares this machine. As a second line of defence each child asks the kernel
to kill it if the harness itself dies (PR_SET_PDEATHSIG), so a `kill -9` of
the harness does not leave servers bound to loopback ports.

Output goes to one log file per process rather than a pipe: a pipe nobody
drains blocks a chatty server mid-benchmark, a file never does, and the file
is there to read when a start fails.
"""

from __future__ import annotations

import ctypes
import os
import re
import signal
import subprocess
import time
from pathlib import Path

# How long a process gets to exit after SIGTERM before SIGKILL.
STOP_GRACE_S = 5.0
# Poll interval for every bounded wait in this module.
POLL_INTERVAL_S = 0.02

_PR_SET_PDEATHSIG = 1


class StartError(RuntimeError):
    """A process exited or stayed silent instead of starting."""


def child_setup(cpus: set[int] | None):
    """Runs in the child between fork and exec."""

    def setup():
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
        if cpus:
            # Same effect as `taskset -c`: threads created later inherit it.
            os.sched_setaffinity(0, cpus)

    return setup


class Spawned:
    """One started process, its log, and what we can read about it."""

    def __init__(self, name: str, popen: subprocess.Popen, log_path: Path):
        self.name = name
        self.popen = popen
        self.log_path = log_path

    @property
    def pid(self) -> int:
        return self.popen.pid

    def log_tail(self, lines_max: int = 20) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines_max:])

    def wait_for_line(self, pattern: str, timeout_s: float) -> re.Match:
        """Waits until the log has a line matching `pattern`, bounded."""
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                text = self.log_path.read_text(errors="replace")
            except OSError:
                text = ""
            match = regex.search(text)
            if match:
                return match
            if self.popen.poll() is not None:
                raise StartError(
                    f"{self.name} exited with {self.popen.returncode} before "
                    f"printing /{pattern}/:\n{self.log_tail()}"
                )
            time.sleep(POLL_INTERVAL_S)
        raise StartError(
            f"{self.name} printed no /{pattern}/ within {timeout_s} s:\n{self.log_tail()}"
        )

    def tree_pids(self) -> list[int]:
        """This process and all its descendants (nginx's master and workers;
        HAProxy and levee are one process with threads)."""
        return tree_pids(self.pid)

    def peak_rss_bytes(self) -> int:
        """Sum of VmHWM over the process tree: the memory it really touched."""
        return sum(peak_rss_of(pid) for pid in self.tree_pids())

    def rss_bytes(self) -> int:
        """Sum of VmRSS over the process tree: what it holds resident now
        (nginx: master and workers each count the pages they share)."""
        return sum(rss_of(pid) for pid in self.tree_pids())

    def open_fds(self) -> int:
        """Open file descriptors of the whole tree (sockets included)."""
        return sum(open_fds_of(pid) for pid in self.tree_pids())

    def cpu_seconds(self) -> float:
        """User + system CPU time the tree has used so far (all threads)."""
        return sum(cpu_seconds_of(pid) for pid in self.tree_pids())

    def pin_all_threads(self, cpus: set[int]):
        """Re-pins every thread of the tree (like `taskset -a -p`)."""
        for pid in self.tree_pids():
            for tid in os.listdir(f"/proc/{pid}/task"):
                try:
                    os.sched_setaffinity(int(tid), cpus)
                except ProcessLookupError:
                    pass  # the thread ended meanwhile


# Every reader below takes the /proc root as a parameter so the tests can
# point it at a fake tree; the harness always uses the real one.
PROC = Path("/proc")
# Bound on the process tree walk: a proxy has a handful of processes.
TREE_PIDS_MAX = 256


def children_of(pid: int, proc: Path = PROC) -> list[int]:
    """Children of every thread of `pid` (a child's parent is the thread
    that forked it, and /proc lists it under that thread only)."""
    children: list[int] = []
    try:
        tids = sorted(os.listdir(proc / str(pid) / "task"), key=int)
    except OSError:
        return []
    for tid in tids:
        try:
            text = (proc / str(pid) / "task" / tid / "children").read_text()
        except OSError:
            continue  # the thread ended meanwhile
        children += [int(child) for child in text.split()]
    return children


def tree_pids(pid: int, proc: Path = PROC) -> list[int]:
    """`pid` and its descendants, breadth first, bounded."""
    found, queue = [], [pid]
    while queue and len(found) < TREE_PIDS_MAX:
        current = queue.pop(0)
        if current in found:
            continue
        found.append(current)
        queue += children_of(current, proc)
    return found


def parse_vmhwm_bytes(status_text: str) -> int:
    """VmHWM (peak resident set) from the text of /proc/PID/status, in bytes."""
    match = re.search(r"^VmHWM:\s+(\d+)\s+kB$", status_text, re.MULTILINE)
    return int(match.group(1)) * 1024 if match else 0


def peak_rss_of(pid: int, proc: Path = PROC) -> int:
    """VmHWM of one process in bytes, 0 if it is gone."""
    try:
        return parse_vmhwm_bytes((proc / str(pid) / "status").read_text())
    except OSError:
        return 0


def parse_vmrss_bytes(status_text: str) -> int:
    """VmRSS (resident set now) from the text of /proc/PID/status, in bytes."""
    match = re.search(r"^VmRSS:\s+(\d+)\s+kB$", status_text, re.MULTILINE)
    return int(match.group(1)) * 1024 if match else 0


def rss_of(pid: int, proc: Path = PROC) -> int:
    """VmRSS of one process in bytes, 0 if it is gone."""
    try:
        return parse_vmrss_bytes((proc / str(pid) / "status").read_text())
    except OSError:
        return 0


def open_fds_of(pid: int, proc: Path = PROC) -> int:
    """How many file descriptors one process has open, 0 if it is gone."""
    try:
        return len(os.listdir(proc / str(pid) / "fd"))
    except OSError:
        return 0


CLOCK_TICKS_PER_S = os.sysconf("SC_CLK_TCK")


def parse_cpu_ticks(stat_text: str) -> int:
    """utime + stime, in clock ticks, from the text of /proc/PID/stat. The
    figures cover every thread of the process, live or ended; the time of
    children it reaped (cutime, cstime) is not included."""
    # The command name (field 2) may contain spaces and ')'; fields resume
    # after the last ')'. utime and stime are fields 14 and 15.
    fields = stat_text[stat_text.rindex(")") + 2 :].split()
    return int(fields[11]) + int(fields[12])


def cpu_seconds_of(pid: int, proc: Path = PROC) -> float:
    """utime + stime of one process (all its threads), 0 if it is gone."""
    try:
        stat = (proc / str(pid) / "stat").read_text()
    except OSError:
        return 0.0
    return parse_cpu_ticks(stat) / CLOCK_TICKS_PER_S


class Processes:
    """The registry of everything started; a context manager that stops all."""

    def __init__(self, log_dir: Path):
        self.log_dir = log_dir
        self._live: list[Spawned] = []

    def __enter__(self) -> Processes:
        return self

    def __exit__(self, *exc_info):
        self.stop_all()

    def spawn(
        self,
        name: str,
        argv: list[str],
        *,
        cpus: set[int] | None = None,
        env: dict[str, str] | None = None,
    ) -> Spawned:
        log_path = self.log_dir / f"{name}.log"
        log_file = open(log_path, "wb")
        full_env = dict(os.environ)
        full_env.update(env or {})
        try:
            popen = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                env=full_env,
                preexec_fn=child_setup(cpus),
            )
        finally:
            log_file.close()
        spawned = Spawned(name, popen, log_path)
        self._live.append(spawned)
        return spawned

    def stop(self, spawned: Spawned):
        """SIGTERM, a bounded wait, then SIGKILL; always by PID."""
        if spawned in self._live:
            self._live.remove(spawned)
        if spawned.popen.poll() is not None:
            return
        children = tree_pids(spawned.pid)[1:]
        spawned.popen.send_signal(signal.SIGTERM)
        try:
            spawned.popen.wait(timeout=STOP_GRACE_S)
        except subprocess.TimeoutExpired:
            spawned.popen.kill()
            spawned.popen.wait(timeout=STOP_GRACE_S)
        for child in children:
            _kill_if_alive(child)

    def stop_all(self):
        """Stops everything still running: SIGTERM to all first, so their
        graceful shutdowns overlap, then each gets the rest of one grace
        period before SIGKILL."""
        live = [spawned for spawned in reversed(self._live) if spawned.popen.poll() is None]
        children = {spawned.pid: tree_pids(spawned.pid)[1:] for spawned in live}
        for spawned in live:
            try:
                spawned.popen.send_signal(signal.SIGTERM)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + STOP_GRACE_S
        for spawned in live:
            try:
                spawned.popen.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                print(f"warning: {spawned.name} ({spawned.pid}) ignored SIGTERM for "
                      f"{STOP_GRACE_S} s; killing it", flush=True)
                spawned.popen.kill()
                spawned.popen.wait(timeout=STOP_GRACE_S)
            for child in children[spawned.pid]:
                _kill_if_alive(child)
        self._live.clear()


def _kill_if_alive(pid: int):
    """Children a master left behind (it should have stopped them)."""
    deadline = time.monotonic() + STOP_GRACE_S
    while time.monotonic() < deadline:
        if not _is_running(pid):
            return
        time.sleep(POLL_INTERVAL_S)
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def _is_running(pid: int) -> bool:
    """False once the process is gone or a zombie: an orphaned zombie waits
    for init to reap it, which in a container may take a while."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    state = stat[stat.rindex(")") + 2 :].split()[0]
    return state not in ("Z", "X")
