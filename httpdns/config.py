"""The node's configuration: one typed object, loaded once.

Sources, later ones winning: the TOML file (``--config``), ``HTTPDNS_*``
environment variables, command-line flags. ``httpdns.sample.toml`` in the
repository documents every key.
"""

from __future__ import annotations

import ipaddress
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from registry.validation import dns_name

from .errors import BadRequest

DEFAULT_HOST = "127.0.0.1"  # loopback unless told otherwise: the admin API is on the same port
DEFAULT_PORT = 8053
DEFAULT_SERVER = f"http://{DEFAULT_HOST}:{DEFAULT_PORT}"  # where the CLI looks for a node
DEFAULT_STORE = "sqlite:///./httpdns-data/registry.db"


class ConfigError(BadRequest):
    """The configuration is not valid."""

    code = "bad_config"


@dataclass(frozen=True, slots=True)
class Account:
    """An Aliyun-style account: its signing secret and whether unsigned queries are refused."""

    id: str
    secret: str | None = None
    require_signature: bool = False


ROLES = ("read", "ops", "deployer", "admin")
"""Token roles, each admitted wherever a lesser one is."""


@dataclass(frozen=True, slots=True)
class Token:
    """A named admin-API token (``[tokens.NAME]``): its role and its secret, given as is
    or as the hex SHA-256 of the secret (so the config file need not hold it)."""

    name: str
    role: str
    secret: str | None = None
    secret_sha256: str | None = None

    def __repr__(self) -> str:  # never print the secret
        return f"Token({self.name!r}, role={self.role!r})"


@dataclass(frozen=True, slots=True)
class DnspodAccount:
    """A DNSPod encrypted-dialect account: its DES and/or AES key (never printed)."""

    id: str
    des_key: bytes | None = field(default=None, repr=False)
    aes_key: bytes | None = field(default=None, repr=False)


@dataclass(frozen=True, slots=True)
class Config:
    """Everything a node needs to run."""

    http: tuple[str, int] = (DEFAULT_HOST, DEFAULT_PORT)
    https: tuple[str, int] | None = None
    dns: tuple[str, int] | None = None
    workers: int = 1
    tls_cert: str | None = None
    tls_key: str | None = None
    store: str = DEFAULT_STORE
    admin_token: str | None = None
    trusted_proxies: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = ()
    accounts: Mapping[str, Account] = field(default_factory=dict)
    tokens: Mapping[str, Token] = field(default_factory=dict)  # by name
    dnspod: Mapping[str, DnspodAccount] = field(default_factory=dict)
    zones: tuple[str, ...] = ()
    demo: bool = False
    max_cached_answers: int = 200_000
    snapshot: str | None = None  # the node's local registry copy (fail static across restarts)
    # Limits for a node on the open internet ("Running on the internet" in the README).
    header_timeout: float = 10.0  # seconds for a request head to arrive
    keepalive_timeout: float = 30.0  # seconds an idle connection stays open
    max_connections: int = 0  # open HTTP connections per process; 0 = from RLIMIT_NOFILE
    http_rate: float = 0.0  # requests per second per client address; 0 = no limit
    rrl_rate: float = 0.0  # DNS identical responses per second per client prefix; 0 = off
    rrl_slip: int = 2  # every K-th rate-limited response goes out truncated (TC); 0 = none
    # the body of a declarative apply (PUT /api/v1/registry) may be this large, read only
    # after its token is admitted; every other admin body stays within 1 MiB
    max_apply_bytes: int = 256 << 20

    def __repr__(self) -> str:  # never print the token or secrets
        return f"Config(http={self.http}, https={self.https}, store={self.store!r})"

    def zone_of(self, name: str) -> str | None:
        """The configured zone that holds ``name`` (the longest), or None."""
        best = None
        for z in self.zones:
            if (name == z or name.endswith("." + z)) and (best is None or len(z) > len(best)):
                best = z
        return best


def parse_hostport(what: str, text: str) -> tuple[str, int]:
    """``HOST:PORT`` or ``[V6]:PORT`` -> (host, port)."""
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError(f"{what}: {text!r} is not HOST:PORT")
    host = host.strip("[]")
    try:
        ipaddress.ip_address(host)
    except ValueError:
        if host != "localhost":
            raise ConfigError(f"{what}: {host!r} is not an IP address") from None
    return host, int(port)


def _networks(what: str, items: Any) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    if isinstance(items, str):
        items = [s for s in items.split(",") if s.strip()]
    try:
        return tuple(ipaddress.ip_network(s.strip(), strict=False) for s in items)
    except (ValueError, TypeError, AttributeError) as exc:
        raise ConfigError(f"{what}: {exc}") from None


