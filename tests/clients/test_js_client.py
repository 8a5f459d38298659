"""The JavaScript client: Node's test runner against a real server, and a page in
headless Chromium that resolves through the client.

The browser test serves the page and ``httpdns.mjs`` from a small aiohttp app that also
reverse-proxies the query routes to a server with DNSPod accounts (one origin), and records
what a direct cross-origin query gives (the query routes send
``Access-Control-Allow-Origin: *``). The Node run also gets that server and an HTTPS one
(its CA in ``NODE_EXTRA_CA_CERTS``, its key's pin) for ``clients/js/test/sdk.test.mjs``.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shutil
import signal
import subprocess
import urllib.request
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from .conftest import QUOTES, ROOT, TRADE, DemoServer, HttpsServer

JS = ROOT / "clients" / "js"
NODE = shutil.which("node")
CHROMIUM = next(
    (p for p in map(shutil.which, ("chromium", "chromium-browser", "google-chrome")) if p), None
)


@pytest.mark.skipif(NODE is None, reason="node is not installed")
def test_js_client_under_node(
    demo_server: DemoServer, dnspod_server: DemoServer, https_server: HttpsServer
) -> None:
    assert NODE is not None
    env = {
        **os.environ,
        "HTTPDNS_TEST_SERVER": demo_server.base,
        "HTTPDNS_TEST_DNSPOD_SERVER": dnspod_server.base,
        "HTTPDNS_TEST_HTTPS": https_server.url,
        "HTTPDNS_TEST_PIN": https_server.pin(),
        "NODE_EXTRA_CA_CERTS": str(https_server.ca_file),
        "NO_COLOR": "1",
    }
    proc = subprocess.run(
        [NODE, "--test", str(JS / "test") + "/"],
        capture_output=True,
        text=True,
        timeout=100,
        env=env,
        cwd=ROOT,
    )
    report = proc.stdout + proc.stderr
    assert proc.returncode == 0, report
    passed = re.search(r"^# pass (\d+)$", proc.stdout, re.MULTILINE)
    skipped = re.search(r"^# skipped (\d+)$", proc.stdout, re.MULTILINE)
    assert passed and int(passed.group(1)) >= 35, report
    assert skipped and skipped.group(1) == "0", report  # the server tests really ran


@pytest.fixture
async def page_origin(dnspod_server: DemoServer) -> AsyncIterator[str]:
    """One origin serving the test page, the module, and the query routes (proxied)."""
    session = aiohttp.ClientSession()

    async def page(request: web.Request) -> web.StreamResponse:
        return web.FileResponse(JS / "test" / "browser.html")

    async def module(request: web.Request) -> web.StreamResponse:
        body = (JS / "httpdns.mjs").read_bytes()
        return web.Response(body=body, content_type="text/javascript")

    async def proxy(request: web.Request) -> web.StreamResponse:
        async with session.get(dnspod_server.base + request.path_qs) as resp:
            return web.Response(
                body=await resp.read(), status=resp.status, content_type=resp.content_type
            )

    app = web.Application()
    app.router.add_get("/", page)
    app.router.add_get("/httpdns.mjs", module)
    app.router.add_get("/{tail:.*}", proxy)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}"
    finally:
        await runner.cleanup()
        await session.close()


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed")
async def test_js_client_in_headless_chromium(
    demo_server: DemoServer, dnspod_server: DemoServer, page_origin: str, tmp_path: Path
) -> None:
    assert CHROMIUM is not None
    url = f"{page_origin}/?direct={demo_server.base}"
    cmd = [
        CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        "--no-first-run", f"--user-data-dir={tmp_path / 'chromium'}",
        "--virtual-time-budget=5000", "--dump-dom", url,
    ]  # fmt: skip
    proc = await asyncio.create_subprocess_exec(
        *cmd,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        start_new_session=True,
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(), 40)
    finally:
        if proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            await proc.wait()
    dom = out.decode(errors="replace")
    assert proc.returncode == 0, err.decode(errors="replace")[-2000:]

    # The same query from the same peer (127.0.0.1) gives the same steered answer.
    def plain(query: str) -> str:
        with urllib.request.urlopen(f"{dnspod_server.base}/d?{query}", timeout=5) as resp:
            return str(resp.read().decode())

    expected = plain(f"dn={QUOTES}").replace(";", ",")
    found = re.search(r'<pre id="out">(.*?)</pre>', dom)
    assert found, dom
    assert found.group(1) == f"ok {expected} server cache null requests=2", dom

    # The encrypted dialect (DES in JS, AES with WebCrypto), resolveBoth preferring IPv6,
    # a localStorage cache restored by a new client whose server is dead, the fallback
    # hook, networkChanged re-resolving the two names in use.
    v4, _, v6 = plain(f"dn={QUOTES}&type=addrs").partition("-")
    both = ",".join(v6.split(";") + v4.split(";"))
    trade = plain(f"dn={TRADE}").replace(";", ",")
    sdk = re.search(r'<pre id="sdk">(.*?)</pre>', dom)
    assert sdk, dom
    assert sdk.group(1) == (
        f"ok des={expected} aes={expected} both={both} stored=cache:{trade} "
        "fallback=system:192.0.2.99 hot=2"
    ), dom

    # Cross-origin, straight to the server: blocked until it sends CORS headers.
    direct = re.search(r'<pre id="direct">(.*?)</pre>', dom)
    assert direct and direct.group(1).startswith(("ok ", "null ")), dom
