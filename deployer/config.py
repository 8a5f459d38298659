"""The deployer's own configuration: the registry store and each datacenter's Docker
placement (hosts, network, address pool, DNS servers, extra hosts, persist root).

A release spec names only what differs per release; ``resolve`` merges the config's
placement and timing defaults under it and fills in the version, giving the complete
``ReleaseSpec`` a rollout records. Precedence: config file < ``ROLLING_*`` environment
< command-line flags (for the store URL).
"""

from __future__ import annotations

import copy
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import units
from .errors import SpecError
from .spec import Placement, ReleaseSpec, check_disjoint

DEFAULT_STORE = "sqlite:///./httpdns-data/registry.db"
_TOP = frozenset(
    {"store", "propagation", "bake", "restart", "dns", "extra_hosts", "persist_root",
     "datacenters", "controller"}
)  # fmt: skip
_GLOBAL_PLACEMENT = ("dns", "extra_hosts", "persist_root")


@dataclass(frozen=True, slots=True)
class DeployerConfig:
    """The parsed config file (everything optional)."""

    store: str = DEFAULT_STORE
    defaults: Mapping[str, Any] = field(default_factory=dict)  # spec keys merged under a spec
    datacenters: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    interval: float = 1.0  # controller loop period
    check_all: bool = False  # health-check services rolling did not deploy too

    @classmethod
    def from_dict(
        cls, data: Mapping[str, Any], env: Mapping[str, str] | None = None
    ) -> DeployerConfig:
        """Validate a config table; ``ROLLING_STORE`` in ``env`` overrides ``store``."""
        unknown = sorted(set(data) - _TOP)
        if unknown:
            raise SpecError(unknown[0], "unknown config key")
        env = os.environ if env is None else env
        store = env.get("ROLLING_STORE") or data.get("store", DEFAULT_STORE)
        if not isinstance(store, str):
            raise SpecError("store", "must be a store URL")
        dcs = data.get("datacenters", {})
        if not isinstance(dcs, Mapping) or not all(isinstance(v, Mapping) for v in dcs.values()):
            raise SpecError("datacenters", "must be tables [datacenters.NAME]")
        for dc, table in dcs.items():
            unknown = sorted(set(table) - Placement.KEYS)
            if unknown:
                raise SpecError(f"datacenters.{dc}.{unknown[0]}", "unknown key")
        pools = {dc: t["pool"] for dc, t in dcs.items() if "pool" in t}
        check_disjoint(pools)  # also per spec, but a config with overlaps is wrong already
        controller = data.get("controller", {})
        if not isinstance(controller, Mapping) or set(controller) - {"interval", "check_all"}:
            raise SpecError("controller", "knows only interval and check_all")
        check_all = controller.get("check_all", False)
        if not isinstance(check_all, bool):
            raise SpecError("controller.check_all", "must be true or false")
        defaults: dict[str, Any] = {}
        timing = {k: data[k] for k in ("propagation", "bake") if k in data}
        if timing:
            defaults["rollout"] = timing
        if "restart" in data:
            defaults["restart"] = data["restart"]
        placement = {k: data[k] for k in _GLOBAL_PLACEMENT if k in data}
        return cls(
            store=store,
            defaults=defaults,
            datacenters={dc: {**placement, **table} for dc, table in dcs.items()},
            interval=units.duration("controller.interval", controller.get("interval", 1.0)),
            check_all=check_all,
        )

    @classmethod
    def load(cls, path: str | Path | None, env: Mapping[str, str] | None = None) -> DeployerConfig:
        """Read a TOML file (None or ``ROLLING_CONFIG`` unset: defaults only)."""
        env = os.environ if env is None else env
        path = path or env.get("ROLLING_CONFIG")
        if not path:
            return cls.from_dict({}, env)
        try:
            data = tomllib.loads(Path(path).read_text())
        except OSError as exc:
            raise SpecError("config", f"cannot read {path}: {exc.strerror or exc}") from None
        except tomllib.TOMLDecodeError as exc:
            raise SpecError("config", f"{path}: {exc}") from None
        return cls.from_dict(data, env)

    def resolve(self, raw: Mapping[str, Any], version: str) -> ReleaseSpec:
        """The complete spec for ``version``: config defaults under ``raw``, ``{version}`` in
        the image replaced."""
        merged: dict[str, Any] = copy.deepcopy(dict(self.defaults))
        for key, value in raw.items():
            if key == "rollout" and isinstance(value, Mapping):
                merged["rollout"] = {**merged.get("rollout", {}), **value}
            elif key != "datacenters":
                merged[key] = value
        spec_dcs = raw.get("datacenters", {})
        if not isinstance(spec_dcs, Mapping):
            raise SpecError("datacenters", "must be tables [datacenters.NAME]")
        merged["datacenters"] = {
            dc: {**self.datacenters.get(dc, {}), **dict(spec_dcs.get(dc, {}))}
            for dc in {*self.datacenters, *spec_dcs}
        }
        if isinstance(merged.get("image"), str):
            merged["image"] = merged["image"].replace("{version}", version)
        return ReleaseSpec.from_dict(merged)


def load_spec_file(path: str | Path) -> dict[str, Any]:
    """Read a release spec TOML file into its raw table."""
    try:
        return tomllib.loads(Path(path).read_text())
    except OSError as exc:
        raise SpecError("spec", f"cannot read {path}: {exc.strerror or exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise SpecError("spec", f"{path}: {exc}") from None


def _repository(image: str) -> str:
    """``image`` less its tag or digest (``registry:5000/app:1.2`` -> ``registry:5000/app``:
    a colon before the last slash is a registry's port, not a tag)."""
    image = image.split("@", 1)[0]
    name, sep, tag = image.rpartition(":")
    return name if sep and "/" not in tag else image


def version_of(image: Any, version: str | None) -> str:
    """The version a deploy releases: ``--version`` when the image has ``{version}`` (then
    required), else the image's own tag (then ``--version`` is refused: it would be
    silently ignored)."""
    if not isinstance(image, str) or not image:
        raise SpecError("image", "is required")
    if "{version}" in image:
        if not version:
            raise SpecError("version", f"the image {image} has {{version}}: give --version")
        return version
    if version:
        raise SpecError("image", f"{image} has no {{version}}, so --version {version} would "
                        f"be ignored; write the image as '{_repository(image)}:{{version}}' "
                        "or leave --version out to release its tag")  # fmt: skip
    if "@" in image:
        return "sha-" + image.rsplit(":", 1)[-1][:12]
    _, sep, tag = image.rpartition(":")
    if not sep or "/" in tag:
        raise SpecError(
            "image", f"{image} has no tag; give an image with {{version}} and --version"
        )
    return tag
