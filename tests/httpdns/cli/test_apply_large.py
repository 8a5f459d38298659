"""A declarative apply larger than the 1 MiB every other admin body is held to: one
revision through the real CLI (gzip-compressed on the way), refused with 413 past the
node's ``max_apply_bytes`` (counted inflated), never read before the token is admitted."""

from __future__ import annotations

import gzip
import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.servers import Node

from .conftest import TOKEN, fails, ok

SERVICES = 2_500  # x 2 endpoints: a JSON body of ~1.4 MB


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Node]:
    tmp = tmp_path_factory.mktemp("apply-large")
    (tmp / "httpdns.toml").write_text(f"max_apply_bytes = {2 << 20}\n")
    n = Node(
        f"sqlite:///{tmp}/registry.db", tmp, token=TOKEN, args=("--config", f"{tmp}/httpdns.toml")
    ).start()
    try:
        yield n
    finally:
        n.stop()


def registry_toml(services: int) -> str:
    out = ['[datacenters.idc]\nkind = "idc"\n[datacenters.cloud]\nkind = "cloud"\n']
    for i in range(services):
        name = f"svc{i}.bulk.example.org"
        out.append(
            f'[services."{name}"]\nttl = 30\n'
            f'[services."{name}".traffic]\ndefault = {{idc = 70, cloud = 30}}\n'
            f'[services."{name}".endpoints.a]\ndc = "idc"\naddress = "10.{i >> 8 & 255}.{i & 255}.1"\n'
            f'[services."{name}".endpoints.b]\ndc = "cloud"\naddress = "10.{i >> 8 & 255}.{i & 255}.2"\n'
        )
    return "".join(out)


def get(node: Node, path: str) -> dict[str, object]:
    request = urllib.request.Request(node.url + path, headers={"Authorization": f"Bearer {TOKEN}"})
    with urllib.request.urlopen(request, timeout=30) as r:
        data: dict[str, object] = json.loads(r.read())
    return data


def revision(node: Node) -> int:
    return int(get(node, "/api/v1/registry")["revision"])  # type: ignore[call-overload]


def test_a_registry_over_one_mib_applies_as_one_revision(node: Node, tmp_path: Path) -> None:
    doc = tmp_path / "big.toml"
    doc.write_text(registry_toml(SERVICES))
    before = revision(node)
    out = ok(node, "apply", str(doc))
    assert f"(revision {before + 1})" in out  # one revision for every record
    assert len(get(node, "/api/v1/state")["services"]) == SERVICES  # type: ignore[arg-type]
    assert ok(node, "apply", str(doc)).startswith("no change:")


def test_past_the_limit_is_a_413_and_nothing_changes(node: Node, tmp_path: Path) -> None:
    doc = tmp_path / "huge.toml"
    doc.write_text(registry_toml(5 * SERVICES))  # ~2.5 MB of JSON (far less once gzipped)
    before = revision(node)
    err = fails(node, "apply", str(doc))
    assert "payload_too_large" in err and "2097152 bytes" in err, err
    assert len(err.strip().splitlines()) == 1
    assert revision(node) == before


def test_no_token_no_read(node: Node) -> None:
    body = gzip.compress(b'{"services": {}, "x": "' + b"a" * (3 << 20) + b'"}')
    request = urllib.request.Request(
        node.url + "/api/v1/registry",
        data=body,
        method="PUT",
        headers={"Content-Type": "application/json", "Content-Encoding": "gzip"},
    )
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(request, timeout=30)
    assert err.value.code == 401
    assert json.loads(err.value.read())["error"]


def test_max_apply_bytes_is_a_limit_in_its_range() -> None:
    from httpdns import config

    assert config.load(None, env={}).max_apply_bytes == 256 << 20
    assert config.load(None, env={"HTTPDNS_MAX_APPLY_BYTES": "2097152"}).max_apply_bytes == 2 << 20
    with pytest.raises(config.ConfigError, match="between 1048576 and 4294967296"):
        config.load(None, env={"HTTPDNS_MAX_APPLY_BYTES": "5"})
