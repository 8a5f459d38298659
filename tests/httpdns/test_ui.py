"""The ops console at ``/ui`` in a real browser: Playwright for Python driving Debian's
chromium against a real ``httpdns serve`` subprocess (SQLite store, the deployer's routes).

Screenshots go to the test artifacts (``$HTTPDNS_ARTIFACTS``, else pytest's temporary
directory); with ``HTTPDNS_UPDATE_SCREENSHOTS=1`` the run also rewrites the README's
pictures ``docs/console-service.png`` and ``docs/console-rollout.png``.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import threading
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, ConsoleMessage, Page, expect, sync_playwright

from tests.deployer.fakes import spec
from tests.servers import Node, seed_test_registry, seeded_node, wait_until

from .conftest import PAY, SHOP

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
AXE = Path(__file__).parent / "vendor" / "axe-core" / "axe.min.js"
TOKEN = "T"


def api(node: Node, method: str, path: str, body: Any = None, token: str | None = TOKEN) -> Any:
    """One admin call (raises on a non-2xx answer)."""
    data = None if body is None else json.dumps(body).encode()
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    req = urllib.request.Request(node.url + path, data=data, method=method, headers=headers)
    with urllib.request.urlopen(req, timeout=10) as resp:
        return json.loads(resp.read())


def traffic(node: Node, name: str = SHOP) -> dict[str, dict[str, int]]:
    return api(node, "GET", "/api/v1/state")["services"][name]["traffic"]  # type: ignore[no-any-return]


@pytest.fixture
def node(tmp_path: Path) -> Iterator[Node]:
    with seeded_node(tmp_path, TOKEN, ("--zone", "example.org")) as n:
        yield n


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Browser]:
    if not Path(CHROMIUM).exists():
        pytest.fail("chromium is not installed (scripts/install installs it)")
    with sync_playwright() as p:
        b = p.chromium.launch(
            executable_path=CHROMIUM,
            headless=True,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage"],
        )  # fmt: skip
        try:
            yield b
        finally:
            b.close()


@pytest.fixture
def artifacts(tmp_path_factory: pytest.TempPathFactory) -> Path:
    where = os.environ.get("HTTPDNS_ARTIFACTS")
    path = Path(where) if where else tmp_path_factory.getbasetemp() / "console"
    path.mkdir(parents=True, exist_ok=True)
    return path


# The console learns what a token may change by a POST with no body, refused before
# anything is written (400 when admitted, 401/403 otherwise): the browser logs those answers.
PROBES = ("/api/v1/traffic/shift", "/api/v1/rollouts/-/pause", "/api/v1/registry/revert")


class Console:
    """A page with its browser errors collected (console errors and uncaught exceptions),
    except the refused answers of ``PROBES`` and of the paths a test expects refused."""

    def __init__(self, page: Page) -> None:
        self.page = page
        self.errors: list[str] = []
        self.refused: set[str] = set(PROBES)
        page.on("console", self._console)
        page.on("pageerror", lambda exc: self.errors.append(f"pageerror: {exc}"))

    def _console(self, msg: ConsoleMessage) -> None:
        if msg.type != "error":
            return
        url = urllib.parse.urlsplit(msg.location.get("url", "")).path
        if msg.text.startswith("Failed to load resource") and url in self.refused:
            return
        self.errors.append(f"console: {msg.text} ({url})")


@pytest.fixture
def console(browser: Browser) -> Iterator[Console]:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.set_default_timeout(15_000)  # a busy CI machine: conditions, not sleeps
    expect.set_options(timeout=15_000)
    c = Console(page)
    try:
        yield c
        assert c.errors == []
    finally:
        context.close()


def sign_in(page: Page, node: Node, token: str = TOKEN) -> None:
    page.goto(node.url + "/ui")
    page.get_by_label("Admin token").fill(token)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("heading", name="Overview")).to_be_visible()
    expect(page.locator("#live")).to_have_text("Live")


def shot(page: Page, artifacts: Path, name: str) -> None:
    path = artifacts / name
    page.evaluate("window.scrollTo(0, 0)")
    page.screenshot(path=str(path))  # the first screen, as an operator sees it
    assert path.stat().st_size > 10_000
    if os.environ.get("HTTPDNS_UPDATE_SCREENSHOTS") == "1":
        shutil.copyfile(path, ROOT / "docs" / name)


def feature(node: Node, method: str, path: str, param: str | None = None) -> bool:
    """Whether the node's OpenAPI document has this operation (and query parameter)."""
    doc = api(node, "GET", "/api/v1/openapi.json", token=None)
    op = doc["paths"].get(path, {}).get(method.lower())
    if op is None or param is None:
        return op is not None
    return any(p["name"] == param for p in op.get("parameters", []))


