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
from rich.text import Text

from registry import retry
from registry.changes import Change
from registry.errors import NotFoundError, RegistryError
from registry.model import Rollout
from registry.snapshot import Snapshot
from registry.store import Store, open_store

from . import intents, units
from .config import DeployerConfig, load_spec_file, version_of
from .errors import DeployerError, NoRolloutError, SpecError
from .plan import DatacenterPlan, capacity
from .rollout import is_live
from .spec import ReleaseSpec
from .status import analysis_lines, controller_line, controllers, history_entry, summary

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
@click.option("--version", "version", default=None,
              help="the version to release: replaces {version} in the image (required then); "
                   "without {version} the image's tag is the version")  # fmt: skip
@click.option("--json", "as_json", is_flag=True, help="print the rollout as JSON")
@click.pass_obj
def deploy(obj: Ctx, spec_file: str, version: str | None, as_json: bool) -> None:
    """Start a release of SPEC at VERSION (the controller carries it out).

    Checked before anything is recorded: the spec, the pools (disjoint, large enough
    for the replicas plus one rollout, with free addresses), and the image on every
    Docker host of the release (pulled there if missing)."""
    try:
        raw = load_spec_file(spec_file)
        version = version_of(raw.get("image"), version)
        spec = obj.config.resolve(raw, version)
    except DeployerError as exc:
        raise CliError(f"{exc.code}: {exc.detail}") from None
    created: list[Rollout] = []

    def build(snap: Snapshot) -> list[Change]:
        rollout, changes = intents.deploy(snap, spec, version, time.time(), obj.actor)
        created[:] = [rollout]
        return changes

    async def checked(store: Store) -> tuple[Snapshot, int]:
        intents.deploy(await store.snapshot(), spec, version, time.time(), obj.actor)
        await check_images(spec)  # after the registry's own checks: those are cheaper
        return await record(store, build, obj.actor)

    obj.run(checked)
    r = created[0]
    if as_json:
        _echo_json(r.to_dict())
    else:
        click.echo(f"rollout {r.id}: {r.service} {r.previous or '-'} -> {r.version} recorded "
                   f"({len(spec.steps)} canary steps); `rolling status {r.service}` follows it")  # fmt: skip
        if spec.analysis:
            click.echo(f"analysis: {', '.join(c.name for c in spec.analysis)} judge each canary "
                       "step (a failing check aborts, no data holds until its timeout)")  # fmt: skip
        if spec.ttl_first and r.previous is not None:
            click.echo(f"ttl-first: the TTL goes down to {spec.ttl_floor}s when it starts, the "
                       "first move waits one old TTL, the TTL is restored after the last move")  # fmt: skip


async def check_images(spec: ReleaseSpec) -> None:
    """The spec's image on every Docker host it will run on (pulled where missing);
    raises the first host's error."""
    from .controller import docker_engines

    hosts = sorted({h for dc, n in spec.replicas.items() if n for h in spec.placement[dc].hosts})
    engines = [docker_engines(h) for h in hosts]
    try:
        results = await asyncio.gather(*(e.ensure_image(spec.image) for e in engines),
                                       return_exceptions=True)  # fmt: skip
    finally:
        for e in engines:
            with contextlib.suppress(DeployerError):
                await e.close()
    for result in results:
        if isinstance(result, BaseException):
            raise result


@main.command()
@click.argument("service")
@click.argument("counts", nargs=-1, required=True, metavar="DC=N...")
@click.pass_obj
def scale(obj: Ctx, service: str, counts: tuple[str, ...]) -> None:
    """Set SERVICE's containers per datacenter (e.g. idc=6 cloud=4), as an intent the
    controller carries out: new replicas start and register once healthy; replicas
    beyond the count go to weight 0, then away."""
    service = service.lower().rstrip(".")
    wanted: dict[str, int] = {}
    for item in counts:
        for part in item.split(","):
            dc, sep, n = part.partition("=")
            if not sep or not dc.strip() or not n.strip().isdigit():
                raise click.BadParameter(f"{part!r} is not DC=N", param_hint="DC=N")
            wanted[dc.strip()] = int(n)

    def build(snap: Snapshot) -> list[Change]:
        return intents.scale(snap, service, time.time(), wanted, obj.actor)

    obj.run(lambda store: record(store, build, obj.actor))
    text = " ".join(f"{dc}={n}" for dc, n in sorted(wanted.items()))
    click.echo(f"{service}: scale {text} recorded")


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


