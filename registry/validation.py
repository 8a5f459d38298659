"""Field checks shared by the model classes.

Each check returns the normalised value or raises ValidationError naming the
field, so a bad value never reaches the store.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from decimal import Decimal, InvalidOperation
from typing import Any

from .errors import ValidationError

_LABEL = re.compile(r"^[a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?$")
_IDENT = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
_TOKEN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+-]{0,127}$")

MAX_WEIGHT = 10000
MAX_TTL = 86400


def dns_name(field: str, value: Any) -> str:
    """A fully qualified DNS name, lower-cased, without the trailing dot."""
    if not isinstance(value, str) or not value or not value.isascii():
        raise ValidationError(field, "must be a non-empty ASCII DNS name (IDNs in punycode)")
    name = value.lower().removesuffix(".")
    if len(name) > 253:
        raise ValidationError(field, f"name is {len(name)} characters, at most 253 allowed")
    labels = name.split(".")
    for label in labels:
        if len(label) > 63:
            raise ValidationError(field, f"label {label[:20]!r}... is longer than 63 characters")
        if not _LABEL.fullmatch(label):
            raise ValidationError(
                field,
                f"label {label!r} must be letters, digits, '-' or '_', not starting or ending with '-'",
            )
    return name


def identifier(field: str, value: Any) -> str:
    """A datacenter or region name: one lower-case DNS label."""
    if not isinstance(value, str) or not value.isascii() or not _IDENT.fullmatch(value.lower()):
        raise ValidationError(field, f"{value!r} must be one DNS label (a-z, 0-9, '-', at most 63)")
    return value.lower()


def token(field: str, value: Any) -> str:
    """An endpoint id or version: letters, digits and ``_.+-``, at most 128."""
    if not isinstance(value, str) or not _TOKEN.fullmatch(value):
        raise ValidationError(
            field, f"{value!r} must be 1-128 of A-Z a-z 0-9 _ . + - (starting alnum)"
        )
    return value


def boolean(field: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise ValidationError(field, f"must be true or false, not {value!r}")
    return value


def integer(field: str, value: Any, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValidationError(field, f"must be an integer, not {value!r}")
    if not low <= value <= high:
        raise ValidationError(field, f"{value} is outside {low}-{high}")
    return value


def choice(field: str, value: Any, allowed: tuple[str, ...]) -> str:
    if value not in allowed:
        raise ValidationError(field, f"{value!r} is not one of {', '.join(allowed)}")
    return str(value)


def address(field: str, value: Any) -> str:
    """An IPv4 or IPv6 address in canonical text form."""
    if not isinstance(value, str):
        raise ValidationError(field, f"must be an IP address, not {value!r}")
    try:
        ip = ipaddress.ip_address(value)
    except ValueError:
        raise ValidationError(field, f"{value!r} is not an IPv4 or IPv6 address") from None
    if isinstance(ip, ipaddress.IPv6Address) and ip.scope_id:
        raise ValidationError(field, f"{value!r}: a scoped address cannot be answered in DNS")
    return str(ip)


def cidr(field: str, value: Any) -> str:
    """A network in canonical ``addr/len`` form; host bits must be zero."""
    if not isinstance(value, str):
        raise ValidationError(field, f"must be a CIDR string, not {value!r}")
    try:
        return str(ipaddress.ip_network(value, strict=True))
    except ValueError as exc:
        raise ValidationError(field, f"{value!r} is not a valid CIDR ({exc})") from None


def labels(field: str, value: Any) -> dict[str, str]:
    """Free-form string labels."""
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ValidationError(field, "must be an object of strings")
    out: dict[str, str] = {}
    for k, v in value.items():
        if not isinstance(k, str) or not isinstance(v, str) or len(k) > 128 or len(v) > 1024:
            raise ValidationError(
                f"{field}.{k}", "labels are strings (keys <= 128, values <= 1024)"
            )
        out[k] = v
    return out


def percent(field: str, value: Any) -> float:
    """A percentage 0-100 with at most two decimals."""
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ValidationError(field, f"must be a number 0-100, not {value!r}")
    try:
        dec = Decimal(str(value))
    except InvalidOperation:
        raise ValidationError(field, f"{value!r} is not a number") from None
    if not dec.is_finite() or not Decimal(0) <= dec <= Decimal(100):
        raise ValidationError(field, f"{value} is outside 0-100")
    exponent = dec.normalize().as_tuple().exponent
    if isinstance(exponent, int) and exponent < -2:
        raise ValidationError(field, f"{value} has more than two decimals")
    return float(dec)


def weight_table(field: str, value: Any) -> dict[str, int]:
    """One region's {datacenter: weight} table."""
    if not isinstance(value, Mapping):
        raise ValidationError(field, "must be an object of datacenter -> weight")
    out: dict[str, int] = {}
    for dc, w in value.items():
        name = identifier(f"{field}.{dc}", dc)
        if name in out:
            raise ValidationError(f"{field}.{dc}", f"datacenter {name!r} appears twice")
        out[name] = integer(f"{field}.{dc}", w, 0, MAX_WEIGHT)
    return out


def traffic(field: str, value: Any) -> dict[str, dict[str, int]]:
    """A service's region -> {datacenter: weight} map; needs a usable ``default``."""
    if not isinstance(value, Mapping):
        raise ValidationError(field, "must be an object of region -> {datacenter: weight}")
    out: dict[str, dict[str, int]] = {}
    for r, t in value.items():
        name = identifier(f"{field}.{r}", r)
        if name in out:
            raise ValidationError(f"{field}.{r}", f"region {name!r} appears twice")
        out[name] = weight_table(f"{field}.{r}", t)
    if "default" not in out:
        raise ValidationError(field, "needs a 'default' table")
    if not any(out["default"].values()):
        raise ValidationError(f"{field}.default", "at least one weight must be above zero")
    return out