# -- the assets ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "path", ["/ui", "/ui/", "/ui/app.js", "/ui/api.js", "/ui/views.js", "/ui/app.css"]
)
def test_assets_are_served_same_origin_with_a_strict_policy(node: Node, path: str) -> None:
    with urllib.request.urlopen(node.url + path, timeout=5) as resp:
        body = resp.read()
        headers = resp.headers
    assert resp.status == 200 and body
    csp = headers["Content-Security-Policy"]
    assert "default-src 'self'" in csp and "script-src 'self'" in csp and "unsafe" not in csp
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert "Access-Control-Allow-Origin" not in headers
    expected = {"js": "text/javascript", "css": "text/css"}.get(
        path.rsplit(".", 1)[-1], "text/html"
    )
    assert headers["Content-Type"].startswith(expected)
    if path.startswith("/ui/") and path.endswith(".js"):
        # Nothing from other hosts: no module, fetch or stylesheet names an absolute URL.
        assert not re.search(rb"""(from|import|fetch\(|href=|src=)\s*["'`]https?:""", body)


def test_admin_routes_answer_without_cors_and_unknown_assets_are_404(node: Node) -> None:
    req = urllib.request.Request(node.url + "/api/v1/state", headers={
        "Authorization": f"Bearer {TOKEN}", "Origin": "https://evil.example"})  # fmt: skip
    with urllib.request.urlopen(req, timeout=5) as resp:
        assert "Access-Control-Allow-Origin" not in resp.headers
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(node.url + "/ui/../api/v1/state", timeout=5)
    assert err.value.code in (401, 404)
    err.value.close()
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(node.url + "/ui/secrets.txt", timeout=5)
    assert err.value.code == 404
    err.value.close()


# -- the page ---------------------------------------------------------------------------------


def test_a_wrong_token_is_refused_in_words_next_to_the_field(node: Node, console: Console) -> None:
    page = console.page
    console.refused.add("/api/v1/state")
    page.goto(node.url + "/ui")
    page.get_by_label("Admin token").fill("wrong")
    page.get_by_role("button", name="Sign in").click()
    expect(page.locator("#signin-error")).to_have_text("unknown token")
    assert page.evaluate("sessionStorage.getItem('httpdns.token')") is None
    assert page.context.cookies() == []


def test_overview_lists_datacenters_nodes_and_services(node: Node, console: Console) -> None:
    page = console.page
    sign_in(page, node)
    dcs = page.get_by_role("region", name="Datacenters")
    expect(dcs.get_by_role("row", name="cloud cloud read-only serving")).to_be_visible()
    expect(
        page.get_by_role(
            "img",
            name="Configured share of the default region over all services: cloud 50 %, idc 50 %",
        )
    ).to_be_visible()
    expect(page.get_by_role("region", name="Global share")).to_contain_text(
        "Observed: no answers in the last 60 s"
    )
    nodes = page.get_by_role("region", name="Nodes")
    expect(nodes.get_by_role("cell", name="ok", exact=True)).to_have_count(1)
    services = page.get_by_role("region", name="Services")
    expect(services.get_by_role("link", name=SHOP)).to_be_visible()
    # Clients ask; the next live update shows what the fleet answered beside the configured.
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    for i in range(100):
        with opener.open(f"{node.url}/d?dn={SHOP}&ip=10.4.{i}.1", timeout=5) as r:
            assert r.read()
    wait_until(lambda: api(node, "GET", "/api/v1/shares?window=60s")["answers"] >= 100, 20,
               "the answers in the fleet's shares")  # fmt: skip
    # A service that loses its last healthy endpoint stands out as answering empty.
    state = api(node, "GET", "/api/v1/state")
    for eid, ep in state["services"][PAY]["endpoints"].items():
        body = {k: ep[k] for k in ("dc", "address", "port", "version", "weight")}
        api(
            node,
            "PUT",
            f"/api/v1/services/{PAY}/endpoints/{eid}?force=1",
            {**body, "healthy": False},
        )
    expect(services.get_by_role("row", name=f"{PAY}")).to_contain_text(
        "answering empty", timeout=2000
    )
    observed = page.get_by_role(
        "img", name=re.compile(r"^Observed share of answers over all services, last 60 s: ")
    )
    label = observed.get_attribute("aria-label") or ""
    shares = dict(re.findall(r"(cloud|idc) (\d+(?:\.\d+)?) %", label))
    assert set(shares) == {"cloud", "idc"} and 20 < float(shares["idc"]) < 80, label


