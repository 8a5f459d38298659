"""The release tool ``rolling``: Docker containers, address pools, rollouts.

Layers: pure logic (``spec``, ``units``, ``addresses`` picking, ``container`` specs,
the ``rollout`` state machine, ``healing`` of replica counts, ``intents``, ``plan``,
``autoscale``, ``status``) imports no Docker and no sockets; ``docker_engine``,
``health`` probes and ``cgroup`` files (gathered by ``stats``) are the adapters;
``controller`` is the reconcile loop that joins them to a registry ``Store``.
Traffic moves only through the registry.
"""

from __future__ import annotations

import importlib
from typing import Any

# Names resolve on first use: a node that only serves the rollouts API (deployer.plugin)
# must not load the controller, the Docker SDK and the engines it never runs.
_HOMES = {
    "Pool": "addresses", "allocate": "addresses", "mac_for": "addresses",
    "DeployerConfig": "config", "ContainerSpec": "container", "container_name": "container",
    "Controller": "controller", "Container": "engine", "Engine": "engine",
    "MemoryEngine": "engine", "Stats": "engine", "DeployerError": "errors",
    "EngineError": "errors", "EngineUnavailableError": "errors", "IntentRefusedError": "errors",
    "ImageError": "errors", "PullError": "errors",
    "NoRolloutError": "errors", "PoolExhaustedError": "errors", "SpecError": "errors",
    "Facts": "rollout", "Plan": "rollout", "advance": "rollout", "ReleaseSpec": "spec",
}  # fmt: skip


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'deployer' has no attribute {name!r}")
    return getattr(importlib.import_module(f".{home}", __name__), name)


__all__ = [
    "Container",
    "ContainerSpec",
    "Controller",
    "DeployerConfig",
    "DeployerError",
    "Engine",
    "EngineError",
    "EngineUnavailableError",
    "Facts",
    "ImageError",
    "IntentRefusedError",
    "MemoryEngine",
    "NoRolloutError",
    "Plan",
    "Pool",
    "PoolExhaustedError",
    "PullError",
    "ReleaseSpec",
    "SpecError",
    "Stats",
    "advance",
    "allocate",
    "container_name",
    "mac_for",
]
