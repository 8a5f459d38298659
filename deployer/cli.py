"""``rolling``: the release tool's command line.

Commands read and write the registry store directly (``--store`` / ``ROLLING_STORE``
or ``store`` in the config file); only ``controller`` talks to Docker. Intents are
recorded with compare-and-set against the revision they were computed at, and
recomputed if the registry moved meanwhile.

Exit codes: 0 success; 1 refused or failed (one ``error: CODE: DETAIL`` line on
stderr); 2 usage error.
"""

from __future__ import annotations

import asyncio
import contextlib
import getpass
import json
import logging
import os
import signal
import socket
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import IO, Any, TypeVar

import click
from rich.console import Console, Group
from rich.live import Live
from rich.progress_bar import ProgressBar
from rich.table import Table

from registry import retry
from registry.changes import Change
from registry.errors import RegistryError
from registry.model import Rollout
from registry.snapshot import Snapshot
from registry.store import Store, open_store

from . import intents, units
from .config import DeployerConfig, load_spec_file
from .errors import DeployerError, SpecError
from .plan import capacity
from .rollout import is_live
from .status import history_entry, summary

T = TypeVar("T")


class CliError(click.ClickException):
    """A failure reported as one ``error: ...`` line on stderr, exit status 1."""

    exit_code = 1

    def show(self, file: IO[Any] | None = None) -> None:
        """Print ``error: MESSAGE`` on stderr."""
        click.echo(f"error: {self.format_message()}", file=file or sys.stderr)


@dataclass
class Ctx:
    """What every command gets: the config, the store URL and who is acting."""

    config: DeployerConfig
    store: str
    actor: str

    def run(self, fn: Callable[[Store], Awaitable[T]]) -> T:
        """Open the store, run ``fn`` with it, close it; errors become one line."""

        async def main() -> T:
            store = await open_store(self.store)
            try:
                return await fn(store)
            finally:
                await store.close()

        try:
            return asyncio.run(main())
        except (DeployerError, RegistryError) as exc:
            raise CliError(f"{exc.code}: {exc.detail}") from None


def _default_actor() -> str:
    try:
        user = os.environ.get("USER") or getpass.getuser()
    except (OSError, KeyError):
        user = "unknown"
    return f"{user}@{socket.gethostname()}"


async def record(
    store: Store, build: Callable[[Snapshot], list[Change]], actor: str
) -> tuple[Snapshot, int]:
    """Compute changes from the latest snapshot and write them at its revision; on a
    conflict, recompute (``registry.retry.record``). ``(snapshot used, new revision)``."""
    snap, cs = await retry.record(store.snapshot, store.apply, build, actor)
    return snap, cs.revision


def _echo_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, sort_keys=True))


def _when(t: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(t)) if t else "-"


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--store", envvar="ROLLING_STORE", metavar="URL",
              help="registry store (sqlite:///path, redis://...) [config: store]")  # fmt: skip
@click.option("--config", "config_file", envvar="ROLLING_CONFIG", metavar="FILE",
              help="deployer config TOML: datacenters' Docker hosts, networks, pools")  # fmt: skip
@click.option("--actor", envvar="ROLLING_ACTOR", metavar="NAME",
              help="who is acting, for the audit log [default: user@host]")  # fmt: skip
@click.pass_context
def main(ctx: click.Context, store: str | None, config_file: str | None, actor: str | None) -> None:
    """rolling: Docker releases with canary steps, moved through the HTTP DNS registry."""
    try:
        config = DeployerConfig.load(config_file)
    except SpecError as exc:
        raise CliError(f"{exc.code}: {exc.detail}") from None
    ctx.obj = Ctx(config, store or config.store, actor or _default_actor())


# -- deploy and intents -------------------------------------------------------------------------


@main.command()
@click.argument("spec_file", metavar="SPEC")
@click.option("--version", "version", required=True, help="the version to release (image tag)")
@click.option("--json", "as_json", is_flag=True, help="print the rollout as JSON")
@click.pass_obj
def deploy(obj: Ctx, spec_file: str, version: str, as_json: bool) -> None:
    """Start a release of SPEC at VERSION (the controller carries it out)."""
    try:
        spec = obj.config.resolve(load_spec_file(spec_file), version)
    except DeployerError as exc:
        raise CliError(f"{exc.code}: {exc.detail}") from None
    created: list[Rollout] = []

    def build(snap: Snapshot) -> list[Change]:
        rollout, changes = intents.deploy(snap, spec, version, time.time(), obj.actor)
        created[:] = [rollout]
        return changes

    obj.run(lambda store: record(store, build, obj.actor))
    r = created[0]
    if as_json:
        _echo_json(r.to_dict())
    else:
        click.echo(f"rollout {r.id}: {r.service} {r.previous or '-'} -> {r.version} recorded "
                   f"({len(spec.steps)} canary steps); `rolling status {r.service}` follows it")  # fmt: skip