def test_preview_and_apply_a_split_changes_the_registry_only_after_confirm(
    node: Node, console: Console, artifacts: Path
) -> None:
    page = console.page
    sign_in(page, node)
    page.get_by_role("link", name=SHOP).click()
    expect(page.get_by_role("heading", name=SHOP, level=1)).to_be_visible()
    weights = page.locator("#weights")
    expect(weights).not_to_contain_text("null")
    default = weights.get_by_role("group", name="Region default")
    default.get_by_label("idc", exact=True).fill("70")
    default.get_by_label("cloud", exact=True).fill("30")
    assert feature(node, "PUT", "/api/v1/services/{name}/traffic", "dry_run")  # the Preview
    page.get_by_role("button", name="Preview").click()
    expect(page.locator("#preview")).to_contain_text("Clients whose answer would change")
    # Measured on the node's client sample: close to the weights, not exactly them.
    after = page.get_by_role("img", name=re.compile(r"^default after: cloud \d"))
    label = after.get_attribute("aria-label") or ""
    cloud, idc = (float(x) for x in re.findall(r"(\d+(?:\.\d+)?) %", label))
    assert abs(cloud - 30) < 5 and abs(idc - 70) < 5, label
    moved = page.locator("#preview").get_by_text(re.compile("^Clients whose answer"))
    share = float(re.findall(r"(\d+(?:\.\d+)?) %", moved.text_content() or "")[0])
    assert 10 < share < 30, share  # 50/50 -> 70/30 moves about a fifth of the clients
    before = traffic(node)
    page.get_by_role("button", name="Apply", exact=True).click()
    dialog = page.get_by_role("dialog")
    expect(dialog).to_be_visible()
    expect(dialog).to_contain_text("default: cloud 30, idc 70")
    assert traffic(node) == before  # nothing written before Confirm
    shot(page, artifacts, "console-service.png")
    dialog.get_by_role("button", name="Confirm").click()
    wait_until(lambda: traffic(node)["default"] == {"idc": 70, "cloud": 30}, 5, "the new split")
    expect(dialog).to_be_hidden()
    expect(page.get_by_role("img", name="default split: cloud 30 %, idc 70 %")).to_be_visible()


def test_cancel_and_escape_write_nothing(node: Node, console: Console) -> None:
    page = console.page
    sign_in(page, node)
    page.goto(f"{node.url}/ui#/service/{SHOP}")
    page.locator("#weights").get_by_role("group", name="Region default").get_by_label(
        "idc", exact=True
    ).fill("1")
    before = traffic(node)
    apply = page.get_by_role("button", name="Apply", exact=True)
    apply.click()
    page.get_by_role("dialog").get_by_role("button", name="Cancel").click()
    apply.focus()
    page.keyboard.press("Enter")
    expect(page.get_by_role("dialog")).to_be_visible()
    expect(page.get_by_role("button", name="Confirm")).to_be_focused()
    page.keyboard.press("Escape")
    expect(page.get_by_role("dialog")).to_be_hidden()
    expect(apply).to_be_focused()  # focus goes back to the control that opened it
    assert traffic(node) == before


