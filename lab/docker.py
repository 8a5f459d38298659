"""The lab's private Docker daemon, its datacenter networks and its image.

``dockerd`` runs on its own socket, data root and exec root (vfs storage, no iptables,
no masquerading) with its own default bridge ``hdl-dk0``, so it never touches another
daemon on the machine (the same recipe as ``tests/deployer/dockerd.py``). The image is
made without any registry: ``docker import`` of a root filesystem holding Debian's
static busybox; the release spec's command writes ``SERVICE VERSION DC`` (from the
``ROLLING_*`` environment every rolling container gets) to ``/www/index.html`` and runs
busybox ``httpd``. ``cleanup`` removes every container, network and image made here,
then the daemon stops and its directory and bridge go.
"""

from __future__ import annotations

import contextlib
import io
import ipaddress
import shutil
import signal
import subprocess
import tarfile
import tempfile
import time
from pathlib import Path
from typing import Any

import docker
import docker.errors
import docker.types

from . import net

BRIDGE = net.PREFIX + "dk0"
REPOSITORY = "hdl/app"
APPLETS = ("sh", "httpd", "echo", "cat", "sleep")
COMMAND = [
    "/bin/sh",
    "-c",
    'echo "$ROLLING_SERVICE $ROLLING_VERSION $ROLLING_DC" > /www/index.html'
    " && exec httpd -f -p 8080 -h /www",
]
"""The containers' command: serve ``SERVICE VERSION DC`` at / on port 8080."""


class DockerError(Exception):
    """The private dockerd did not start or refused a request."""


class Dockerd:
    """One dockerd process on a private socket, and what the lab made on it."""

    def __init__(self, bridge_subnet: str) -> None:
        self.bridge_subnet = bridge_subnet
        self.dir = Path(tempfile.mkdtemp(prefix="hdl-dk-", dir="/tmp"))  # short: socket paths
        self.socket = self.dir / "docker.sock"
        self.log = self.dir / "dockerd.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.api: Any = None
        self.images: list[str] = []
        self.networks: list[str] = []

    @property
    def url(self) -> str:
        """The Engine API URL (``unix://``)."""
        return f"unix://{self.socket}"

    def start(self, timeout: float = 60.0) -> None:
        """Start the daemon on its own default bridge; DockerError when it does not answer."""
        binary = shutil.which("dockerd")
        if binary is None:
            raise DockerError("dockerd is missing (scripts/install installs docker.io)")
        gateway = ipaddress.IPv4Network(self.bridge_subnet).network_address + 1
        net.ip("link", "add", "name", BRIDGE, "type", "bridge")
        net.ip("addr", "add", f"{gateway}/24", "dev", BRIDGE)
        net.ip("link", "set", BRIDGE, "up")
        cmd = [
            binary, "--host", self.url, "--data-root", str(self.dir / "data"),
            "--exec-root", str(self.dir / "exec"), "--pidfile", str(self.dir / "docker.pid"),
            "--iptables=false", "--ip-masq=false", "--storage-driver=vfs", f"--bridge={BRIDGE}",
        ]  # fmt: skip
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen(cmd, stdout=log, stderr=log, start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise DockerError(f"dockerd exited with {self.proc.returncode}: {self.tail()}")
            if self.socket.exists():
                try:
                    api = docker.APIClient(base_url=self.url, version="auto", timeout=60)
                    api.ping()
                    self.api = api
                    return
                except (docker.errors.DockerException, OSError):
                    pass
            time.sleep(0.1)
        raise DockerError(f"dockerd did not answer within {timeout}s: {self.tail()}")

    def tail(self, lines: int = 20) -> str:
        """The end of the daemon's log."""
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def build_image(self, tag: str) -> str:
        """``hdl/app:TAG``: busybox with an empty /www; the spec's command fills it."""
        busybox = shutil.which("busybox") or "/bin/busybox"
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w") as tar:
            tar.add(busybox, arcname="bin/busybox")
            for applet in APPLETS:
                link = tarfile.TarInfo(f"bin/{applet}")
                link.type, link.linkname = tarfile.SYMTYPE, "busybox"
                tar.addfile(link)
            for d in ("tmp", "persist", "etc", "www"):
                info = tarfile.TarInfo(d)
                info.type, info.mode = tarfile.DIRTYPE, 0o1777
                tar.addfile(info)
        self.api.import_image_from_data(buf.getvalue(), repository=REPOSITORY, tag=tag)
        ref = f"{REPOSITORY}:{tag}"
        self.images.append(ref)
        return ref

    def network(self, name: str, subnet: str) -> str:
        """A user-defined bridge network whose gateway (``.1``) is on the machine."""
        gateway = str(ipaddress.IPv4Network(subnet).network_address + 1)
        pool = docker.types.IPAMPool(subnet=subnet, gateway=gateway)
        self.api.create_network(
            name, driver="bridge", ipam=docker.types.IPAMConfig(pool_configs=[pool])
        )
        self.networks.append(name)
        return name

    def containers(self) -> list[dict[str, Any]]:
        """Every container on the daemon."""
        return list(self.api.containers(all=True))

    def kill(self, name: str) -> None:
        """SIGKILL one container, as a crash would."""
        self.api.kill(name)

    def cleanup(self) -> None:
        """Remove every container, then the networks and images; stop the daemon; remove
        its directory and bridge. Safe to call twice, and after a failed start."""
        if self.api is not None:
            with contextlib.suppress(docker.errors.DockerException, OSError):
                for c in self.api.containers(all=True):
                    with contextlib.suppress(docker.errors.DockerException):
                        self.api.remove_container(c["Id"], force=True)
            for name in self.networks:
                with contextlib.suppress(docker.errors.DockerException, OSError):
                    self.api.remove_network(name)
            for ref in self.images:
                with contextlib.suppress(docker.errors.DockerException, OSError):
                    self.api.remove_image(ref, force=True)
            self.api.close()
            self.api = None
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    self.proc.kill()
                self.proc.wait(10)
        self.proc = None
        net.ip("link", "del", BRIDGE, check=False)
        shutil.rmtree(self.dir, ignore_errors=True)
