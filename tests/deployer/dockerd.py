"""A private Docker daemon for the end-to-end tests, and what they build on it.

``Dockerd`` runs ``dockerd`` on its own socket, data root and exec root (vfs storage,
no iptables) and its own default bridge, so it never touches another daemon on the
machine. (Not ``--bridge=none``: dockerd then deletes the machine's ``docker0``.)
Images are built without any registry: ``docker import`` of a tiny root filesystem
holding Debian's static busybox, whose ``httpd`` serves ``/www/index.html`` naming the
version. Networks are user-defined bridges on /24s of 10.231.0.0/16 that no route of
the machine uses yet. ``cleanup`` removes every container, network and image made
here before the daemon stops.
"""

from __future__ import annotations

import contextlib
import io
import ipaddress
import os
import random
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
import pytest

BUSYBOX_APPLETS = ("sh", "httpd", "sleep", "cat", "echo", "ls", "mkdir", "kill", "wget")


class Dockerd:
    """One dockerd process on a private socket."""

    def __init__(self) -> None:
        self.binary = shutil.which("dockerd")
        # short: unix socket paths are limited to 108 bytes, containerd's are under exec-root
        self.dir = Path(tempfile.mkdtemp(prefix="rolling-dk-", dir="/tmp"))
        self.socket = self.dir / "docker.sock"
        self.log = self.dir / "dockerd.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.api: Any = None
        self.images: list[str] = []
        self.networks: list[str] = []
        self.bridge: str | None = None  # a private default bridge, when ``ip`` is there

    @property
    def url(self) -> str:
        return f"unix://{self.socket}"

    def start(self, subnet: str, timeout: float = 60.0) -> Dockerd:
        """Start on a private default bridge on ``subnet`` (a free /24)."""
        assert self.binary is not None
        cmd = [
            self.binary, "--host", self.url, "--data-root", str(self.dir / "data"),
            "--exec-root", str(self.dir / "exec"), "--pidfile", str(self.dir / "docker.pid"),
            "--iptables=false", "--ip-masq=false", "--storage-driver=vfs",
        ]  # fmt: skip
        ip = shutil.which("ip")
        if ip is not None:
            name = f"rdk{os.getpid() % 1_000_000}"
            gateway = f"{ipaddress.IPv4Network(subnet).network_address + 1}/24"
            for args in (["link", "add", "name", name, "type", "bridge"],
                         ["addr", "add", gateway, "dev", name], ["link", "set", name, "up"]):  # fmt: skip
                done = subprocess.run([ip, *args], capture_output=True, text=True, check=False)
                if done.returncode != 0:
                    self.stop()
                    pytest.fail(f"cannot set up the private bridge ({' '.join(args)}): "
                                f"{done.stderr.strip()} (the tests need root)")  # fmt: skip
                self.bridge = name
            cmd.append(f"--bridge={name}")
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen(cmd, stdout=log, stderr=log, start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                pytest.fail(f"dockerd exited with {self.proc.returncode}:\n{self.tail()}")
            if self.socket.exists():
                try:
                    api = docker.APIClient(base_url=self.url, version="auto", timeout=60)
                    api.ping()
                    self.api = api
                    return self
                except (docker.errors.DockerException, OSError):
                    pass
            time.sleep(0.1)
        self.stop()
        pytest.fail(f"dockerd did not answer within {timeout}s:\n{self.tail()}")

    def tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    # -- what the tests build ---------------------------------------------------------------------

    def build_image(self, repository: str, tag: str) -> str:
        """An image whose httpd serves ``version TAG`` at / (from /www)."""
        busybox = shutil.which("busybox") or "/bin/busybox"
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w") as tar:
            tar.add(busybox, arcname="bin/busybox")
            for applet in BUSYBOX_APPLETS:
                link = tarfile.TarInfo(f"bin/{applet}")
                link.type, link.linkname = tarfile.SYMTYPE, "busybox"
                tar.addfile(link)
            for d in ("tmp", "persist", "etc", "www"):
                info = tarfile.TarInfo(d)
                info.type, info.mode = tarfile.DIRTYPE, 0o1777
                tar.addfile(info)
            page = f"version {tag}\n".encode()
            info = tarfile.TarInfo("www/index.html")
            info.size = len(page)
            tar.addfile(info, io.BytesIO(page))
        self.api.import_image_from_data(buf.getvalue(), repository=repository, tag=tag)
        ref = f"{repository}:{tag}"
        self.images.append(ref)
        return ref

    def network(self, name: str, subnet: str) -> str:
        """A user-defined bridge network; the host reaches its containers via the gateway."""
        net = ipaddress.IPv4Network(subnet)
        ipam = docker.types.IPAMConfig(
            pool_configs=[
                docker.types.IPAMPool(subnet=subnet, gateway=str(net.network_address + 1))
            ]
        )
        self.api.create_network(name, driver="bridge", ipam=ipam)
        self.networks.append(name)
        return name

    def cleanup(self) -> None:
        """Remove every container, then the networks and images made here."""
        if self.api is None:
            return
        with contextlib.suppress(docker.errors.DockerException, OSError):
            for c in self.api.containers(all=True):
                with contextlib.suppress(docker.errors.NotFound):
                    self.api.remove_container(c["Id"], force=True)
        for name in self.networks:
            with contextlib.suppress(docker.errors.DockerException, OSError):
                self.api.remove_network(name)
        for ref in self.images:
            with contextlib.suppress(docker.errors.DockerException, OSError):
                self.api.remove_image(ref, force=True)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)
        self.proc = None
        if self.api is not None:
            self.api.close()
            self.api = None
        ip = shutil.which("ip")
        if self.bridge is not None and ip is not None:
            subprocess.run([ip, "link", "del", self.bridge], check=False, capture_output=True)
            self.bridge = None
        shutil.rmtree(self.dir, ignore_errors=True)


def _routes() -> list[ipaddress.IPv4Network]:
    """The IPv4 routes of this machine (from /proc/net/route), default route excluded."""
    out = []
    with contextlib.suppress(OSError):
        for line in Path("/proc/net/route").read_text().splitlines()[1:]:
            fields = line.split()
            dest, mask = (ipaddress.IPv4Address(int(x, 16).to_bytes(4, "little")) for x in
                          (fields[1], fields[7]))  # fmt: skip
            net = ipaddress.IPv4Network(f"{dest}/{mask}", strict=False)
            if net.prefixlen > 0:
                out.append(net)
    return out


def free_subnets(count: int, prefix: str = "10.231") -> list[str]:
    """``count`` /24s of ``prefix``.0.0/16 that no route of this machine overlaps."""
    used = _routes()
    candidates = list(range(1, 255))
    random.Random(os.getpid()).shuffle(candidates)  # concurrent runs pick apart
    out: list[str] = []
    for third in candidates:
        net = ipaddress.IPv4Network(f"{prefix}.{third}.0/24")
        if not any(net.overlaps(u) for u in used):
            out.append(str(net))
            if len(out) == count:
                return out
    raise RuntimeError(f"no free /24 left in {prefix}.0.0/16")
