"""``GET /api/v1/events``: the change feed as server-sent events, through the real app."""

from __future__ import annotations

import asyncio
import json
import socket
import time
from pathlib import Path
from typing import Any

import pytest
from aiohttp import ClientResponse
from aiohttp.test_utils import TestClient

from httpdns import events
from httpdns.handlers import NODE
from registry.changes import ChangeSet
from tests.servers import Node

from .conftest import ADMIN, SHOP, admin

SSE = {**ADMIN, "Accept": "text/event-stream"}


async def next_event(resp: ClientResponse, timeout: float = 5.0) -> tuple[str, Any, int | None]:
    """The next event of the stream (comments skipped): (type, data, id)."""
    kind, data, ident = "message", None, None
    async with asyncio.timeout(timeout):
        while True:
            line = (await resp.content.readline()).decode()
            assert line, "the stream ended"
            line = line.rstrip("\n")
            if line == "":
                if data is not None:
                    return kind, data, ident
                continue
            if line.startswith(":") or line.startswith("retry:"):
                continue
            field, _, value = line.partition(": ")
            if field == "event":
                kind = value
            elif field == "data":
                data = json.loads(value)
            elif field == "id":
                ident = int(value)


async def test_a_change_arrives_as_an_event_with_its_revision(served: TestClient) -> None:
    resp = await served.get("/api/v1/events", headers=SSE)
    assert resp.status == 200 and resp.headers["Content-Type"] == "text/event-stream"
    kind, hello, _ = await next_event(resp)
    assert kind == "hello" and hello["status"] == "ok"
    start = hello["revision"]
    body = {"default": {"idc": 70, "cloud": 30}, "mobile": {"idc": 0, "cloud": 100}}
    written = await admin(served, "PUT", f"/api/v1/services/{SHOP}/traffic", body)
    kind, change, ident = await next_event(resp)
    assert kind == "change" and ident == written["revision"] == start + 1
    assert change["revision"] == ident and change["actor"] == "admin"
    [c] = change["changes"]
    assert c["kind"] == "service" and c["key"] == SHOP
    assert c["value"]["traffic"]["default"] == {"idc": 70, "cloud": 30}
    resp.close()


async def test_without_accept_event_stream_the_feed_is_one_json_answer(
    served: TestClient,
) -> None:
    rev = (await admin(served, "GET", "/api/v1/state"))["revision"]
    await admin(served, "PUT", f"/api/v1/services/{SHOP}/traffic", {"default": {"idc": 3}})
    body = await admin(served, "GET", f"/api/v1/events?since={rev - 1}")
    assert body["revision"] == rev + 1 and body["from"] == rev - 1
    assert [e["revision"] for e in body["events"]] == [rev, rev + 1]
    assert body["events"][1]["changes"][0]["value"]["traffic"] == {"default": {"idc": 3}}
    assert (await admin(served, "GET", "/api/v1/events"))["events"] == []  # from now: nothing


@pytest.mark.parametrize("how", ["header", "query"])
async def test_last_event_id_resumes_after_that_revision(served: TestClient, how: str) -> None:
    rev = (await admin(served, "GET", "/api/v1/state"))["revision"]
    for weight in (10, 20):
        await admin(served, "PUT", f"/api/v1/services/{SHOP}/traffic",
                    {"default": {"idc": weight, "cloud": 100}})  # fmt: skip
    headers = {**SSE, "Last-Event-ID": str(rev)} if how == "header" else SSE
    path = "/api/v1/events" + ("" if how == "header" else f"?since={rev}")
    resp = await served.get(path, headers=headers)
    _, hello, _ = await next_event(resp)
    assert hello["from"] == rev and hello["revision"] == rev + 2
    got = [await next_event(resp) for _ in range(2)]
    assert [(k, i) for k, _, i in got] == [("change", rev + 1), ("change", rev + 2)]
    assert got[1][1]["changes"][0]["value"]["traffic"]["default"]["idc"] == 20
    resp.close()