def _intent(
    name: str, fn: Callable[[Snapshot, str, float, str], list[Change]], done: str, text: str
) -> click.Command:
    @click.command(name=name, help=text)
    @click.argument("service")
    @click.pass_obj
    def command(obj: Ctx, service: str) -> None:
        service = service.lower().rstrip(".")
        obj.run(
            lambda store: record(store, lambda s: fn(s, service, time.time(), obj.actor), obj.actor)
        )
        click.echo(f"{service}: {done} recorded")

    return command


main.add_command(
    _intent("pause", intents.pause, "pause", "Hold the rollout of SERVICE at its step.")
)
main.add_command(
    _intent("resume", intents.resume, "resume", "Let a paused rollout of SERVICE go on.")
)
main.add_command(
    _intent("abort", intents.abort, "abort",
            "Send SERVICE's clients back to stable at once, then remove the new containers.")
)  # fmt: skip


@main.command()
@click.argument("service")
@click.option("--full", is_flag=True, help="skip the remaining steps: make the release stable")
@click.pass_obj
def promote(obj: Ctx, service: str, full: bool) -> None:
    """Move the rollout of SERVICE to its next canary step (or, --full, to stable)."""
    service = service.lower().rstrip(".")

    def build(snap: Snapshot) -> list[Change]:
        return intents.promote(snap, service, time.time(), full, obj.actor)

    obj.run(lambda store: record(store, build, obj.actor))
    click.echo(f"{service}: promote{' --full' if full else ''} recorded")


@main.command()
@click.argument("service")
@click.pass_obj
def rollback(obj: Ctx, service: str) -> None:
    """Return SERVICE to its previous version (a flip while it is warm, else a redeploy)."""
    service = service.lower().rstrip(".")
    created: list[Rollout | None] = [None]

    def build(snap: Snapshot) -> list[Change]:
        new, changes = intents.rollback(snap, service, time.time(), obj.actor)
        created[0] = new
        return changes

    obj.run(lambda store: record(store, build, obj.actor))
    new = created[0]
    if new is None:
        click.echo(f"{service}: rollback recorded")
    else:
        click.echo(f"{service}: rollback recorded as rollout {new.id} (redeploy of {new.version})")


# -- status and history -------------------------------------------------------------------------


def _current(snap: Snapshot, service: str) -> Rollout | None:
    return intents.active(snap, service) or intents.latest(snap, service)


def _summaries(snap: Snapshot, service: str | None) -> list[dict[str, Any]]:
    names = [service] if service else sorted({r.service for r in snap.rollouts.values()})
    out = []
    for name in names:
        r = _current(snap, name)
        if r is not None:
            out.append(summary(snap, r))
    return out


def render(rows: Sequence[dict[str, Any]]) -> Table:
    """The status table: one line per service, a progress bar of the canary share."""
    table = Table(box=None, pad_edge=False)
    for col in ("service", "rollout", "version", "phase", "step", "traffic", "", "healthy/total"):
        table.add_column(col, no_wrap=True)
    table.add_column("note", overflow="fold")
    for s in rows:
        dcs = "  ".join(f"{dc} {v['healthy']}/{v['total']}" for dc, v in s["datacenters"].items())
        step = f"{s['step']}/{s['steps']}" if s["step"] else "-"
        phase = s["phase"] + (" (paused)" if s["paused"] else "")
        table.add_row(
            s["service"], s["id"], f"{s['previous'] or '-'} -> {s['version']}", phase, step,
            ProgressBar(total=100, completed=s["percent"], width=20), f"{s['percent']:g}%",
            dcs, s["message"],
        )  # fmt: skip
    return table


