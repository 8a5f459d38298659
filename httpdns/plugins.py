"""How other packages plug into a node without the node importing them.

A plugin (the deployer's rollouts API and controller, for one) is a value the
wiring — the ``serve`` command — builds and hands to ``serve.run``: routes
that join the node's route table (and so its OpenAPI document), request
schemas for that document, and an optional background task that runs beside
the node on its store until the node stops. The way CoreDNS plugins register:
the core knows this shape, never the plugin.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine, Mapping
from dataclasses import dataclass, field
from typing import Any

from registry.store import Store

from .routes import Route

Task = Callable[[Store, asyncio.Event], Coroutine[Any, Any, None]]


@dataclass(frozen=True, slots=True)
class Plugin:
    """What a plugin adds to a node."""

    name: str
    routes: tuple[Route, ...] = ()
    schemas: Mapping[str, Any] = field(default_factory=dict)
    task: Task | None = None  # run(store, stop) for the node's lifetime