async def test_a_quiet_stream_sends_heartbeat_comments(
    served: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(events, "HEARTBEAT", 0.05)
    resp = await served.get("/api/v1/events", headers=SSE)
    await next_event(resp)
    async with asyncio.timeout(5):
        while (line := await resp.content.readline()) != b": keep-alive\n":
            assert line
    resp.close()


@pytest.mark.parametrize(
    ("headers", "status", "code"),
    [
        ({"Accept": "text/event-stream"}, 401, "unauthorized"),
        ({"Authorization": "Bearer nope"}, 401, "unauthorized"),
        ({**SSE, "Last-Event-ID": "seven"}, 400, "bad_request"),
        ({**SSE, "Last-Event-ID": "9" * 30}, 400, "bad_request"),
        ({**ADMIN, "Last-Event-ID": "-1"}, 400, "bad_request"),
    ],
)
async def test_bad_requests_are_4xx_json(
    served: TestClient, headers: dict[str, str], status: int, code: str
) -> None:
    resp = await served.get("/api/v1/events", headers=headers)
    assert resp.status == status
    body = await resp.json()
    assert body["error"] == code and body["detail"]


async def test_streams_are_capped_per_node(
    served: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(events, "MAX_STREAMS", 2)
    open_ = [await served.get("/api/v1/events", headers=SSE) for _ in range(2)]
    for r in open_:
        assert (await next_event(r))[0] == "hello"
    refused = await served.get("/api/v1/events", headers=SSE)
    assert refused.status == 503
    assert (await refused.json())["error"] == "too_many_streams"
    open_[0].close()
    # The slot frees once the server notices the client left (on its next write).
    monkeypatch.setattr(events, "HEARTBEAT", 0.05)
    await admin(served, "PUT", f"/api/v1/services/{SHOP}/traffic", {"default": {"idc": 1}})

    async def admitted() -> ClientResponse:
        while True:
            r = await served.get("/api/v1/events", headers=SSE)
            if r.status == 200:
                return r
            r.close()
            await asyncio.sleep(0.05)

    async with asyncio.timeout(5):
        again = await admitted()
    assert (await next_event(again))[0] == "hello"
    again.close()
    open_[1].close()


async def test_a_client_that_does_not_read_is_dropped(
    served: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(events, "MAX_BUFFER", 0)  # anything queued counts as not reading
    monkeypatch.setattr(events, "WRITE_TIMEOUT", 0.2)
    resp = await served.get("/api/v1/events", headers=SSE)
    app = served.server.app
    assert app is not None and events.open_streams(app) == 1
    await next_event(resp)
    # Big changes until the socket buffers fill: the server must cut the stream, not queue.
    async with asyncio.timeout(10):
        while events.open_streams(app):
            labels = {f"l{i}": "y" * 200 for i in range(200)}
            await admin(served, "PUT", "/api/v1/datacenters/idc", {"kind": "idc", "labels": labels})
    resp.close()


def test_a_node_with_open_streams_stops_at_once(tmp_path: Path) -> None:
    node = Node("sqlite://:memory:", tmp_path).start()
    try:
        with socket.create_connection(("127.0.0.1", node.port), timeout=5) as s:
            s.sendall(
                b"GET /api/v1/events HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer T\r\n"
                b"Accept: text/event-stream\r\n\r\n"
            )
            seen = b""
            while b"event: hello" not in seen:
                chunk = s.recv(4096)
                assert chunk, seen
                seen += chunk
            started = time.monotonic()
            node.stop()  # SIGTERM; the stream must not hold the shutdown
            assert time.monotonic() - started < 5
            assert node.proc is None
    finally:
        node.stop()


async def test_revisions_the_audit_log_lost_give_a_reset_not_a_gap(
    served: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = served.server.app
    assert app is not None
    store = app[NODE].store
    rev = (await admin(served, "GET", "/api/v1/state"))["revision"]
    for weight in (1, 2):
        await admin(served, "PUT", f"/api/v1/services/{SHOP}/traffic", {"default": {"idc": weight}})
    real = store.audit

    async def trimmed(since: int = 0, limit: int = 1000) -> list[ChangeSet]:
        return [cs for cs in await real(since, limit) if cs.revision > rev + 1]  # rev+1 is gone

    monkeypatch.setattr(store, "audit", trimmed)
    resp = await served.get("/api/v1/events", headers={**SSE, "Last-Event-ID": str(rev)})
    assert (await next_event(resp))[0] == "hello"
    assert await next_event(resp) == ("reset", {"revision": rev + 2}, rev + 2)
    resp.close()
