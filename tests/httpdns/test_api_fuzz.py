"""Property tests of a real node's HTTP surface: schemathesis drives every operation of
the served OpenAPI document, hypothesis throws arbitrary JSON at every admin body and
arbitrary parameters at every query dialect. Not one answer may be a 5xx, and the node's
log may hold no traceback (issue 11)."""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from httpdns.admin import ADMIN_ROUTES
from httpdns.routes import QUERY_ROUTES
from tests.servers import Node, seed_test_registry

from .conftest import SHOP

SETTINGS = settings(
    max_examples=25, deadline=None, database=None, suppress_health_check=list(HealthCheck)
)
ADMIN = {"Authorization": "Bearer T"}


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Node]:
    tmp = tmp_path_factory.mktemp("apifuzz")
    n = Node(f"sqlite:///{tmp}/r.db", tmp, args=("--zone", "example.org"))
    n.start()
    try:
        seed_test_registry(n.url)
        yield n
        log = Path(n.log).read_text(errors="replace")
        assert "Traceback" not in log and "internal error" not in log, log[-3000:]
    finally:
        n.stop()


def call(
    node: Node,
    method: str,
    path: str,
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, bytes]:
    req = urllib.request.Request(node.url + path, data=body, method=method, headers=headers or {})
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(req, timeout=10) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        with exc:
            return exc.code, exc.read()


def test_every_openapi_operation_survives_schemathesis(node: Node) -> None:
    schema = schemathesis.openapi.from_url(node.url + "/api/v1/openapi.json")
    operations = [r.ok() for r in schema.get_all_operations()]
    assert len(operations) >= 15
    seen: list[int] = []
    for op in operations:

        @SETTINGS
        @given(case=op.as_strategy())
        def run(case: Any) -> None:
            resp = case.call(headers=ADMIN, timeout=10)
            seen.append(resp.status_code)
            assert resp.status_code < 500, (case.method, case.path, resp.text[:300])
            if resp.status_code >= 400:
                body = resp.json()
                assert body["error"] and body["detail"]

        run()
    assert len(seen) > 200 and any(s < 300 for s in seen) and any(s >= 400 for s in seen)


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4)
    ),
    max_leaves=12,
)
WRITES = [r for r in ADMIN_ROUTES if r.method in ("PUT", "POST")]


@pytest.mark.parametrize("route", WRITES, ids=lambda r: f"{r.method} {r.path}")
def test_admin_bodies_of_any_shape_are_4xx_or_applied(node: Node, route: Any) -> None:
    path = route.path.format(
        dc="dcx", region="rx", name="fuzz.example.org", id="e1", zone="fuzz.example.org"
    )

    @SETTINGS
    @given(value=JSON, raw=st.booleans(), junk=st.binary(max_size=40))
    def run(value: Any, raw: bool, junk: bytes) -> None:
        body = junk if raw else json.dumps(value).encode()
        status, out = call(
            node, route.method, path, body, {**ADMIN, "Content-Type": "application/json"}
        )
        assert status < 500, (path, body[:100], out[:300])
        if status >= 400:
            err = json.loads(out)
            assert err["error"] and err["detail"] and "revision" in err

    run()


PARAMS = st.dictionaries(
    st.sampled_from(["dn", "host", "name", "type", "ip", "uid", "ttl", "query", "clientip",
                     "edns_client_subnet", "cd", "do", "dns", "t", "s", "junk"]),
    st.text(max_size=40) | st.sampled_from([SHOP, "pay.example.org", "1.2.3.4", "::1", "4,6"]),
    max_size=6,
)  # fmt: skip


@pytest.mark.parametrize(
    "route",
    [r for r in QUERY_ROUTES if r.dialect is not None and r.method == "GET"],
    ids=lambda r: r.path,
)
def test_query_dialects_with_any_parameters_never_fail_badly(node: Node, route: Any) -> None:
    path = route.path.replace("{account}", "100000")

    @SETTINGS
    @given(params=PARAMS)
    def run(params: dict[str, str]) -> None:
        status, out = call(node, "GET", path + "?" + urllib.parse.urlencode(params))
        assert status < 500, (path, params, out[:300])

    run()