def test_an_api_error_is_shown_next_to_the_control(node: Node, console: Console) -> None:
    page = console.page
    console.refused.add(f"/api/v1/services/{SHOP}/traffic")
    sign_in(page, node)
    page.goto(f"{node.url}/ui#/service/{SHOP}")
    region = page.locator("#weights").get_by_role("group", name="Region default")
    region.get_by_label("idc", exact=True).fill("0")
    region.get_by_label("cloud", exact=True).fill("0")
    page.get_by_role("button", name="Apply", exact=True).click()
    page.get_by_role("button", name="Confirm").click()
    error = page.locator("#traffic-error")
    expect(error).not_to_be_empty()
    assert "HTTP" not in (error.text_content() or "")  # the API's words, not a status code


def test_a_change_through_the_api_shows_without_a_reload(node: Node, console: Console) -> None:
    page = console.page
    sign_in(page, node)
    page.get_by_role("link", name=SHOP).click()
    marker = page.evaluate("window.__marker = Math.random()")
    # Work in progress on the page: an explain answer and a weight being typed.
    page.get_by_label("Client IP").fill("203.0.113.7")
    page.get_by_role("button", name="Explain").click()
    explained = page.locator("#explain-out")
    expect(explained).to_contain_text("region")
    mobile = page.locator("#weights").get_by_role("group", name="Region mobile")
    mobile.get_by_label("idc", exact=True).fill("5")
    api(node, "PUT", f"/api/v1/services/{SHOP}/traffic",
        {"default": {"idc": 20, "cloud": 80}, "mobile": {"idc": 0, "cloud": 100}})  # fmt: skip
    expect(page.get_by_role("img", name="default split: cloud 80 %, idc 20 %")).to_be_visible(
        timeout=1000
    )
    assert page.evaluate("window.__marker") == marker  # the same page: no reload
    expect(mobile.get_by_label("idc", exact=True)).to_have_value("5")  # kept while typing
    expect(page.get_by_label("Client IP")).to_have_value("203.0.113.7")
    expect(explained).to_contain_text("region")


def test_the_page_says_when_the_stream_is_lost_and_reconnects(
    tmp_path: Path, console: Console
) -> None:
    n = Node(f"sqlite:///{tmp_path}/r.db", tmp_path / "n", token=TOKEN).start()
    try:
        seed_test_registry(n.url)
        page = console.page
        # While the node is away the stream, and a reload that raced its stop, are refused.
        console.refused |= {f"/api/v1/{p}" for p in ("events", "state", "nodes", "rollouts")}
        sign_in(page, n)
        port = n.port
        n.stop()
        expect(page.locator("#live")).to_contain_text("Live updates lost")
        n2 = Node(f"sqlite:///{tmp_path}/r.db", tmp_path / "n", token=TOKEN)
        n2.port = port
        n2.start()
        try:
            expect(page.locator("#live")).to_have_text("Live", timeout=10_000)
        finally:
            n2.stop()
    finally:
        n.stop()


REL = "rel.example.org"  # released by the node's own controller on memory engines


@pytest.fixture
def prober_port() -> Iterator[int]:
    """A TCP port that accepts on every local address: the memory engine's containers get
    loopback addresses (127.0.1.x, 127.0.2.x), and the controller's real TCP probes of
    them land here."""
    server = socket.create_server(("0.0.0.0", 0))
    server.settimeout(0.2)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except TimeoutError:
                continue
            conn.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield server.getsockname()[1]
    finally:
        stop.set()
        thread.join(5)
        server.close()