@main.command()
@click.argument("service", required=False)
@click.option("--json", "as_json", is_flag=True, help="print the status as JSON")
@click.option("--watch", is_flag=True, help="keep the view live until the rollout ends (Ctrl-C)")
@click.option("--interval", default=1.0, show_default=True, help="refresh period of --watch")
@click.pass_obj
def status(obj: Ctx, service: str | None, as_json: bool, watch: bool, interval: float) -> None:
    """Where the rollouts stand: step, canary share, healthy/total per datacenter."""
    service = service.lower().rstrip(".") if service else None

    async def once(store: Store) -> list[dict[str, Any]]:
        rows = _summaries(await store.snapshot(), service)
        if service and not rows:
            raise DeployerError(f"{service} has no rollouts")
        return rows

    async def live(store: Store) -> None:
        console = Console()
        with Live(render(await once(store)), console=console, auto_refresh=False) as view:
            while True:
                rows = await once(store)
                view.update(Group(render(rows)), refresh=True)
                if service and not any(is_live_phase(r["phase"]) for r in rows):
                    return
                await asyncio.sleep(interval)

    if watch and not as_json:
        with contextlib.suppress(KeyboardInterrupt):
            obj.run(live)
        return
    rows = obj.run(once)
    if as_json:
        _echo_json(rows[0] if service else rows)
    elif not rows:
        click.echo("no rollouts")
    else:
        Console().print(render(rows))


def is_live_phase(phase: str) -> bool:
    """Whether a status row's phase still moves."""
    return is_live(Rollout("x.example", "r0", "v", phase=phase))


@main.command()
@click.argument("service")
@click.option("--json", "as_json", is_flag=True, help="print the history as JSON")
@click.option("-v", "--verbose", is_flag=True, help="with every rollout's events")
@click.pass_obj
def history(obj: Ctx, service: str, as_json: bool, verbose: bool) -> None:
    """Past and present rollouts of SERVICE, newest first."""
    service = service.lower().rstrip(".")

    async def fetch(store: Store) -> list[dict[str, Any]]:
        return [history_entry(r) for r in intents.history(await store.snapshot(), service)]

    entries = obj.run(fetch)
    if as_json:
        _echo_json(entries)
        return
    if not entries:
        click.echo(f"{service}: no rollouts")
        return
    table = Table(box=None, pad_edge=False)
    for col in ("rollout", "created", "by", "version", "phase", "note"):
        table.add_column(col)
    for e in entries:
        table.add_row(e["id"], _when(e["created"]), e["actor"],
                      f"{e['previous'] or '-'} -> {e['version']}", e["phase"], e["message"])  # fmt: skip
        if verbose:
            for ev in e["events"]:
                table.add_row(
                    "", _when(ev["time"]), "", f"{ev['percent']:g}%", ev["phase"], ev["text"]
                )
    Console().print(table)


# -- capacity -----------------------------------------------------------------------------------


def _split(ctx: click.Context, param: click.Parameter, values: Sequence[str]) -> dict[str, float]:
    out: dict[str, float] = {}
    for value in values:
        for item in value.split(","):
            name, sep, pct = item.partition("=")
            try:
                if not sep or not name.strip():
                    raise ValueError
                out[name.strip()] = float(pct)
            except ValueError:
                raise click.BadParameter(f"{item!r} is not DC=PERCENT", ctx, param) from None
    return out


def _memory(ctx: click.Context, param: click.Parameter, value: str) -> int:
    try:
        float(value)
        value += "g"  # a bare number is GiB
    except ValueError:
        pass
    try:
        return units.size(param.name or "memory", value)
    except SpecError as exc:
        raise click.BadParameter(exc.detail, ctx, param) from None


def _shape(ctx: click.Context, param: click.Parameter, value: str) -> tuple[float, int]:
    try:
        return units.shape("container", value)
    except SpecError as exc:
        raise click.BadParameter(exc.detail, ctx, param) from None


@main.command("plan")
@click.option("--qps", type=float, required=True, help="peak queries per second to carry")
@click.option("--cpu-per-kqps", type=float, required=True, help="cores per 1,000 QPS")
@click.option("--mem-per-kqps", required=True, callback=_memory,
              help="memory per 1,000 QPS (e.g. 1.5 = GiB, or 512m)")  # fmt: skip
@click.option("--container", default="4c8g", show_default=True, callback=_shape,
              help="container shape: CORESc MEMORYg")  # fmt: skip
@click.option("--headroom", type=float, default=0.3, show_default=True,
              help="share of each container kept spare")  # fmt: skip
@click.option("--split", multiple=True, callback=_split, metavar="DC=PCT,...",
              help="traffic split across datacenters, e.g. idc=70,cloud=30")  # fmt: skip
@click.option("--min", "minimum", type=int, default=2, show_default=True,
              help="containers at least, per datacenter with traffic")  # fmt: skip
