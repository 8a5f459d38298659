"""Long-lived objects out of the garbage collector's reach as they accumulate.

CPython's full collection visits every object it tracks outside the permanent generation
(``gc.freeze``). On a serving node that is mostly what lives for good: compiled services,
bucket maps' choices, front-cache entries; a full collection over 100,000 of them pauses
the event loop for 20-90 ms on this project's 2-core benchmark machine, and one comes
whenever enough new objects have survived (``long_lived_pending``).

``install()`` adds a collector callback that freezes everything right after each full
collection. At that moment nothing unreachable is left in any generation (the collection
just freed it), so a freeze keeps no garbage; the next full collection visits only what
survived since, and its pause follows the recent growth, not the size of the heap.
Frozen objects still die by reference count; only a cycle formed later among frozen
objects would outlive its use, which is why the query path's own objects (connections
above all) are kept free of cycles.
"""

from __future__ import annotations

import gc
from typing import Any

_installed = False


def _after(phase: str, info: dict[str, Any]) -> None:
    if phase == "stop" and info["generation"] == 2:
        gc.freeze()


def install() -> None:
    """Freeze what survives each full collection (idempotent)."""
    global _installed
    if not _installed:
        gc.callbacks.append(_after)
        _installed = True


def uninstall() -> None:
    """Stop freezing after full collections (what was frozen stays frozen)."""
    global _installed
    if _installed:
        gc.callbacks.remove(_after)
        _installed = False