def _known(snap: Snapshot, service: str) -> None:
    """Refuse a service the registry does not know (exit 1, ``not_found``)."""
    if service not in snap.services and not snap.rollouts_of(service):
        raise NotFoundError(f"service {service!r} does not exist")


def _summaries(snap: Snapshot, service: str | None, ctl: dict[str, Any]) -> list[dict[str, Any]]:
    names = [service] if service else sorted({r.service for r in snap.rollouts.values()})
    out = []
    for name in names:
        r = _current(snap, name)
        if r is not None:
            row = summary(snap, r)
            row["controller"] = ctl
            out.append(row)
    return out


def render(rows: Sequence[dict[str, Any]]) -> Table:
    """The status table: one line per service, a progress bar of the canary share."""
    table = Table(box=None, pad_edge=False)
    for col in ("service", "rollout", "version", "phase", "step", "traffic", "", "healthy/total"):
        table.add_column(col, no_wrap=True)
    table.add_column("note", overflow="fold")
    for s in rows:
        dcs = "  ".join(f"{dc} {v['healthy']}/{v['total']}" for dc, v in s["datacenters"].items())
        note = s["message"]
        if is_live_phase(s["phase"]) and not s["controller"]["running"]:
            note = f"controller not running; last: {note}"
        step = f"{s['step']}/{s['steps']}" if s["step"] else "-"
        phase = s["phase"] + (" (paused)" if s["paused"] else "")
        table.add_row(
            s["service"], s["id"], f"{s['previous'] or '-'} -> {s['version']}", phase, step,
            ProgressBar(total=100, completed=s["percent"], width=20), f"{s['percent']:g}%",
            dcs, note,
        )  # fmt: skip
    return table


def _view(rows: Sequence[dict[str, Any]], ctl: dict[str, Any]) -> Group:
    return Group(render(rows), *map(Text, analysis_lines(rows)), controller_line(ctl))


@main.command()
@click.argument("service", required=False)
@click.option("--json", "as_json", is_flag=True, help="print the status as JSON")
@click.option("--watch", is_flag=True, help="keep the view live until the rollout ends (Ctrl-C)")
@click.option("--interval", default=1.0, show_default=True, help="refresh period of --watch")
@click.pass_obj
def status(obj: Ctx, service: str | None, as_json: bool, watch: bool, interval: float) -> None:
    """Where the rollouts stand: step, canary share, healthy/total per datacenter."""
    service = service.lower().rstrip(".") if service else None

    async def once(store: Store) -> tuple[list[dict[str, Any]], dict[str, Any]]:
        snap = await store.snapshot()
        if service:
            _known(snap, service)
        # controllers record their passes in the store's liveness entries (older ones
        # wrote heartbeat records into the registry: read those too)
        ctl = controllers(await store.nodes(apart=False), time.time(), snap.heartbeats.values())
        rows = _summaries(snap, service, ctl)
        if service and not rows:
            raise NoRolloutError(f"service {service!r} has no rollouts")
        return rows, ctl

    async def live(store: Store) -> None:
        console = Console()
        with Live(_view(*await once(store)), console=console, auto_refresh=False) as view:
            while True:
                rows, ctl = await once(store)
                view.update(_view(rows, ctl), refresh=True)
                if service and not any(is_live_phase(r["phase"]) for r in rows):
                    return
                await asyncio.sleep(interval)

    if watch and not as_json:
        with contextlib.suppress(KeyboardInterrupt):
            obj.run(live)
        return
    rows, ctl = obj.run(once)
    if as_json:
        _echo_json(rows[0] if service else rows)
    elif not rows:
        click.echo("no rollouts")
        click.echo(controller_line(ctl))
    else:
        Console().print(_view(rows, ctl))


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
        snap = await store.snapshot()
        _known(snap, service)
        return [history_entry(r) for r in intents.history(snap, service)]

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


def _memory(ctx: click.Context, param: click.Parameter, value: str | None) -> int | None:
    if value is None:
        return None
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
@click.option("--qps", type=float, help="peak queries per second to carry (with --from-metrics: "
              "the measured QPS, instead of --prometheus)")  # fmt: skip
