"""The group: lazy commands, ``python -m httpdns.cli`` and the entry point."""

from __future__ import annotations

import subprocess
import sys

from .conftest import invoke

_LOADED = (
    "import sys, httpdns.cli; "
    "print(' '.join(sorted(m for m in sys.modules if m.split('.')[0] in "
    "('aiohttp', 'httpdns_client', 'dnslib', 'deployer', 'redis') "
    "or m in ('httpdns.serve', 'httpdns.web', 'httpdns.node', 'httpdns.cli.query'))))"
)


def test_client_commands_do_not_import_the_server() -> None:
    out = subprocess.run(
        [sys.executable, "-c", _LOADED], capture_output=True, text=True, timeout=30, check=True
    )
    assert out.stdout.strip() == ""


def test_lazy_commands_are_listed() -> None:
    result = invoke("--help")
    assert result.exit_code == 0
    commands = result.stdout.partition("Commands:")[2]
    for name in ("audit", "dc", "endpoint", "explain", "health", "query", "region", "registry",
                 "release", "serve", "service", "state", "traffic"):  # fmt: skip
        assert f"\n  {name} " in commands, name


def test_python_dash_m_runs_serve() -> None:
    # the worker supervisor of ``serve --workers`` starts ``python -m httpdns.cli serve``
    out = subprocess.run(
        [sys.executable, "-m", "httpdns.cli", "serve", "--help"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert out.returncode == 0, out.stderr
    assert "--http" in out.stdout
    assert "--worker-id" not in out.stdout  # hidden


def test_entry_point_is_the_group() -> None:
    from importlib.metadata import entry_points

    from httpdns import cli

    [ep] = [e for e in entry_points(group="console_scripts") if e.name == "httpdns"]
    assert ep.value == "httpdns.cli:main"
    assert ep.load() is cli.main