@pytest.fixture
def controlled(tmp_path: Path, prober_port: int) -> Iterator[tuple[Node, int]]:
    """A node running the rollout controller (``serve --controller``), with ``REL`` at v1
    released by it on memory engines."""
    n = Node(f"sqlite:///{tmp_path}/r.db", tmp_path, token=TOKEN, args=("--controller",))
    n.start()
    try:
        seed_test_registry(n.url)
        api(n, "PUT", f"/api/v1/services/{REL}",
            {"access": "ro", "ttl": 1, "traffic": {"default": {"idc": 50, "cloud": 50}}})  # fmt: skip
        api(n, "POST", f"/api/v1/rollouts/{REL}", release(prober_port, "v1", []))
        wait_until(lambda: rollout(n)["phase"] == "done", 30, "v1 released by the controller")
        yield n, prober_port
        log = n.log.read_text(errors="replace")
        assert "Traceback" not in log, log[-3000:]
    finally:
        n.stop()


def release(port: int, version: str, steps: list[dict[str, Any]]) -> dict[str, Any]:
    """A deploy body for ``REL``: one container per datacenter on memory engines, probed
    by TCP at ``port``."""
    s = spec(version, service=REL, port=port, replicas={"idc": 1, "cloud": 1}, steps=steps,
             health={"tcp": True, "interval": "0.2s", "timeout": "0.5s", "rise": 2, "fall": 2,
                     "deadline": "30s"},
             rollout={"propagation": "0.5s", "bake": "0s"},
             datacenters={"idc": {"pool": "127.0.1.10-127.0.1.20"},
                          "cloud": {"pool": "127.0.2.10-127.0.2.20"}})  # fmt: skip
    return {"version": version, "spec": s.to_dict()}


def rollout(node: Node) -> dict[str, Any]:
    return api(node, "GET", f"/api/v1/rollouts/{REL}")["rollout"]  # type: ignore[no-any-return]


def test_promote_pause_and_abort_a_rollout_the_controller_carries_out(
    controlled: tuple[Node, int], console: Console, artifacts: Path
) -> None:
    node, port = controlled
    page = console.page
    steps = [{"percent": 10, "pause": "manual"}, {"percent": 50, "pause": "manual"}]
    api(node, "POST", f"/api/v1/rollouts/{REL}", release(port, "v2", steps))
    sign_in(page, node)
    page.get_by_role("link", name="Rollouts").click()
    card = page.locator(f"section[data-service='{REL}']")
    expect(card.get_by_role("heading", level=2)).to_have_text(f"{REL} → v2")
    expect(card).to_contain_text("phase canary · step 1 of 2 · canary 10 %", timeout=30_000)
    card.get_by_role("button", name=f"Promote {REL}").click()
    page.get_by_role("dialog").get_by_role("button", name="Confirm").click()
    wait_until(lambda: rollout(node)["percent"] == 50, 15, "the controller at the 50 % step")
    expect(card).to_contain_text("canary 50 %")
    expect(card.get_by_role("progressbar", name="Canary progress")).to_have_attribute("value", "50")
    expect(card.get_by_role("row", name="idc 1 / 1")).to_be_visible()
    # Clients ask: the fleet's answers per version show on the rollout's time chart.
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    for i in range(400):
        with opener.open(f"{node.url}/d?dn={REL}&ip=10.5.{i // 250}.{i % 250}", timeout=5) as r:
            assert r.read()

    def published() -> bool:
        doc = api(node, "GET", f"/api/v1/services/{REL}/shares?window=60s")
        return bool(doc["answers"] >= 400)

    wait_until(published, 20, "the answers in the fleet's shares")
    chart_ = card.get_by_role("img", name=re.compile(rf"^Share of v2 in {REL} over time"))
    expect(chart_).to_have_attribute(
        "aria-label",
        re.compile(r"configured 50 %, observed \d+(\.\d+)? % of answers"),
        timeout=15_000,
    )
    observed = float(
        re.findall(r"observed (\d+(?:\.\d+)?) %", chart_.get_attribute("aria-label") or "")[0]
    )
    assert 25 < observed < 75, observed  # 400 client /24s, half of them in the canary
    card.get_by_role("button", name=f"Pause {REL}").click()
    page.get_by_role("dialog").get_by_role("button", name="Confirm").click()
    wait_until(lambda: rollout(node)["paused"], 5, "paused")
    expect(card).to_contain_text("(paused)", timeout=1000)
    shot(page, artifacts, "console-rollout.png")
    card.get_by_role("button", name=f"Abort {REL}").click()
    page.get_by_role("dialog").get_by_role("button", name="Confirm").click()
    # The controller carries the abort out: stable again, the v2 containers deregistered.
    wait_until(lambda: rollout(node)["phase"] == "aborted", 30, "the controller to abort")
    expect(card).to_contain_text("phase aborted", timeout=2000)
    state = api(node, "GET", "/api/v1/state")["services"][REL]
    assert state["release"]["stable"] == "v1" and not state["release"].get("canary")
    assert {e["version"] for e in state["endpoints"].values()} == {"v1"}
    # The next rollout lists this one among the earlier ones.
    api(node, "POST", f"/api/v1/rollouts/{REL}", release(port, "v3", steps))
    expect(card.get_by_role("heading", level=2)).to_have_text(f"{REL} → v3", timeout=5000)
    expect(card.get_by_role("listitem").filter(has_text="v2 (from v1)")).to_have_count(1)