@click.option("--json", "as_json", is_flag=True)
def plan_command(
    qps: float, cpu_per_kqps: float, mem_per_kqps: int, container: tuple[float, int],
    headroom: float, split: dict[str, float], minimum: int, as_json: bool,
) -> None:  # fmt: skip
    """Containers per datacenter for a load: ask for compute, not machines."""
    try:
        rows = capacity(
            qps, cpu_per_kqps, mem_per_kqps, container, headroom, split or None, minimum
        )
    except SpecError as exc:
        raise CliError(f"{exc.code}: {exc.detail}") from None
    if as_json:
        _echo_json([r.to_dict() for r in rows])
        return
    table = Table(box=None, pad_edge=False)
    for col in ("datacenter", "share", "qps", "cores", "memory", "containers", "bound by"):
        table.add_column(col, justify="left" if col == "datacenter" else "right")
    for r in rows:
        table.add_row(r.dc, f"{r.share:g}%", f"{r.qps:,.0f}", f"{r.cores:g}",
                      units.format_size(r.memory) if r.memory else "0",
                      str(r.containers), r.bound)  # fmt: skip
    total = sum(r.containers for r in rows)
    cores, memory = container
    Console().print(table)
    click.echo(f"total: {total} containers of {cores:g}c{units.format_size(memory)} "
               f"= {total * cores:g} cores, {units.format_size(total * memory)}")  # fmt: skip


# -- the controller -----------------------------------------------------------------------------


@main.command()
@click.option("--interval", type=float, help="seconds between reconcile passes [config: 1]")
@click.option("--check-all", is_flag=True, default=None,
              help="also health-check services rolling did not deploy")  # fmt: skip
@click.option("--log-level", default="info",
              type=click.Choice(["debug", "info", "warning", "error"]))  # fmt: skip
@click.pass_obj
def controller(obj: Ctx, interval: float | None, check_all: bool | None, log_level: str) -> None:
    """Run the reconcile loop: carry out rollouts and health-check endpoints."""
    from .controller import Controller

    logging.basicConfig(level=log_level.upper(), stream=sys.stderr,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")  # fmt: skip

    async def run(store: Store) -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        ctl = Controller(
            store,
            interval=interval or obj.config.interval,
            check_all=obj.config.check_all if check_all is None else check_all,
            actor=f"rolling-controller@{socket.gethostname()}",
        )
        logging.getLogger("rolling").info("controller running on %s", obj.store)
        await ctl.run(stop)

    obj.run(run)


@main.command()
@click.argument("service")
@click.option("--stats", "with_stats", is_flag=True, help="with a CPU/memory sample of each")
@click.option("--json", "as_json", is_flag=True)
@click.pass_obj
def ps(obj: Ctx, service: str, with_stats: bool, as_json: bool) -> None:
    """The containers of SERVICE on its Docker hosts (state, address, MAC, resources)."""
    from .controller import docker_engines

    service = service.lower().rstrip(".")

    async def fetch(store: Store) -> list[dict[str, Any]]:
        snap = await store.snapshot()
        hosts = sorted({h for r in snap.rollouts_of(service)
                        for p in r.spec.get("datacenters", {}).values() for h in p["hosts"]})  # fmt: skip
        rows = []
        for host in hosts:
            engine = docker_engines(host)
            try:
                for c in await engine.list({"rolling.service": service}):
                    row: dict[str, Any] = {
                        "name": c.name, "host": host, "state": c.state, "address": c.address,
                        "mac": c.mac, "version": c.labels.get("rolling.version", ""),
                    }  # fmt: skip
                    if with_stats and c.running:
                        s = await engine.stats(c.name)
                        row.update(cpu_percent=s.cpu_percent, memory_usage=s.memory_usage,
                                   memory_limit=s.memory_limit, pids=s.pids)  # fmt: skip
                    rows.append(row)
            finally:
                await engine.close()
        return sorted(rows, key=lambda r: r["name"])

    rows = obj.run(fetch)
    if as_json:
        _echo_json(rows)
        return
    table = Table(box=None, pad_edge=False)
    cols = ["name", "version", "state", "address", "mac", "host"]
    cols += ["cpu", "memory"] if with_stats else []
    for col in cols:
        table.add_column(col)
    for r in rows:
        extra = []
        if with_stats:
            extra = [f"{r.get('cpu_percent', 0):g}%",
                     f"{units.format_size(r.get('memory_usage', 0) or 1)}/"
                     f"{units.format_size(r.get('memory_limit', 0) or 1)}"]  # fmt: skip
        table.add_row(
            r["name"], r["version"], r["state"], r["address"], r["mac"], r["host"], *extra
        )
    Console().print(table)


if __name__ == "__main__":
    main()
