"""Real servers the integration tests start on free loopback ports: redis-server and
redis-sentinel processes, and httpdns nodes as subprocesses."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest


def free_port() -> int:
    """A TCP port that was free a moment ago on 127.0.0.1."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_until(predicate: object, timeout: float = 10.0, what: str = "condition") -> None:
    """Poll ``predicate()`` until true, at most ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return
        time.sleep(0.02)
    raise TimeoutError(f"timed out after {timeout}s waiting for {what}")


def _redis_cmd(port: int, *args: str) -> bytes | None:
    """Send one command with the inline protocol; the raw reply or None if unreachable."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as s:
            s.sendall((" ".join(args) + "\r\n").encode())
            return s.recv(65536)
    except OSError:
        return None


def need(tool: str) -> str:
    """The path of ``tool``; skip when it is truly absent (scripts/install installs it)."""
    path = shutil.which(tool)
    if path is None:
        pytest.skip(f"{tool} is not installed (scripts/install installs it)")
    return path


class RedisServer:
    """One redis-server process on a free port, with no persistence unless asked."""

    def __init__(self, workdir: Path, port: int | None = None, args: tuple[str, ...] = ()) -> None:
        self.port = port or free_port()
        self.workdir = workdir
        self.args = args
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> RedisServer:
        self.workdir.mkdir(parents=True, exist_ok=True)
        cmd = [
            need("redis-server"), "--port", str(self.port), "--bind", "127.0.0.1",
            "--save", "", "--appendonly", "no", "--dir", str(self.workdir),
            "--logfile", str(self.workdir / f"redis-{self.port}.log"), *self.args,
        ]  # fmt: skip
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_until(lambda: _redis_cmd(self.port, "PING") == b"+PONG\r\n", 10, "redis-server")
        return self

    def command(self, *args: str) -> bytes | None:
        return _redis_cmd(self.port, *args)

    def kill(self) -> None:
        """SIGKILL, as a crash would."""
        if self.proc is not None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)
            self.proc = None

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
            self.proc = None


class Sentinel:
    """One redis-sentinel process watching ``master`` on a free port."""

    def __init__(self, workdir: Path, master_port: int, name: str = "mymaster") -> None:
        self.port = free_port()
        self.workdir = workdir
        self.conf = workdir / f"sentinel-{self.port}.conf"
        self.conf.write_text(
            f"port {self.port}\nbind 127.0.0.1\ndir {workdir}\n"
            f"sentinel monitor {name} 127.0.0.1 {master_port} 2\n"
            f"sentinel down-after-milliseconds {name} 1000\n"
            f"sentinel failover-timeout {name} 5000\n"
            f"sentinel parallel-syncs {name} 1\n"
        )
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Sentinel:
        self.proc = subprocess.Popen(
            [
                need("redis-sentinel"),
                str(self.conf),
                "--logfile",
                str(self.workdir / f"s-{self.port}.log"),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_until(lambda: _redis_cmd(self.port, "PING") == b"+PONG\r\n", 10, "redis-sentinel")
        return self

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(10)
            self.proc = None


def httpdns_command() -> list[str]:
    """How to run the ``httpdns`` CLI from the tests."""
    exe = Path(sys.executable).parent / "httpdns"
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "httpdns.cli"]


class Node:
    """An ``httpdns serve`` subprocess on a free port."""

    def __init__(
        self, store: str, workdir: Path, token: str = "T", args: tuple[str, ...] = ()
    ) -> None:
        self.port = free_port()
        self.store = store
        self.workdir = workdir
        self.token = token
        self.args = args
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = workdir / f"node-{self.port}.log"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, wait: bool = True) -> Node:
        self.workdir.mkdir(parents=True, exist_ok=True)
        cmd = [*httpdns_command(), "serve", "--http", f"127.0.0.1:{self.port}", "--store", self.store,
               "--admin-token", self.token, *self.args]  # fmt: skip
        env = {k: v for k, v in os.environ.items() if not k.startswith("HTTPDNS_")}
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(cmd, stdout=log, stderr=log, cwd=self.workdir, env=env)
        if wait:
            wait_until(self.healthy, 20, f"httpdns node on {self.port} ({self.log})")
        return self

    def healthy(self) -> bool:
        if self.proc is not None and self.proc.poll() is not None:
            raise RuntimeError(
                f"node exited with {self.proc.returncode}: {self.log.read_text()[-2000:]}"
            )
        try:
            with urllib.request.urlopen(self.url + "/healthz", timeout=1) as r:
                return bool(r.status == 200)
        except OSError:
            return False

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
            self.proc = None
