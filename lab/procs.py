"""The lab's processes (Redis, Sentinels, nodes, controllers, client regions) and the
one list that stops them.

Each runs in its own session (so a Ctrl-C at the terminal reaches the lab only, which
then stops them in order) with its output in a log file under the run directory.
``stop`` sends SIGTERM to the process group, waits, then SIGKILL.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path


class ProcessError(Exception):
    """A lab process exited early or did not become ready."""


class Proc:
    """One started process: its name, command, log and ``Popen``."""

    def __init__(self, name: str, cmd: list[str], log: Path, env: dict[str, str] | None = None):
        self.name = name
        self.cmd = cmd
        self.log = log
        self.expected_exit = False  # set before a deliberate stop or kill
        with open(log, "ab") as out:
            self.popen = subprocess.Popen(
                cmd, stdout=out, stderr=out, start_new_session=True, env=env
            )

    @property
    def pid(self) -> int:
        """The process id (also its group id)."""
        return self.popen.pid

    def alive(self) -> bool:
        """True while it runs."""
        return self.popen.poll() is None

    def tail(self, lines: int = 15) -> str:
        """The end of its log."""
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def signal(self, sig: int) -> None:
        """Send ``sig`` to its whole process group."""
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.popen.pid, sig)

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM the group, then SIGKILL after ``timeout``; reap it."""
        self.expected_exit = True
        if self.popen.poll() is None:
            self.signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self.signal(signal.SIGKILL)
                self.popen.wait(10)
        self.signal(signal.SIGKILL)  # anything the leader left behind in its group

    def kill(self) -> None:
        """SIGKILL, as a crash would."""
        self.expected_exit = True
        self.signal(signal.SIGKILL)
        self.popen.wait(10)


class Procs:
    """Every process the lab started, stopped in reverse order by ``stop_all``."""

    def __init__(self, logs: Path) -> None:
        self.logs = logs
        self.started: list[Proc] = []

    def start(self, name: str, cmd: list[str], env: dict[str, str] | None = None) -> Proc:
        """Start ``cmd`` with its output in ``LOGS/NAME.log``."""
        proc = Proc(name, cmd, self.logs / f"{name}.log", env)
        self.started.append(proc)
        return proc

    def check(self) -> None:
        """ProcessError naming any process that died without being asked to."""
        for proc in self.started:
            if not proc.alive() and not proc.expected_exit:
                raise ProcessError(
                    f"{proc.name} exited with {proc.popen.returncode}:\n{proc.tail()}"
                )

    def stop_all(self) -> None:
        """Stop every process, newest first."""
        while self.started:
            self.started.pop().stop()


def wait_for(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    """Poll ``predicate`` until true; ProcessError after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise ProcessError(f"timed out after {timeout:.0f}s waiting for {what}")


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that was free a moment ago on ``host``."""
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def redis_ping(host: str, port: int) -> bool:
    """True when a Redis (or Sentinel) at ``host:port`` answers PING."""
    try:
        with socket.create_connection((host, port), timeout=0.5) as s:
            s.sendall(b"PING\r\n")
            return s.recv(64) == b"+PONG\r\n"
    except OSError:
        return False