def test_revert_from_history(node: Node, console: Console) -> None:
    page = console.page
    before = traffic(node)
    done = api(
        node, "PUT", f"/api/v1/services/{SHOP}/traffic", {"default": {"idc": 5, "cloud": 95}}
    )
    sign_in(page, node)
    page.goto(f"{node.url}/ui#/service/{SHOP}")
    history = page.get_by_role("region", name="History")
    entry = history.locator(f"li[data-revision='{done['revision']}']")
    expect(entry).to_contain_text('"idc":5')
    entry.get_by_role("button", name=f"Revert to before revision {done['revision']}").click()
    dialog = page.get_by_role("dialog")
    expect(dialog).to_contain_text(f"revision {done['revision'] - 1}")
    # The preview (a dry run of the revert): the split it brings back and who would move.
    expect(dialog).to_contain_text("Clients whose answer would change")
    back = dialog.get_by_role("img", name=re.compile(r"^default after: cloud \d"))
    cloud = float(re.findall(r"cloud (\d+(?:\.\d+)?) %", back.get_attribute("aria-label") or "")[0])
    assert abs(cloud - 50) < 5, cloud  # 5/95 back to 50/50
    assert traffic(node)["default"] == {"idc": 5, "cloud": 95}
    dialog.get_by_role("button", name="Confirm").click()
    wait_until(lambda: traffic(node) == before, 5, "the reverted split")


def test_without_write_rights_no_write_buttons(tmp_path: Path, console: Console) -> None:
    """A node with no admin token: reads open, writes refused — the page says why."""
    n = Node(f"sqlite:///{tmp_path}/r.db", tmp_path, token=TOKEN).start()
    seed_test_registry(n.url)
    n.stop()
    ro = Node(f"sqlite:///{tmp_path}/r.db", tmp_path / "ro", token="")
    ro.start()
    try:
        page = console.page
        page.goto(ro.url + "/ui")
        page.get_by_role("button", name="Sign in").click()
        expect(page.get_by_role("heading", name="Overview")).to_be_visible()
        page.get_by_role("link", name=SHOP).click()
        expect(page.get_by_role("heading", name=SHOP, level=1)).to_be_visible()
        for name in ("Apply", "Preview", "Apply release"):
            expect(page.get_by_role("button", name=name, exact=True)).to_have_count(0)
        expect(page.locator("#weights")).to_contain_text("Read-only:")
        expect(page.locator("#weights input").first).to_be_disabled()
        page.get_by_role("link", name="Rollouts").click()
        expect(page.get_by_role("button", name="Pause")).to_have_count(0)
    finally:
        ro.stop()


# -- accessibility and layout ---------------------------------------------------------------------


def axe_violations(page: Page) -> list[dict[str, Any]]:
    """Serious and critical axe-core violations on the page as it is now."""
    page.evaluate(AXE.read_text())  # through the driver: the page's CSP forbids inline script
    result = page.evaluate("axe.run(document, {resultTypes: ['violations']})")
    return [
        {"id": v["id"], "impact": v["impact"], "nodes": [n["target"] for n in v["nodes"]][:5]}
        for v in result["violations"]
        if v["impact"] in ("serious", "critical")
    ]