def _accounts(raw: Any) -> dict[str, Account]:
    if not isinstance(raw, Mapping):
        raise ConfigError('accounts: must be a table of [accounts."ID"] sections')
    out = {}
    for acct, body in raw.items():
        if not isinstance(body, Mapping) or not str(acct).isalnum():
            raise ConfigError(f"accounts.{acct}: must be a table; ids are letters and digits")
        secret = body.get("secret")
        if secret is not None and not isinstance(secret, str):
            raise ConfigError(f"accounts.{acct}.secret: must be a string")
        out[str(acct)] = Account(str(acct), secret, bool(body.get("require_signature", False)))
    return out


def _tokens(raw: Any) -> dict[str, Token]:
    if not isinstance(raw, Mapping):
        raise ConfigError("tokens: must be a table of [tokens.NAME] sections")
    out = {}
    for name, body in raw.items():
        where = f"tokens.{name}"
        if (
            not isinstance(body, Mapping)
            or not str(name).replace("-", "").replace("_", "").isalnum()
        ):
            raise ConfigError(f"{where}: must be a table; names are letters, digits, - and _")
        unknown = sorted(set(body) - {"role", "secret", "secret_sha256"})
        if unknown:
            raise ConfigError(f"{where}: unknown key {unknown[0]!r}")
        role = body.get("role")
        if role not in ROLES:
            raise ConfigError(f"{where}.role: must be one of {', '.join(ROLES)}")
        secret, digest = body.get("secret"), body.get("secret_sha256")
        if (secret is None) == (digest is None):
            raise ConfigError(f"{where}: give exactly one of secret and secret_sha256")
        if secret is not None and (not isinstance(secret, str) or len(secret) < 8):
            raise ConfigError(f"{where}.secret: must be a string of at least 8 characters")
        if digest is not None and (
            not isinstance(digest, str)
            or len(digest) != 64
            or any(ch not in "0123456789abcdef" for ch in digest.lower())
        ):
            raise ConfigError(f"{where}.secret_sha256: must be 64 hex digits")
        out[str(name)] = Token(str(name), role, secret, digest.lower() if digest else None)
    return out


def _dnspod(raw: Any) -> dict[str, DnspodAccount]:
    """``[dnspod."ID"]`` sections: ``des_key`` (8+ bytes, the first 8 used) and/or
    ``aes_key`` (16, 24 or 32 bytes); an id with neither is refused."""
    if not isinstance(raw, Mapping):
        raise ConfigError('dnspod: must be a table of [dnspod."ID"] sections')
    out = {}
    for acct, body in raw.items():
        if not isinstance(body, Mapping) or not str(acct).isalnum():
            raise ConfigError(f"dnspod.{acct}: must be a table; ids are letters and digits")
        unknown = sorted(set(body) - {"des_key", "aes_key"})
        if unknown:
            raise ConfigError(f"dnspod.{acct}: unknown key {unknown[0]!r}")
        keys: dict[str, bytes] = {}
        for name, sizes in (("des_key", range(8, 1025)), ("aes_key", (16, 24, 32))):
            value = body.get(name)
            if value is None:
                continue
            if not isinstance(value, str) or len(value.encode()) not in sizes:
                need = "at least 8 bytes" if name == "des_key" else "16, 24 or 32 bytes"
                raise ConfigError(f"dnspod.{acct}.{name}: must be a string of {need}")
            keys[name] = value.encode()
        if not keys:
            raise ConfigError(f"dnspod.{acct}: needs des_key or aes_key")
        out[str(acct)] = DnspodAccount(str(acct), keys.get("des_key"), keys.get("aes_key"))
    return out


def _zones(raw: Any) -> tuple[str, ...]:
    if isinstance(raw, str):
        raw = [z for z in raw.split(",") if z.strip()]
    try:
        return tuple(dns_name("zones", z.strip()) for z in raw)
    except Exception as exc:
        raise ConfigError(str(exc)) from None


