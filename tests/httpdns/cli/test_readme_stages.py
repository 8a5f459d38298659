"""The README's "Operating safely" walk through the article's four stages and back, replayed
through the real CLI against a real node: every command it shows prints exactly what the
README says (the dry runs' measured shares included), so the walk stays true.

The README shows the dry runs; the commands that then make each change are run here in
between (``THEN``), as an operator following the README would."""

from __future__ import annotations

import re
import shlex
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.servers import Node

from .conftest import TOKEN, httpdns

README = Path(__file__).resolve().parents[3] / "README.md"
ACTOR = "ops@example"  # the actor the README's audit shows

# The README abbreviates stage0.toml ("# ... www-idc-2 in idc, ..."); this is the whole file.
STAGE0 = """
[datacenters.idc]
kind = "idc"

[datacenters.cloud]
kind = "cloud"
writable = false

[regions.mobile]
cidrs = ["100.64.0.0/10"]

[services."www.example.org"]
access = "ro"
ttl = 60

[services."www.example.org".traffic]
default = {idc = 100}

[services."www.example.org".endpoints.www-idc-1]
dc = "idc"
address = "192.0.2.11"

[services."www.example.org".endpoints.www-idc-2]
dc = "idc"
address = "192.0.2.12"

[services."www.example.org".endpoints.www-cloud-1]
dc = "cloud"
address = "198.51.100.11"

[services."www.example.org".release]
stable = "v1"

[services."trade.example.org"]
access = "rw"
ttl = 60

[services."trade.example.org".traffic]
default = {idc = 100}

[services."trade.example.org".endpoints.trade-idc-1]
dc = "idc"
address = "192.0.2.21"

[services."trade.example.org".endpoints.trade-cloud-1]
dc = "cloud"
address = "198.51.100.21"
"""

# After the README's dry run of a change, the change itself (and, on the way back, the
# read-only flip the README previews first but makes once the writes have gone home).
THEN = {
    "traffic set www.example.org --region mobile cloud=100 --dry-run": [
        "traffic set www.example.org --region mobile cloud=100"
    ],
    "traffic set www.example.org idc=80 cloud=20 --dry-run": [
        "traffic set www.example.org idc=80 cloud=20"
    ],
    "traffic shift --from idc --to cloud --percent 50 --dry-run": [
        "traffic shift --from idc --to cloud --percent 50"
    ],
    "dc set cloud --writable --dry-run": ["dc set cloud --writable"],
    "traffic set trade.example.org idc=50 cloud=50 --dry-run": [
        "traffic set trade.example.org idc=50 cloud=50"
    ],
    "traffic set trade.example.org idc=100 cloud=0 --dry-run": [
        "traffic set trade.example.org idc=100 cloud=0",
        "dc set cloud --read-only",
    ],
    "traffic shift --from cloud --to idc --percent 100 --dry-run": [
        "traffic shift --from cloud --to idc --percent 100"
    ],
}
TIME = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d")


def walk() -> list[tuple[str, list[str]]]:
    """``(command, expected output lines)`` for every ``$ httpdns ...`` of the section, in
    order."""
    text = README.read_text()
    start = text.index("## Operating safely: the four stages, and back")
    section = text[start : text.index("\n## ", start + 10)]
    out: list[tuple[str, list[str]]] = []
    lines: list[str] | None = None  # the output being read, None outside a command's block
    for line in section.splitlines():
        if line.startswith("```"):
            lines = None  # a fence ends (or opens a block before) any output
        elif line.startswith("$ httpdns "):
            lines = []
            out.append((line.removeprefix("$ httpdns "), lines))
        elif lines is not None and line.strip():
            lines.append(line.rstrip())
    return out


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Node]:
    tmp = tmp_path_factory.mktemp("readme-stages")
    (tmp / "stage0.toml").write_text(STAGE0)
    n = Node(f"sqlite:///{tmp}/registry.db", tmp, token=TOKEN).start()
    try:
        yield n
    finally:
        n.stop()


def test_the_walk_has_every_stage_with_dry_runs() -> None:
    commands = [c for c, _ in walk()]
    assert commands[0] == "apply stage0.toml" and commands[-1] == "audit --limit 3"
    dry = [c for c in commands if c.endswith("--dry-run")]
    assert len(dry) >= 10, commands
    assert "dc drain idc --dry-run" in dry and "revert 2" in commands


def test_the_readme_walk_prints_what_it_shows(node: Node) -> None:
    steps = walk()
    width = next(len(line) for _, lines in steps for line in lines if line.startswith("┏"))
    env = {"HTTPDNS_ACTOR": ACTOR, "COLUMNS": str(width)}
    cwd = str(node.workdir)
    for command, expected in steps:
        done = httpdns(node, *shlex.split(command), env=env, cwd=cwd)
        printed = (done.stdout + done.stderr).splitlines()
        got = [TIME.sub("TIME", line.rstrip()) for line in printed if line.strip()]
        want = [TIME.sub("TIME", line) for line in expected]
        assert got == want, f"$ httpdns {command}"
        assert done.returncode == (1 if want[0].startswith("error: ") else 0), command
        for then in THEN.get(command, []):
            assert httpdns(node, *shlex.split(then), env=env).returncode == 0, then
