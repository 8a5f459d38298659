"""Health checking: probes (HTTP GET or TCP connect) and rise/fall counting.

A target changes state only after ``rise`` successive good probes (unhealthy ->
healthy) or ``fall`` successive bad ones (healthy -> unhealthy), so one lost probe
does not move traffic. Registered endpoints start from the state the registry
records, so a restarted controller does not flap them either.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass

from .spec import HealthCheck

Target = tuple[str, str, str, int]
"""(service, endpoint id or container name, address, port)."""

Probe = Callable[[str, int, HealthCheck], Awaitable[bool | str]]
"""A probe: True when good; False, or the reason as text, when bad."""


async def diagnose(address: str, port: int, check: HealthCheck) -> bool | str:
    """One probe: True, or why it failed ("connection refused", "HTTP 503", "timed out")."""
    writer: asyncio.StreamWriter | None = None
    try:
        async with asyncio.timeout(check.timeout):
            reader, writer = await asyncio.open_connection(address, port)
            if check.kind == "tcp":
                return True
            host = f"[{address}]" if ":" in address else address
            writer.write(
                f"GET {check.path} HTTP/1.0\r\nHost: {host}\r\n"
                "User-Agent: rolling-health\r\nConnection: close\r\n\r\n".encode()
            )
            await writer.drain()
            status = (await reader.readline()).split()
            if len(status) >= 2 and status[1].isdigit() and 200 <= int(status[1]) < 400:
                return True
            code = status[1].decode(errors="replace") if len(status) >= 2 else "no status line"
            return f"probe {check.kind} {address}:{port}{check.path}: HTTP {code}"
    except TimeoutError:
        return f"probe {address}:{port}: timed out after {check.timeout:g}s"
    except (OSError, ValueError) as exc:
        return f"probe {address}:{port}: {getattr(exc, 'strerror', None) or exc}"
    finally:
        if writer is not None:
            writer.close()
            with contextlib.suppress(OSError, TimeoutError):
                await asyncio.wait_for(writer.wait_closed(), 0.5)


async def probe(address: str, port: int, check: HealthCheck) -> bool:
    """One probe: a TCP connect, or an HTTP/1.0 GET answered with 2xx or 3xx."""
    return await diagnose(address, port, check) is True


@dataclass(slots=True)
class _State:
    healthy: bool
    streak: int = 0  # successive results that disagree with ``healthy``


class Tracker:
    """Rise/fall counters per target."""

    def __init__(self) -> None:
        self._states: dict[Target, _State] = {}

    def seed(self, target: Target, healthy: bool) -> None:
        """Start counting from ``healthy`` unless the target is already known."""
        self._states.setdefault(target, _State(healthy))

    def observe(self, target: Target, ok: bool, rise: int, fall: int) -> bool:
        """Count one probe result; the (possibly new) state."""
        st = self._states.setdefault(target, _State(False))
        if ok == st.healthy:
            st.streak = 0
        else:
            st.streak += 1
            if st.streak >= (rise if ok else fall):
                st.healthy, st.streak = ok, 0
        return st.healthy

    def healthy(self, target: Target) -> bool | None:
        """The current state, or None when the target was never seen."""
        st = self._states.get(target)
        return None if st is None else st.healthy

    def force(self, target: Target, healthy: bool) -> None:
        """Start counting over from ``healthy`` (a replaced container must rise again)."""
        self._states[target] = _State(healthy)

    def retain(self, targets: set[Target]) -> None:
        """Forget every target not in ``targets``."""
        for t in set(self._states) - targets:
            del self._states[t]


class Monitor:
    """Probes due targets concurrently, each at its own interval."""

    def __init__(self, prober: Probe = probe, clock: Callable[[], float] = time.monotonic) -> None:
        self.tracker = Tracker()
        self._probe = prober
        self._clock = clock
        self._due: dict[Target, float] = {}
        self.reasons: dict[Target, str] = {}  # why the last probe of a target failed

    async def round(self, targets: Mapping[Target, HealthCheck]) -> int:
        """Probe every target whose interval has passed; how many were probed."""
        now = self._clock()
        due = [t for t in targets if self._due.get(t, 0.0) <= now]
        results = await asyncio.gather(*(self._probe(t[2], t[3], targets[t]) for t in due))
        for t, result in zip(due, results, strict=True):
            check = targets[t]
            ok = result is True
            if ok:
                self.reasons.pop(t, None)
            else:
                self.reasons[t] = result if isinstance(result, str) else "probe failed"
            self.tracker.observe(t, ok, check.rise, check.fall)
            self._due[t] = now + check.interval
        keep = set(targets)
        self.tracker.retain(keep)
        for t in set(self._due) - keep:
            del self._due[t]
        for t in set(self.reasons) - keep:
            del self.reasons[t]
        return len(due)