def load(path: str | None = None, env: Mapping[str, str] | None = None, **flags: Any) -> Config:
    """Build the config from a TOML file, the environment and flags (None = not given)."""
    env = os.environ if env is None else env
    data: dict[str, Any] = {}
    if path:
        try:
            data = tomllib.loads(Path(path).read_text())
        except OSError as exc:
            raise ConfigError(f"cannot read config {path}: {exc.strerror}") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"config {path}: {exc}") from None
    known = {
        "http", "https", "tls_cert", "tls_key", "store", "admin_token", "trusted_proxies",
        "accounts", "tokens", "zones", "demo", "max_cached_answers", "snapshot", "dns", "workers",
        *_LIMITS,
        "dnspod",
    }  # fmt: skip
    unknown = sorted(set(data) - known)
    if unknown:
        raise ConfigError(f"config {path}: unknown key {unknown[0]!r}")
    for key in (
        "http",
        "https",
        "tls_cert",
        "tls_key",
        "store",
        "admin_token",
        "trusted_proxies",
        "zones",
        "snapshot",
        "dns",
        "workers",
        *_LIMITS,
    ):
        value = env.get("HTTPDNS_" + key.upper())
        if value:
            data[key] = value
    for key, value in flags.items():
        if value is not None and value != ():
            data[key] = value

    cfg = Config()
    if "http" in data:
        cfg = replace(cfg, http=parse_hostport("http", str(data["http"])))
    if data.get("dns"):
        cfg = replace(cfg, dns=parse_hostport("dns", str(data["dns"])))
    if "workers" in data:
        raw = data["workers"]
        if not str(raw).isdigit() or not 1 <= int(raw) <= 64:
            raise ConfigError(f"workers: {raw!r} must be an integer 1-64")
        cfg = replace(cfg, workers=int(raw))
    if data.get("https"):
        cfg = replace(cfg, https=parse_hostport("https", str(data["https"])))
        if not data.get("tls_cert") or not data.get("tls_key"):
            raise ConfigError("https: needs tls_cert and tls_key (--tls-cert FILE --tls-key FILE)")
        for key in ("tls_cert", "tls_key"):
            if not Path(data[key]).is_file():
                raise ConfigError(f"{key}: {data[key]} is not a readable file")
        cfg = replace(cfg, tls_cert=str(data["tls_cert"]), tls_key=str(data["tls_key"]))
    if "store" in data:
        cfg = replace(cfg, store=str(data["store"]))
    if data.get("admin_token"):
        cfg = replace(cfg, admin_token=str(data["admin_token"]))
    if "trusted_proxies" in data:
        cfg = replace(cfg, trusted_proxies=_networks("trusted_proxies", data["trusted_proxies"]))
    if "accounts" in data:
        cfg = replace(cfg, accounts=_accounts(data["accounts"]))
    if "tokens" in data:
        cfg = replace(cfg, tokens=_tokens(data["tokens"]))
    if "dnspod" in data:
        cfg = replace(cfg, dnspod=_dnspod(data["dnspod"]))
    if "zones" in data:
        cfg = replace(cfg, zones=_zones(data["zones"]))
    if data.get("snapshot"):
        cfg = replace(cfg, snapshot=str(data["snapshot"]))
    elif cfg.store.startswith("redis"):
        cfg = replace(cfg, snapshot="./httpdns-data/node-snapshot.json")
    if "demo" in data:
        cfg = replace(cfg, demo=bool(data["demo"]))
    if "max_cached_answers" in data:
        n = data["max_cached_answers"]
        if not isinstance(n, int) or n < 1000:
            raise ConfigError("max_cached_answers: must be an integer >= 1000")
        cfg = replace(cfg, max_cached_answers=n)
    return _limits(cfg, data)


# key: (type, lowest, highest)
_LIMITS: dict[str, tuple[type, float, float]] = {
    "header_timeout": (float, 0.1, 3600),
    "keepalive_timeout": (float, 0.1, 86400),
    "max_connections": (int, 0, 10_000_000),
    "http_rate": (float, 0, 1e9),
    "rrl_rate": (float, 0, 1e9),
    "rrl_slip": (int, 0, 100),
    "max_apply_bytes": (int, 1 << 20, 4 << 30),
}


def _limits(cfg: Config, data: Mapping[str, Any]) -> Config:
    """The connection and rate limits, each a number in its range."""
    values: dict[str, Any] = {}
    for key, (kind, lo, hi) in _LIMITS.items():
        if key not in data:
            continue
        raw = data[key]
        try:
            if isinstance(raw, bool):
                raise ValueError
            value = kind(raw) if not isinstance(raw, str) else kind(raw.strip())
        except (TypeError, ValueError):
            raise ConfigError(
                f"{key}: {raw!r} is not a{'n integer' if kind is int else ' number'}"
            ) from None
        if not lo <= value <= hi:
            low, high = (int(lo), int(hi)) if kind is int else (lo, hi)
            raise ConfigError(f"{key}: {raw!r} must be between {low} and {high}")
        values[key] = value
    return replace(cfg, **values)
