"""Parsing of the human units used in specs and on the command line: durations
(``"30s"``, ``"1m30s"``, ``"500ms"``), sizes (``"8g"``, ``"512m"``) and container
shapes (``"4c8g"``)."""

from __future__ import annotations

import re
from typing import Any

from .errors import SpecError

_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")
_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_SIZE = re.compile(r"(\d+(?:\.\d+)?)\s*([kmgt]?)i?b?")
_BYTES = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}
_SHAPE = re.compile(r"(\d+(?:\.\d+)?)c(\d+(?:\.\d+)?[kmgt]?)")


def duration(field: str, value: Any) -> float:
    """Seconds from a number or a string like ``"30s"``, ``"1m30s"``, ``"250ms"``."""
    if isinstance(value, bool):
        raise SpecError(field, f"must be a duration like '30s', not {value!r}")
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str) and value.strip():
        text = value.strip().lower().replace(" ", "")
        parts = _DURATION.findall(text)
        if "".join(n + u for n, u in parts) != text:
            raise SpecError(field, f"{value!r} is not a duration like '30s', '2m' or '1m30s'")
        seconds = sum(float(n) * _SECONDS[u] for n, u in parts)
    else:
        raise SpecError(field, f"must be a duration like '30s', not {value!r}")
    if seconds < 0:
        raise SpecError(field, "must not be negative")
    return seconds


def size(field: str, value: Any) -> int:
    """Bytes from an integer (bytes) or a string like ``"8g"``, ``"512m"``, ``"64MiB"``."""
    if isinstance(value, bool):
        raise SpecError(field, f"must be a size like '8g', not {value!r}")
    if isinstance(value, int):
        n = value
    elif isinstance(value, str):
        m = _SIZE.fullmatch(value.strip().lower())
        if m is None:
            raise SpecError(field, f"{value!r} is not a size like '8g' or '512m'")
        n = int(float(m.group(1)) * _BYTES[m.group(2)])
    else:
        raise SpecError(field, f"must be a size like '8g', not {value!r}")
    if n <= 0:
        raise SpecError(field, "must be above zero")
    return n


def shape(field: str, value: Any) -> tuple[float, int]:
    """``(cores, memory bytes)`` from a container shape like ``"4c8g"`` (memory in GiB if
    the unit is left out)."""
    m = _SHAPE.fullmatch(str(value).strip().lower())
    if m is None:
        raise SpecError(field, f"{value!r} is not a container shape like '4c8g'")
    mem = m.group(2)
    cores = float(m.group(1))
    if cores <= 0:
        raise SpecError(field, "cores must be above zero")
    return cores, size(field, mem if mem[-1].isalpha() else mem + "g")


def format_duration(seconds: float) -> str:
    """``"1m30s"`` for 90, ``"0.5s"`` for 0.5."""
    if seconds < 60:
        return f"{seconds:g}s"
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    out = f"{hours}h" if hours else ""
    out += f"{minutes}m" if minutes else ""
    return out + (f"{secs}s" if secs else "")


def format_size(n: int) -> str:
    """``"8g"`` for 8 GiB, ``"512m"`` for 512 MiB, ``"1.4g"`` for 1.4 GiB, ``"900"`` for
    900 bytes: a whole unit exactly, else the largest unit to one decimal."""
    for unit in ("t", "g", "m", "k"):
        if n >= _BYTES[unit] and n % _BYTES[unit] == 0:
            return f"{n // _BYTES[unit]}{unit}"
    for unit in ("t", "g", "m", "k"):
        if n >= _BYTES[unit]:
            return f"{n / _BYTES[unit]:.1f}{unit}"
    return str(n)