@pytest.mark.parametrize("width", [1280, 390])
def test_no_serious_accessibility_violations(
    node: Node, browser: Browser, width: int, artifacts: Path
) -> None:
    api(
        node,
        "POST",
        f"/api/v1/rollouts/{SHOP}",
        {"version": "v3", "spec": spec("v3", service=SHOP).to_dict()},
    )
    context = browser.new_context(viewport={"width": width, "height": 900})
    try:
        page = context.new_page()
        errors = Console(page).errors
        page.goto(node.url + "/ui")
        assert axe_violations(page) == []
        sign_in(page, node)
        for hash_ in ("#/", f"#/service/{SHOP}", "#/rollouts"):
            page.goto(f"{node.url}/ui{hash_}")
            page.wait_for_selector("main h1")
            expect(page.locator("#live")).to_have_text("Live")
            assert axe_violations(page) == [], hash_
            # Nothing wider than the screen: tables scroll inside their own box.
            assert page.evaluate("document.documentElement.scrollWidth <= innerWidth + 1"), hash_
        page.goto(f"{node.url}/ui#/service/{SHOP}")
        page.wait_for_selector("main h1")
        page.screenshot(path=str(artifacts / f"console-service-{width}.png"), full_page=True)
        assert errors == []
    finally:
        context.close()


@pytest.fixture
def roles_node(tmp_path: Path) -> Iterator[Node]:
    """A node with a read token and an ops token besides the admin one."""
    conf = tmp_path / "httpdns.toml"
    conf.write_text('[tokens.viewer]\nrole = "read"\nsecret = "viewer-secret"\n\n'
                    '[tokens.oncall]\nrole = "ops"\nsecret = "oncall-secret"\n')  # fmt: skip
    n = Node(f"sqlite:///{tmp_path}/r.db", tmp_path, token=TOKEN, args=("--config", str(conf)))
    n.start()
    try:
        seed_test_registry(n.url)
        api(
            n,
            "POST",
            f"/api/v1/rollouts/{SHOP}",
            {"version": "v3", "spec": spec("v3", service=SHOP).to_dict()},
        )
        yield n
    finally:
        n.stop()


WRITES = ("Apply", "Preview", "Apply release")


def test_a_read_only_token_sees_no_write_buttons(roles_node: Node, console: Console) -> None:
    page = console.page
    sign_in(page, roles_node, token="viewer-secret")
    page.get_by_role("link", name=SHOP).click()
    expect(page.get_by_role("heading", name=SHOP, level=1)).to_be_visible()
    expect(page.locator("#history li").first).to_be_visible()
    for name in WRITES:
        expect(page.get_by_role("button", name=name, exact=True)).to_have_count(0)
    expect(page.get_by_role("button", name=re.compile("^Revert"))).to_have_count(0)
    expect(page.locator("#weights")).to_contain_text("needs the ops role")
    expect(page.locator("#weights input").first).to_be_disabled()
    expect(page.get_by_role("button", name="Explain")).to_be_enabled()  # reads stay usable
    page.get_by_role("link", name="Rollouts").click()
    expect(page.get_by_role("heading", name=f"{SHOP} → v3")).to_be_visible()
    expect(page.get_by_role("button", name=re.compile("^(Pause|Abort|Promote)"))).to_have_count(0)
    expect(page.locator("main")).to_contain_text("needs the deployer role")


def test_an_ops_token_may_change_traffic_but_not_rollouts_or_revert(
    roles_node: Node, console: Console
) -> None:
    page = console.page
    sign_in(page, roles_node, token="oncall-secret")
    page.get_by_role("link", name=SHOP).click()
    for name in WRITES:
        expect(page.get_by_role("button", name=name, exact=True)).to_have_count(1)
    expect(page.locator("#history")).to_contain_text("needs the admin role")
    expect(page.get_by_role("button", name=re.compile("^Revert"))).to_have_count(0)
    page.get_by_role("link", name="Rollouts").click()
    expect(page.get_by_role("button", name=re.compile("^Pause"))).to_have_count(0)
