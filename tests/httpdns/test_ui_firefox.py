"""The ops console in Firefox: Debian's ``firefox-esr`` driven through Marionette (its own
remote protocol; Playwright's Firefox needs a patched build that cannot be downloaded
here), against a real ``httpdns serve`` subprocess.

The Chromium tests (``test_ui.py``) cover the console in depth; this module checks that
the same page works in Firefox: the ES modules load under the strict CSP, sign-in,
a split previewed and applied only after Confirm, a change made through the API shown
without a reload (the event stream read with ``fetch``), and no page wider than the
narrowest window headless Firefox opens (500 CSS px; the Chromium tests use 390 px).
"""

from __future__ import annotations

import json
import shutil
import urllib.request
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.servers import Node, seeded_node, wait_until

from .conftest import SHOP

with warnings.catch_warnings():  # mozinfo warns about its use of ``distro`` on import
    warnings.simplefilter("ignore", DeprecationWarning)
    from marionette_driver.marionette import Marionette

FIREFOX = shutil.which("firefox-esr") or shutil.which("firefox") or "/usr/bin/firefox-esr"
TOKEN = "T"
NARROW = 500  # CSS px: headless Firefox opens no narrower window
# marionette_driver leaves the socket of its port probe open (an unraisable ResourceWarning)
pytestmark = pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")


def api(node: Node, method: str, path: str, body: Any = None) -> Any:
    data = None if body is None else json.dumps(body).encode()
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {TOKEN}"}
    req = urllib.request.Request(node.url + path, data=data, method=method, headers=headers)
    with urllib.request.urlopen(req, timeout=10) as resp:
        return json.loads(resp.read())


def traffic(node: Node) -> dict[str, dict[str, int]]:
    return api(node, "GET", "/api/v1/state")["services"][SHOP]["traffic"]  # type: ignore[no-any-return]


@pytest.fixture
def node(tmp_path: Path) -> Iterator[Node]:
    with seeded_node(tmp_path, TOKEN) as n:
        yield n


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[Marionette]:
    if not Path(FIREFOX).exists():
        pytest.fail("firefox-esr is not installed (scripts/install installs it)")
    m = Marionette(bin=FIREFOX, headless=True, startup_timeout=120,
                   gecko_log=str(tmp_path / "gecko.log"))  # fmt: skip
    m.start_session()
    try:
        m.set_window_rect(width=1280, height=900)
        yield m
    finally:
        m.delete_session()
        m.cleanup()


def js(m: Marionette, script: str, *args: Any) -> Any:
    """Run ``script`` (a function body) in the page; its return value."""
    return m.execute_script(script, script_args=args, sandbox=None)


def until(m: Marionette, check: Callable[[], Any], what: str, timeout: float = 15.0) -> None:
    wait_until(check, timeout, what)


def collect_errors(m: Marionette) -> None:
    """Keep the page's uncaught errors in ``window.__errors`` (after load: a module that
    failed to load shows as a page that never signs in)."""
    js(
        m,
        """window.__errors = [];
             window.addEventListener('error', (e) => window.__errors.push(String(e.message)));
             window.addEventListener('unhandledrejection',
                                     (e) => window.__errors.push(String(e.reason)));""",
    )


def sign_in(m: Marionette, node: Node) -> None:
    m.navigate(node.url + "/ui")
    until(m, lambda: js(m, "return !!document.getElementById('token')"), "the sign-in form")
    collect_errors(m)
    label = js(m, "return document.querySelector('label[for=token]').textContent")
    assert label == "Admin token"
    js(m, "document.getElementById('token').value = arguments[0];"
          "document.querySelector('form.signin button[type=submit]').click()", TOKEN)  # fmt: skip
    until(m, lambda: js(m, "return document.querySelector('main h1')?.textContent") == "Overview",
          "the overview")  # fmt: skip
    until(m, lambda: js(m, "return document.getElementById('live').textContent") == "Live",
          "the live stream")  # fmt: skip
    assert js(m, "return sessionStorage.getItem('httpdns.token')") == TOKEN
    assert js(m, "return document.cookie") == ""


def test_sign_in_preview_apply_and_live_updates(node: Node, browser: Marionette) -> None:
    m = browser
    sign_in(m, node)
    m.navigate(f"{node.url}/ui#/service/{SHOP}")
    until(m, lambda: js(m, "return !!document.getElementById('w-default-idc')"), "the weights")
    labels = js(m, "return [...document.querySelectorAll('#weights fieldset')][0]"
                   ".querySelectorAll('label').length")  # fmt: skip
    assert labels == 2
    assert js(m, "return document.querySelector('label[for=w-default-idc]').textContent") == "idc"
    js(
        m,
        """for (const [id, v] of [['w-default-idc', '70'], ['w-default-cloud', '30']]) {
               const el = document.getElementById(id);
               el.value = v; el.dispatchEvent(new Event('input', {bubbles: true}));
             }
             [...document.querySelectorAll('#weights button')]
               .find((b) => b.textContent === 'Preview').click();""",
    )
    until(m, lambda: "Clients whose answer would change"
          in js(m, "return document.getElementById('preview').textContent"), "the preview")  # fmt: skip
    before = traffic(node)
    js(m, "[...document.querySelectorAll('#weights button')]"
          ".find((b) => b.textContent === 'Apply').click()")  # fmt: skip
    until(m, lambda: js(m, "return document.getElementById('confirm').open"), "the dialog")
    assert "default: cloud 30, idc 70" in js(m, "return document.getElementById('confirm-body')"
                                                ".textContent")  # fmt: skip
    assert traffic(node) == before  # nothing written before Confirm
    js(m, "document.getElementById('confirm-ok').click()")
    wait_until(lambda: traffic(node)["default"] == {"idc": 70, "cloud": 30}, 5, "the new split")
    # A change made elsewhere shows without a reload (the page keeps its marker).
    js(m, "window.__marker = 42")
    api(node, "PUT", f"/api/v1/services/{SHOP}/traffic",
        {"default": {"idc": 20, "cloud": 80}, "mobile": {"idc": 0, "cloud": 100}})  # fmt: skip
    until(m, lambda: js(m, "return !!document.querySelector("
                           "'[aria-label=\"default split: cloud 80 %, idc 20 %\"]')"),
          "the change through the API", timeout=5)  # fmt: skip
    assert js(m, "return window.__marker") == 42
    assert js(m, "return window.__errors") == []


def test_no_page_is_wider_than_a_narrow_window(node: Node, browser: Marionette) -> None:
    m = browser
    m.set_window_rect(width=NARROW, height=900)
    sign_in(m, node)
    assert js(m, "return innerWidth") <= NARROW
    for hash_ in ("#/", f"#/service/{SHOP}", "#/rollouts"):
        m.navigate(f"{node.url}/ui{hash_}")
        until(m, lambda: js(m, "return !!document.querySelector('main h1')"), hash_)
        until(m, lambda: js(m, "return document.getElementById('live').textContent") == "Live",
              f"{hash_} live")  # fmt: skip
        assert js(m, "return document.documentElement.scrollWidth <= innerWidth + 1"), hash_
    assert js(m, "return window.__errors") == []