@click.option("--cpu-per-kqps", type=float, help="cores per 1,000 QPS")
@click.option("--mem-per-kqps", callback=_memory, help="memory per 1,000 QPS (1.5 = GiB, or 512m)")
@click.option("--container", default="4c8g", show_default=True, callback=_shape,
              help="container shape: CORESc MEMORYg")  # fmt: skip
@click.option("--headroom", type=float, default=0.3, show_default=True,
              help="share of each container kept spare")  # fmt: skip
@click.option("--split", multiple=True, callback=_split, metavar="DC=PCT,...",
              help="traffic split across configured datacenters, adding up to 100")  # fmt: skip
@click.option("--normalize", is_flag=True, help="rescale a --split that does not add up to 100")
@click.option("--min", "minimum", type=int, default=2, show_default=True,
              help="containers at least, per datacenter with traffic")  # fmt: skip
@click.option("--from-metrics", "service", metavar="SERVICE",
              help="derive the cost per kQPS from SERVICE's load and its containers' cgroup "
                   "figures, and the split from its traffic table")  # fmt: skip
@click.option("--prometheus", metavar="URL", help="Prometheus server to read the QPS from")
@click.option("--query", metavar="PROMQL", help="the QPS query [default: rate of the service's "
              "httpdns_answers_total over 5m]")  # fmt: skip
@click.option("--apply", is_flag=True, help="record the result as a scale intent (--from-metrics)")
@click.option("--json", "as_json", is_flag=True)
@click.pass_obj
def plan_command(
    obj: Ctx, qps: float | None, cpu_per_kqps: float | None, mem_per_kqps: int | None,
    container: tuple[float, int], headroom: float, split: dict[str, float], normalize: bool,
    minimum: int, service: str | None, prometheus: str | None, query: str | None, apply: bool,
    as_json: bool,
) -> None:  # fmt: skip
    """Containers per datacenter for a load: ask for compute, not machines.

    Either from stated costs (--qps, --cpu-per-kqps, --mem-per-kqps, --split), or
    measured (--from-metrics SERVICE, with --prometheus URL or --qps)."""
    if service:
        _plan_from_metrics(obj, service.lower().rstrip("."), qps, prometheus, query, container,
                           headroom, minimum, apply, as_json)  # fmt: skip
        return
    if apply:
        raise click.UsageError("--apply records the plan of --from-metrics SERVICE")
    missing = [n for n, v in (("--qps", qps), ("--cpu-per-kqps", cpu_per_kqps),
                              ("--mem-per-kqps", mem_per_kqps)) if v is None]  # fmt: skip
    if missing:
        raise click.UsageError(f"missing {', '.join(missing)} (or use --from-metrics SERVICE)")
    assert qps is not None and cpu_per_kqps is not None and mem_per_kqps is not None
    try:
        split = _checked_split(obj.config, split, normalize)
        rows = capacity(
            qps, cpu_per_kqps, mem_per_kqps, container, headroom, split or None, minimum
        )
    except SpecError as exc:
        raise CliError(f"{exc.code}: {exc.detail}") from None
    if as_json:
        _echo_json([r.to_dict() for r in rows])
        return
    _print_plan(rows, container)


def _checked_split(
    config: DeployerConfig, split: dict[str, float], normalize: bool
) -> dict[str, float]:
    """A --split naming configured datacenters and adding up to 100 (or rescaled)."""
    if not split:
        return split
    known = sorted(config.datacenters)
    unknown = sorted(set(split) - set(known))
    if unknown:
        where = f"configured: {', '.join(known)}" if known else "none is configured (--config)"
        raise SpecError("split", f"unknown datacenter {unknown[0]!r} ({where})")
    total = sum(split.values())
    if abs(total - 100) > 0.01 and not normalize:
        raise SpecError(
            "split", f"the shares add up to {total:g}, not 100 (--normalize rescales them)"
        )
    return split


