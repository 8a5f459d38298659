"""``GET /api/v1/events``: the registry's change feed as server-sent events.

A client that asks for ``Accept: text/event-stream`` (browsers' ``EventSource`` and the
console do) gets a stream; any other gets the batches after ``since`` at once as JSON (a
poll). Each committed batch the node has applied is sent as one ``change`` event whose ``id``
is its revision and whose data is the batch's audit form (revision, actor, time,
changes), so ``Last-Event-ID`` (or ``?since=``) resumes right after the last one a
client saw. The stream starts with a ``hello`` event naming the node's revision, and
sends a comment line every ``HEARTBEAT`` seconds so that proxies and browsers can tell
a quiet stream from a dead one.

Bounds: at most ``MAX_STREAMS`` streams per node (503 past it); a client that does not
read (more than ``MAX_BUFFER`` bytes queued in its socket, or a write that waits longer
than ``WRITE_TIMEOUT``) is disconnected — the browser reconnects with its
``Last-Event-ID`` and catches up from the audit log, so nothing is lost and nothing
grows without bound.
"""

from __future__ import annotations

import asyncio
import weakref
from typing import Any

import orjson
from aiohttp import web

from registry.changes import ChangeSet
from registry.errors import RegistryError

from .dialects.base import is_decimal
from .errors import BadRequest, HttpdnsError
from .handlers import NODE, authorize, json_response
from .routes import Route

HEARTBEAT = 15.0  # seconds between comment lines on a quiet stream
MAX_STREAMS = 64  # concurrent event streams per node
MAX_BUFFER = 1 << 20  # bytes queued for one client before it is dropped
WRITE_TIMEOUT = 10.0  # seconds one write may wait for a client to read
BATCH = 100  # changes read from the audit log per round
RETRY_MS = 1000  # what the browser waits before reconnecting

# The handler tasks of each application's open streams (kept beside it: a started app
# takes no new keys); ``close_streams`` ends them when the app shuts down.
_STREAMS: weakref.WeakKeyDictionary[web.Application, set[asyncio.Task[Any]]] = (
    weakref.WeakKeyDictionary()
)


class TooManyStreams(HttpdnsError):
    """Too many event streams are open on this node; retry later."""

    status = 503
    code = "too_many_streams"


class SlowClient(Exception):
    """The client stopped reading its stream."""


def frame(event: str, data: object, event_id: int | None = None) -> bytes:
    """One server-sent event (``data`` as JSON on one line: orjson never emits newlines)."""
    head = f"id: {event_id}\n" if event_id is not None else ""
    return f"{head}event: {event}\n".encode() + b"data: " + orjson.dumps(data) + b"\n\n"


def resume_from(request: web.Request) -> int | None:
    """The revision the client has seen: ``Last-Event-ID``, else ``?since=``, else None."""
    raw = request.headers.get("Last-Event-ID") or request.query.get("since")
    if raw is None or raw == "":
        return None
    raw = raw.strip()
    if not is_decimal(raw) or len(raw) > 18:
        raise BadRequest(f"Last-Event-ID/since: {raw[:40]!r} is not a revision number")
    return int(raw)


async def _send(resp: web.StreamResponse, request: web.Request, data: bytes) -> None:
    transport = request.transport
    if transport is None or transport.is_closing():
        raise ConnectionResetError("the client went away")
    if transport.get_write_buffer_size() > MAX_BUFFER:
        raise SlowClient()
    try:
        async with asyncio.timeout(WRITE_TIMEOUT):
            await resp.write(data)
    except TimeoutError:
        raise SlowClient() from None


def _change(cs: ChangeSet) -> dict[str, object]:
    return cs.to_dict()


async def _poll(request: web.Request, seen: int | None) -> web.Response:
    """The same feed for a client that did not ask for a stream: the batches after ``seen``
    (at most ``BATCH``, oldest first) at once, as JSON."""
    node = request.app[NODE]
    last = node.revision if seen is None else min(seen, node.revision)
    try:
        batch = await node.store.audit(last, BATCH) if last < node.revision else []
    except RegistryError:
        batch = []
    batch = [cs for cs in batch if cs.revision <= node.revision]
    return json_response(
        {"revision": node.revision, "from": last, "events": [_change(cs) for cs in batch]}
    )


async def events(request: web.Request) -> web.StreamResponse:
    """Stream the node's applied changes from the revision the client names."""
    authorize(request)
    node = request.app[NODE]
    seen = resume_from(request)
    if "text/event-stream" not in request.headers.get("Accept", ""):
        return await _poll(request, seen)
    streams = _STREAMS.setdefault(request.app, set())
    if len(streams) >= MAX_STREAMS:
        raise TooManyStreams(f"{MAX_STREAMS} event streams are open on this node; retry later")
    resp = web.StreamResponse(
        headers={
            "Content-Type": "text/event-stream",
            "Cache-Control": "no-store",
            "X-Accel-Buffering": "no",  # nginx in front: pass events on at once
        }
    )
    task = asyncio.current_task()
    assert task is not None
    streams.add(task)
    try:
        await resp.prepare(request)
        last = node.revision if seen is None else min(seen, node.revision)
        hello = {"revision": node.revision, "status": node.status, "from": last}
        await _send(resp, request, f"retry: {RETRY_MS}\n".encode() + frame("hello", hello))
        while True:
            if node.revision > last:
                try:
                    batch = await node.store.audit(last, BATCH)
                except RegistryError:
                    batch = []  # the store is away: the node's own table is still news
                batch = [cs for cs in batch if cs.revision <= node.revision]
                if batch and batch[0].revision != last + 1:
                    batch = []  # the log lost the first ones: the client must reload, not skip
                for cs in batch:
                    await _send(resp, request, frame("change", _change(cs), cs.revision))
                    last = cs.revision
                if not batch:
                    # The audit log no longer holds these revisions (trimmed), or the store
                    # is away: say where the node is, so the page reloads its state.
                    last = node.revision
                    await _send(resp, request, frame("reset", {"revision": last}, last))
                continue
            try:
                await node.wait_for(last + 1, timeout=HEARTBEAT)
            except TimeoutError:
                await _send(resp, request, b": keep-alive\n\n")
    except (ConnectionResetError, SlowClient, asyncio.CancelledError):
        # The client left or could not keep up: it reconnects with Last-Event-ID.
        if request.transport is not None:
            request.transport.close()
        if task.cancelling():
            raise
    finally:
        streams.discard(task)
    return resp


async def close_streams(app: web.Application) -> None:
    """End every open stream (``on_shutdown``): a stream never ends by itself, and the
    server would otherwise wait for each one until its shutdown timeout."""
    for task in list(_STREAMS.get(app, ())):
        task.cancel()


def open_streams(app: web.Application) -> int:
    """How many event streams ``app`` serves now."""
    return len(_STREAMS.get(app, ()))


ROUTES: tuple[Route, ...] = (
    Route("GET", "/api/v1/events", handler=events, query=("since",),
          summary="the change feed: server-sent events with Accept: text/event-stream "
                  "(resumable with Last-Event-ID), else the changes after `since` as JSON"),
)  # fmt: skip
