"""``httpdns serve`` as a real subprocess: start-up, answers, shutdown, start-up
failures reported as one line, ``--demo``, ``--config`` and the admin token."""

from __future__ import annotations

import hashlib
import signal
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from .conftest import (
    OPENER,
    ServerProcess,
    clean_env,
    free_port,
    http_json,
    httpdns_command,
    running_server,
    start_server,
    stop_server,
)

TRADE = "trade.demo.example"
QUOTES = "quotes.demo.example"
CLIENTS = [f"10.{i // 200}.{i % 200}.1" for i in range(120)]


def get(server: ServerProcess, path: str, headers: dict[str, str] | None = None) -> Any:
    return http_json(server.base + path, headers=headers)


def fail_fast(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Run ``httpdns serve ARGS`` that is expected to exit on its own (bounded)."""
    return subprocess.run(
        [*httpdns_command(), "serve", *args],
        capture_output=True,
        text=True,
        timeout=30,
        env=clean_env(),
        cwd=tmp_path,
        stdin=subprocess.DEVNULL,
        check=False,
    )


def assert_one_line_error(out: subprocess.CompletedProcess[str], *needles: str) -> None:
    assert out.returncode != 0
    assert "Traceback" not in out.stderr and "Traceback" not in out.stdout
    lines = [line for line in out.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, out.stderr
    assert lines[0].lower().startswith("error"), lines
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """``serve --demo`` on a fresh file store, no admin token."""
    tmp = tmp_path_factory.mktemp("demo")
    with running_server(tmp, "--demo", "--store", f"sqlite:///{tmp}/registry.db") as server:
        yield server


# -- start, answer, stop -----------------------------------------------------------------------


def test_demo_server_answers_on_every_dialect(demo: ServerProcess) -> None:
    health = get(demo, "/healthz")[1]
    assert health["status"] == "ok" and health["store"] == "ok"
    assert health["revision"] >= 1
    status, text = get(demo, f"/d?dn={TRADE}&ttl=1")
    assert status == 200 and text.endswith(",30")
    status, body = get(demo, f"/resolve?name={QUOTES}&type=AAAA")
    assert status == 200 and body["Status"] == 0
    assert all(a["data"].startswith("2001:db8::") for a in body["Answer"])
    status, body = get(demo, "/resolve?name=missing.demo.example")
    assert body["Status"] == 3  # the demo zone is served authoritatively
    status, body = get(demo, f"/100000/d?host={QUOTES}&query=4,6")
    assert status == 200 and body["ips"] and body["ttl"] == 20


def test_demo_rw_service_never_answers_from_the_read_only_cloud(demo: ServerProcess) -> None:
    trade_dcs, quotes_dcs = set(), set()
    for ip in CLIENTS:
        status, body = get(demo, f"/100000/resolve?host={TRADE},{QUOTES}&ip={ip}")
        assert status == 200, body
        trade, quotes = body["dns"]
        assert trade["ips"], ip
        for addr in trade["ips"]:
            assert not addr.startswith("198.51.100."), (ip, trade)
            trade_dcs.add("idc" if addr.startswith("192.0.2.") else addr)
        quotes_dcs.update("cloud" if a.startswith("198.51.100.") else "idc" for a in quotes["ips"])
    assert trade_dcs == {"idc"}
    assert quotes_dcs == {"idc", "cloud"}  # the cloud is live; trade just may not use it


def test_demo_state_is_the_demo_data_set(demo: ServerProcess) -> None:
    status, snap = get(demo, "/api/v1/state")  # reads are open without a token
    assert status == 200
    assert set(snap["services"]) == {TRADE, QUOTES}
    assert snap["services"][TRADE]["access"] == "rw"
    assert snap["datacenters"]["cloud"]["writable"] is False
    assert snap["services"][QUOTES]["release"]["canary"] == "v2"


def test_admin_writes_without_a_configured_token_are_403(demo: ServerProcess) -> None:
    before = get(demo, "/healthz")[1]["revision"]
    for headers in ({}, {"Authorization": "Bearer anything"}):
        status, body = http_json(
            f"{demo.base}/api/v1/datacenters/cloud",
            "PUT",
            {"kind": "cloud", "drained": True},
            headers,
        )
        assert status == 403, body
        assert body["error"] == "admin_disabled" and body["detail"]
    status, body = http_json(f"{demo.base}/api/v1/services/{TRADE}", "DELETE")
    assert (status, body["error"]) == (403, "admin_disabled")
    assert get(demo, "/healthz")[1]["revision"] == before


def test_overlong_doh_get_is_a_json_error_without_traceback(demo: ServerProcess) -> None:
    status, body = get(demo, "/dns-query?dns=" + "A" * 9000 + "!")  # long and not base64url
    assert 400 <= status < 500
    assert isinstance(body, dict) and body["error"] and body["detail"], body
    assert "Traceback" not in demo.stderr()


def test_sigterm_exits_zero_promptly_and_the_store_persists(tmp_path: Path) -> None:
    store = f"sqlite:///{tmp_path}/registry.db"
    server = start_server(tmp_path, "--demo", "--store", store, "--admin-token", "T")
    try:
        status, body = http_json(
            f"{server.base}/api/v1/datacenters/edge",
            "PUT",
            {"kind": "cloud"},
            {"Authorization": "Bearer T"},
        )
        assert status == 201, body
        revision = body["revision"]
        server.proc.send_signal(signal.SIGTERM)
        started = time.monotonic()
        assert server.proc.wait(timeout=10) == 0, server.stderr()
        assert time.monotonic() - started < 5
        assert "Traceback" not in server.stderr()
    finally:
        stop_server(server)

    # same store again: the write is there and --demo does not load over it
    with running_server(tmp_path, "--demo", "--store", store) as again:
        health = get(again, "/healthz")[1]
        assert health["revision"] == revision
        snap = get(again, "/api/v1/state")[1]
        assert "edge" in snap["datacenters"]
        again.proc.send_signal(signal.SIGINT)
        assert again.proc.wait(timeout=10) == 0


# -- start-up failures ----------------------------------------------------------------------------


def test_port_already_taken(tmp_path: Path) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        out = fail_fast(tmp_path, "--http", f"127.0.0.1:{port}", "--store", "sqlite://:memory:")
    assert_one_line_error(out, str(port))


def test_bad_store_url(tmp_path: Path) -> None:
    out = fail_fast(tmp_path, "--http", f"127.0.0.1:{free_port()}", "--store", "postgres://x")
    assert_one_line_error(out, "postgres")


def test_https_without_certificate(tmp_path: Path) -> None:
    args = ["--http", f"127.0.0.1:{free_port()}", "--store", "sqlite://:memory:"]
    out = fail_fast(tmp_path, *args, "--https", f"127.0.0.1:{free_port()}")
    assert_one_line_error(out, "tls")
    out = fail_fast(
        tmp_path, *args, "--https", f"127.0.0.1:{free_port()}", "--tls-cert", str(tmp_path / "no")
    )
    assert_one_line_error(out)
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("not a certificate\n")
    out = fail_fast(
        tmp_path,
        *args,
        "--https",
        f"127.0.0.1:{free_port()}",
        "--tls-cert",
        str(garbage),
        "--tls-key",
        str(garbage),
    )
    assert_one_line_error(out)


def test_bad_listen_address_and_config_file(tmp_path: Path) -> None:
    out = fail_fast(tmp_path, "--http", "nowhere", "--store", "sqlite://:memory:")
    assert_one_line_error(out)
    out = fail_fast(tmp_path, "--config", str(tmp_path / "missing.toml"))
    assert_one_line_error(out)
    bad = tmp_path / "bad.toml"
    bad.write_text('colour = "red"\n')
    out = fail_fast(tmp_path, "--config", str(bad), "--store", "sqlite://:memory:")
    assert_one_line_error(out, "colour")


# -- --config ------------------------------------------------------------------------------------


def test_config_file_accounts_zones_token_and_proxies(tmp_path: Path) -> None:
    config = tmp_path / "httpdns.toml"
    config.write_text(
        f"""
store = "sqlite:///{tmp_path}/cfg.db"
zones = ["corp.test", "demo.example"]
demo = true
admin_token = "cfg-token"
trusted_proxies = ["127.0.0.1/32"]

[accounts."123456"]
secret = "abc"
require_signature = true

[accounts."777"]
secret = "def"
"""
    )
    with running_server(tmp_path, "--config", str(config)) as server:
        # accounts
        status, body = get(server, f"/123456/d?host={TRADE}")
        assert (status, body["code"]) == (403, "InvalidSignature")
        t = int(time.time()) + 300
        s = hashlib.md5(f"{TRADE}-abc-{t}".encode()).hexdigest()
        status, body = get(server, f"/123456/sign_d?host={TRADE}&t={t}&s={s}")
        assert status == 200, body
        assert body["ips"] and all(a.startswith("192.0.2.") for a in body["ips"])
        status, body = get(server, f"/777/d?host={TRADE}")
        assert status == 200 and body["ips"]
        status, body = get(server, f"/100000/d?host={TRADE}")
        assert (status, body["error"]) == (404, "not_found")  # only configured accounts exist
        # zones
        assert get(server, "/resolve?name=nope.corp.test")[1]["Status"] == 3
        assert get(server, "/resolve?name=nope.demo.example")[1]["Status"] == 3
        assert get(server, "/resolve?name=www.example.net")[1]["Status"] == 5
        # admin token
        body_ = {"kind": "cloud"}
        status, _ = http_json(f"{server.base}/api/v1/datacenters/edge", "PUT", body_)
        assert status == 401
        status, _ = http_json(
            f"{server.base}/api/v1/datacenters/edge",
            "PUT",
            body_,
            {"Authorization": "Bearer cfg-token"},
        )
        assert status == 201
        # trusted proxies
        req = urllib.request.Request(
            f"{server.base}/d?dn={TRADE}&clientip=1", headers={"X-Forwarded-For": "10.9.8.7"}
        )
        with OPENER.open(req, timeout=5) as resp:
            assert resp.read().decode().endswith("|10.9.8.7")


def test_flags_override_the_config_file(tmp_path: Path) -> None:
    config = tmp_path / "httpdns.toml"
    config.write_text(f'store = "sqlite:///{tmp_path}/a.db"\nadmin_token = "from-file"\n')
    with running_server(tmp_path, "--config", str(config), "--admin-token", "from-flag") as srv:
        status, _ = http_json(
            f"{srv.base}/api/v1/regions/r1",
            "PUT",
            {"cidrs": []},
            {"Authorization": "Bearer from-file"},
        )
        assert status == 401
        status, _ = http_json(
            f"{srv.base}/api/v1/regions/r1",
            "PUT",
            {"cidrs": []},
            {"Authorization": "Bearer from-flag"},
        )
        assert status == 201