def _print_plan(rows: Sequence[DatacenterPlan], container: tuple[float, int],
                current: dict[str, int] | None = None) -> None:  # fmt: skip
    table = Table(box=None, pad_edge=False)
    cols = ["datacenter", "share", "qps", "cores", "memory", "containers", "bound by"]
    cols += ["now"] if current is not None else []
    for col in cols:
        table.add_column(col, justify="left" if col == "datacenter" else "right")
    for r in rows:
        extra = [str(current.get(r.dc, 0))] if current is not None else []
        table.add_row(r.dc, f"{r.share:g}%", f"{r.qps:,.0f}", f"{r.cores:g}",
                      units.format_size(r.memory) if r.memory else "0",
                      str(r.containers), r.bound, *extra)  # fmt: skip
    total = sum(r.containers for r in rows)
    cores, memory = container
    Console().print(table)
    click.echo(f"total: {total} containers of {cores:g}c{units.format_size(memory)} "
               f"= {total * cores:g} cores, {units.format_size(total * memory)}")  # fmt: skip


def _plan_from_metrics(
    obj: Ctx, service: str, qps: float | None, prometheus: str | None, query: str | None,
    container: tuple[float, int], headroom: float, minimum: int, apply: bool, as_json: bool,
) -> None:  # fmt: skip
    from .autoscale import DEFAULT_QUERY, Load, prometheus_qps, recommend, split_of
    from .controller import docker_engines
    from .healing import targets_of
    from .stats import collect

    if qps is None and not prometheus:
        raise click.UsageError("--from-metrics needs the load: --prometheus URL or --qps N")

    async def measure(store: Store) -> tuple[Load, list[DatacenterPlan], dict[str, int]]:
        snap = await store.snapshot()
        _known(snap, service)
        targets = targets_of(snap, service)
        if not targets:
            raise NoRolloutError(f"service {service!r} has no version released by rolling")
        spec = ReleaseSpec.from_dict(targets[0].spec)
        load_qps = qps
        if load_qps is None:
            assert prometheus is not None
            q = query or DEFAULT_QUERY.format(service=service)
            load_qps = await asyncio.to_thread(prometheus_qps, prometheus, q)
        stats = []
        for host in sorted({h for p in spec.placement.values() for h in p.hosts}):
            engine = docker_engines(host)
            try:
                found = await engine.list({"rolling.service": service,
                                           "rolling.version": targets[0].version})  # fmt: skip
                stats += list((await collect(engine, found)).values())
            finally:
                await engine.close()
        load = Load.measure(load_qps, stats)
        split = split_of(snap.services[service].traffic, spec.placement)
        return load, recommend(load, split, container, headroom, minimum), dict(spec.replicas)

    load, rows, current = obj.run(measure)
    if apply:
        counts = {r.dc: r.containers for r in rows}

        def build(snap: Snapshot) -> list[Change]:
            return intents.scale(snap, service, time.time(), counts, obj.actor)

        obj.run(lambda store: record(store, build, obj.actor))
    if as_json:
        _echo_json({
            "service": service, "qps": load.qps, "cores": load.cores, "memory": load.memory,
            "containers": load.containers, "cpu_per_kqps": load.cpu_per_kqps,
            "mem_per_kqps": load.mem_per_kqps, "current": current,
            "plan": [r.to_dict() for r in rows], "applied": apply,
        })  # fmt: skip
        return
    click.echo(f"{service}: {load.qps:,.0f} QPS on {load.containers} containers using "
               f"{load.cores:.2f} cores and {units.format_size(load.memory)}: "
               f"{load.cpu_per_kqps:.3f} cores and {units.format_size(load.mem_per_kqps)} "
               "per 1,000 QPS")  # fmt: skip
    _print_plan(rows, container, current)
    if apply:
        text = " ".join(f"{r.dc}={r.containers}" for r in rows)
        click.echo(f"{service}: scale {text} recorded")
    else:
        click.echo("a recommendation: --apply records it as a scale intent")


# -- the controller -----------------------------------------------------------------------------


@main.command()
@click.option("--interval", type=float, help="seconds between reconcile passes [config: 1]")
@click.option("--check-all", is_flag=True, default=None,
              help="also health-check services rolling did not deploy")  # fmt: skip
@click.option("--log-level", default="info",
              type=click.Choice(["debug", "info", "warning", "error"]))  # fmt: skip
@click.option("--metrics", "metrics_at", metavar="HOST:PORT",
              help="serve the controller's Prometheus metrics at http://HOST:PORT/metrics")  # fmt: skip
