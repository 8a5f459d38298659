"""The release tool ``rolling``: Docker containers, address pools, rollouts.

Layers: pure logic (``spec``, ``units``, ``addresses`` picking, ``container`` specs,
the ``rollout`` state machine, ``intents``, ``plan``, ``status``) imports no Docker
and no sockets; ``docker_engine`` and ``health`` probes are the adapters;
``controller`` is the reconcile loop that joins them to a registry ``Store``.
Traffic moves only through the registry.
"""

from __future__ import annotations

from .addresses import Pool, allocate, mac_for
from .config import DeployerConfig
from .container import ContainerSpec, container_name
from .controller import Controller
from .engine import Container, Engine, MemoryEngine, Stats
from .errors import (
    DeployerError,
    EngineError,
    EngineUnavailableError,
    IntentRefusedError,
    NoRolloutError,
    PoolExhaustedError,
    SpecError,
)
from .rollout import Facts, Plan, advance
from .spec import ReleaseSpec

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
    "IntentRefusedError",
    "MemoryEngine",
    "NoRolloutError",
    "Plan",
    "Pool",
    "PoolExhaustedError",
    "ReleaseSpec",
    "SpecError",
    "Stats",
    "advance",
    "allocate",
    "container_name",
    "mac_for",
]
