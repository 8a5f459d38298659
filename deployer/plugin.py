"""The deployer as a plugin of an ``httpdns`` node (``httpdns.plugins``).

Every node serves the rollout intents API (``/api/v1/rollouts``); with
``controller``, it also runs the rollout controller on the node's store
(``httpdns serve --controller``). The node's wiring calls ``plugin``; nothing
in the node imports the deployer.
"""

from __future__ import annotations

import asyncio

from httpdns.plugins import Plugin
from registry.store import Store

from .api import ROUTES


async def _run_controller(store: Store, stop: asyncio.Event) -> None:
    from .controller import Controller  # Docker's SDK loads only where a controller runs

    await Controller(store).run(stop)


def plugin(controller: bool = False) -> Plugin:
    """The deployer's routes, and its controller when asked for."""
    return Plugin("deployer", ROUTES, task=_run_controller if controller else None)