@click.pass_obj
def controller(
    obj: Ctx, interval: float | None, check_all: bool | None, log_level: str,
    metrics_at: str | None,
) -> None:  # fmt: skip
    """Run the reconcile loop: carry out rollouts and health-check endpoints."""
    from . import metrics
    from .controller import Controller

    listen = _host_port(metrics_at) if metrics_at else None

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
        runner = None
        if listen is not None:
            try:
                runner = await metrics.serve(ctl.stats, *listen)
            except OSError as exc:
                raise click.ClickException(
                    f"--metrics {metrics_at}: {exc.strerror or exc}"
                ) from None
        logging.getLogger("rolling").info("controller running on %s", obj.store)
        try:
            await ctl.run(stop)
        finally:
            if runner is not None:
                await runner.cleanup()

    obj.run(run)


def _host_port(text: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[::1]:PORT`` for IPv6); a usage error otherwise."""
    host, sep, port = text.rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise click.BadParameter(f"{text!r} is not HOST:PORT", param_hint="--metrics")
    return host, int(port)


STAT_COLUMNS = ("cpu", "memory", "net rx/tx", "blkio r/w", "pids", "tcp")


@main.command()
@click.argument("service")
@click.option("--stats", "with_stats", is_flag=True,
              help="with each container's CPU, memory, network, block IO, pids and TCP figures")  # fmt: skip
@click.option("--interval", type=float, default=0.5, show_default=True,
              help="seconds between the two samples of the CPU rate")  # fmt: skip
@click.option("--json", "as_json", is_flag=True)
@click.pass_obj
def ps(obj: Ctx, service: str, with_stats: bool, interval: float, as_json: bool) -> None:
    """The containers of SERVICE on its Docker hosts (state, address, MAC, resources).

    Figures come from the cgroup files where the Docker host is this machine, else from
    the Docker stats API (in parallel)."""
    from .controller import docker_engines
    from .stats import collect

    service = service.lower().rstrip(".")

    async def fetch(store: Store) -> list[dict[str, Any]]:
        snap = await store.snapshot()
        _known(snap, service)
        hosts = sorted({h for r in snap.rollouts_of(service)
                        for p in r.spec.get("datacenters", {}).values() for h in p["hosts"]})  # fmt: skip

        async def one(host: str) -> list[dict[str, Any]]:
            engine = docker_engines(host)
            try:
                found = await engine.list({"rolling.service": service})
                stats = await collect(engine, found, interval=interval) if with_stats else {}
            finally:
                await engine.close()
            rows = []
            for c in found:
                row: dict[str, Any] = {
                    "name": c.name, "host": host, "state": c.state, "address": c.address,
                    "mac": c.mac, "version": c.labels.get("rolling.version", ""),
                }  # fmt: skip
                if c.name in stats:
                    row.update(stats[c.name].to_dict())
                rows.append(row)
            return rows

        per_host = await asyncio.gather(*(one(h) for h in hosts))
        return sorted((r for rows in per_host for r in rows), key=lambda r: r["name"])

    rows = obj.run(fetch)
    if as_json:
        _echo_json(rows)
        return
    table = Table(box=None, pad_edge=False)
    cols = ["name", "version", "state", "address", "mac", "host"]
    cols += list(STAT_COLUMNS) if with_stats else []
    for col in cols:
        table.add_column(col, justify="right" if col in STAT_COLUMNS else "left")
    size = units.format_size
    for r in rows:
        extra = []
        if with_stats and "cpu_percent" in r:
            limit = r["memory_limit_bytes"]
            tcp = "-" if r["tcp_connections"] is None else str(r["tcp_connections"])
            extra = [f"{r['cpu_percent']:g}%",
                     f"{size(r['memory_bytes'])}/{size(limit) if limit else '-'}",
                     f"{size(r['net_rx_bytes'])}/{size(r['net_tx_bytes'])}",
                     f"{size(r['blkio_read_bytes'])}/{size(r['blkio_write_bytes'])}",
                     str(r["pids"]), tcp]  # fmt: skip
        elif with_stats:
            extra = ["-"] * len(STAT_COLUMNS)
        table.add_row(
            r["name"], r["version"], r["state"], r["address"], r["mac"], r["host"], *extra
        )
    Console().print(table)


if __name__ == "__main__":
    main()
