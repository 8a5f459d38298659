"""The article's migration as data: the lab's topology, its starting registry, its release
specs and its stages, each a list of steps the runner carries out in order.

Steps are pure data so they can be checked without running anything:

- ``Op``: one operator command through a public CLI (``httpdns`` or ``rolling``);
  ``httpdns`` writes run with ``--dry-run`` first (both outputs are printed and kept),
  ``dry_run_only`` ones are shown and not done (a refusal or a warning the stage
  demonstrates); ``rolling`` has no ``--dry-run``, its ``plan`` is the look-ahead.
- ``Until``: wait for a rollout condition read from ``rolling status --json``.
- ``Hold``: let the clients run for a while (the stage's observation time).
- ``Fault``: a failure injected on purpose (full runs only).
"""

from __future__ import annotations

from dataclasses import dataclass, field

ZONE = "lab.example"
WWW = f"www.{ZONE}"  # the access-layer proxy
QUOTES = f"quotes.{ZONE}"  # a read-only service (market data)
TRADE = f"trade.{ZONE}"  # a write service (orders)
NAMES = (WWW, QUOTES, TRADE)
TTL = 2  # seconds: answers refresh quickly, so the plot follows each action within seconds

# One /24 per namespace (its veth link), one per datacenter's Docker network; the
# registry's regions cover each client range's /16.
DATACENTERS = {"idc": "10.201.0.0/24", "cloud": "10.202.0.0/24"}
DOCKER_NETWORKS = {"idc": "10.201.1.0/24", "cloud": "10.202.1.0/24"}
REGIONS = {"north": "10.211.0.0/24", "mobile": "10.212.0.0/24"}
REGION_CIDRS = {"north": "10.211.0.0/16", "mobile": "10.212.0.0/16"}
CONTROLLERS = ("idc",)  # where a `rolling controller` runs (it acts on both datacenters)
HOME = {"north": "idc", "mobile": "cloud"}  # the datacenter whose node a region asks first
DOCKER_BRIDGE = "10.209.0.0/24"
LAB_RANGES = ["10.201.0.0/16", "10.202.0.0/16", "10.209.0.0/24", "10.211.0.0/16", "10.212.0.0/16"]
NODE_PORT = 8053
DNS_PORT = 5353


def registry_toml(cloud_writable: bool = False) -> str:
    """The starting registry (``httpdns apply``): everything at home, the cloud read-only."""
    lines = [
        "[datacenters.idc]",
        'kind = "idc"',
        "[datacenters.cloud]",
        'kind = "cloud"',
        f"writable = {'true' if cloud_writable else 'false'}",
    ]
    for region, cidr in REGION_CIDRS.items():
        lines += [f"[regions.{region}]", f'cidrs = ["{cidr}"]']
    for name, access in ((WWW, "ro"), (QUOTES, "ro"), (TRADE, "rw")):
        lines += [
            f'[services."{name}"]',
            f'access = "{access}"',
            f"ttl = {TTL}",
            "answers = 2",
            f'[services."{name}".traffic]',
            "default = {idc = 100}",
        ]
    return "\n".join(lines) + "\n"


def release_spec(
    service: str,
    replicas: dict[str, int],
    steps: tuple[tuple[int, str], ...] = (),
    bake: str = "15s",
) -> str:
    """A ``rolling deploy`` spec for the lab image. ``bake`` keeps the previous version
    running after a promotion longer than any client keeps using an answer it holds
    (TTL + refresh), so no client is ever sent to a container already gone."""
    from .docker import COMMAND, REPOSITORY

    command = ", ".join(f'"{c}"' for c in (part.replace('"', '\\"') for part in COMMAND))
    lines = [
        f'service = "{service}"',
        f'image = "{REPOSITORY}:{{version}}"',
        f"command = [{command}]",
        "port = 8080",
        'stop_timeout = "1s"',
        "[replicas]",
        *(f"{dc} = {n}" for dc, n in replicas.items()),
        "[resources]",
        "cores = 0.2",
        'memory = "32m"',
        "[health]",
        'http = "/"',
        'interval = "0.5s"',
        'timeout = "0.5s"',
        "rise = 1",
        "fall = 2",
        'deadline = "60s"',
        "[rollout]",
        'propagation = "1s"',
        f'bake = "{bake}"',
    ]
    for percent, pause in steps:
        lines += ["[[steps]]", f"percent = {percent}", f'pause = "{pause}"']
    return "\n".join(lines) + "\n"


@dataclass(frozen=True, slots=True)
class Op:
    """One command: ``tool`` is ``httpdns`` or ``rolling``; ``args`` after the tool's
    global options. ``SPEC:NAME`` in ``args`` is replaced by the path of a spec file."""

    tool: str
    args: tuple[str, ...]
    dry_run_only: bool = False
    expect_refusal: bool = False  # a dry run that must be refused (the guard rail shown)

    @property
    def writes(self) -> bool:
        """True for an ``httpdns`` command that changes the registry (``--dry-run`` first)."""
        return self.tool == "httpdns" and self.args[:2] in WRITE_COMMANDS


WRITE_COMMANDS = {
    ("traffic", "set"),
    ("traffic", "shift"),
    ("dc", "set"),
    ("dc", "drain"),
    ("dc", "undrain"),
    ("service", "set"),
}


@dataclass(frozen=True, slots=True)
class Until:
    """Wait until ``rolling status SERVICE --json`` shows ``phase`` (when given), the
    canary ``percent`` (when given), and every datacenter of ``healthy`` with that
    many healthy containers of the rollout's version."""

    service: str
    phase: str | None = None
    percent: int | None = None
    healthy: tuple[tuple[str, int], ...] = ()
    timeout: float = 90.0


@dataclass(frozen=True, slots=True)
class Hold:
    """Let the clients run ``seconds`` (``quick_seconds`` with ``--quick``)."""

    seconds: float
    quick_seconds: float


@dataclass(frozen=True, slots=True)
class Fault:
    """``kill-node DC`` (SIGKILL the datacenter's node, restarted after ``seconds``),
    or ``redis-failover`` (Sentinel promotes the replica)."""

    kind: str
    target: str = ""
    seconds: float = 0.0


Step = Op | Until | Hold | Fault


@dataclass(frozen=True, slots=True)
class Stage:
    """One stage of the scenario: a name and its steps."""

    name: str
    summary: str
    steps: tuple[Step, ...] = field(default_factory=tuple)
    full_only: tuple[Step, ...] = ()  # extra steps of the full run, after ``steps``


def httpdns(*args: str, dry_run_only: bool = False, refused: bool = False) -> Op:
    """An ``httpdns`` command."""
    return Op("httpdns", args, dry_run_only, refused)


def rolling(*args: str) -> Op:
    """A ``rolling`` command."""
    return Op("rolling", args)


SETUP: tuple[Step, ...] = (
    rolling("deploy", "SPEC:www-v1", "--version", "v1"),
    rolling("deploy", "SPEC:quotes-v1", "--version", "v1"),
    rolling("deploy", "SPEC:trade-v1", "--version", "v1"),
    Until(WWW, phase="done", healthy=(("idc", 2), ("cloud", 1))),
    Until(QUOTES, phase="done", healthy=(("idc", 2), ("cloud", 1))),
    Until(TRADE, phase="done", healthy=(("idc", 2), ("cloud", 1))),
)
"""Before the stages: v1 of every service, answered from home only. quotes and trade
get one dark container in the cloud already: ``rolling scale`` can only grow a
datacenter the release was deployed to (a placement comes from the deploy)."""

SPECS = {
    "www-v1": (WWW, {"idc": 2, "cloud": 1}, ()),
    "quotes-v1": (QUOTES, {"idc": 2, "cloud": 1}, ()),
    "trade-v1": (TRADE, {"idc": 2, "cloud": 1}, ()),
    "quotes-v2": (QUOTES, {"idc": 2, "cloud": 3}, ((20, "manual"), (50, "3s"))),
}
"""Spec files the steps name as ``SPEC:NAME``: service, replicas, canary steps."""

STAGES: tuple[Stage, ...] = (
    Stage(
        "stage 1: access proxies in the cloud",
        "Mobile clients enter through the cloud's access-layer proxies; everything else "
        "is served at home.",
        (
            httpdns("traffic", "set", WWW, "--region", "mobile", "cloud=100"),
            Hold(20, 12),
        ),
    ),
    Stage(
        "stage 2: a service layer in the cloud",
        "quotes gets containers in the cloud and 20 % of its traffic; so does www.",
        (
            rolling("scale", QUOTES, "idc=2", "cloud=2"),
            Until(QUOTES, healthy=(("idc", 2), ("cloud", 2))),
            httpdns("traffic", "set", QUOTES, "idc=80", "cloud=20"),
            httpdns("traffic", "set", WWW, "idc=80", "cloud=20"),
            Hold(20, 12),
        ),
    ),
    Stage(
        "stage 3: read-only remote",
        "The cloud stays read-only: quotes runs half in the cloud reading home data; "
        "trade (rw) stays home, and the guard rails show why (a cloud weight for trade "
        "never applies, draining the idc would leave trade answering nobody).",
        (
            httpdns("traffic", "set", QUOTES, "idc=50", "cloud=50"),
            httpdns("traffic", "set", TRADE, "idc=70", "cloud=30", dry_run_only=True),
            httpdns("dc", "drain", "idc", dry_run_only=True, refused=True),
            Hold(20, 12),
        ),
        full_only=(Fault("redis-failover"), Hold(10, 10)),
    ),
    Stage(
        "market rush: quotes grows in the cloud",
        "rolling plan sizes the rush; rolling scale grows quotes in the cloud from 2 to 3 "
        "containers; then half of the idc's weight shifts to the cloud.",
        (
            rolling(
                "plan",
                "--qps",
                "20000",
                "--cpu-per-kqps",
                "1.5",
                "--mem-per-kqps",
                "2",
                "--container",
                "4c8g",
                "--headroom",
                "0.3",
                "--split",
                "idc=50,cloud=50",
            ),
            rolling("scale", QUOTES, "idc=2", "cloud=3"),
            Until(QUOTES, healthy=(("idc", 2), ("cloud", 3))),
            httpdns(
                "traffic",
                "shift",
                "--service",
                QUOTES,
                "--from",
                "idc",
                "--to",
                "cloud",
                "--percent",
                "50",
            ),
            Hold(20, 12),
        ),
        full_only=(Fault("kill-node", "cloud", 8), Hold(15, 15)),
    ),
    Stage(
        "canary release of quotes v2",
        "quotes v2 goes out in steps: 20 % (held by a manual pause), paused and resumed, "
        "promoted to 50 %, then made stable; v1 stays warm through the bake.",
        (
            rolling("deploy", "SPEC:quotes-v2", "--version", "v2"),
            Until(QUOTES, phase="canary", percent=20, timeout=120),
            Hold(10, 8),
            rolling("pause", QUOTES),
            Hold(5, 4),
            rolling("resume", QUOTES),
            rolling("promote", QUOTES),
            Until(QUOTES, phase="canary", percent=50),
            Hold(8, 6),
            Until(QUOTES, phase="baking", timeout=60),
            Hold(10, 6),
        ),
    ),
    Stage(
        "stage 4: active-active",
        "The cloud becomes writable, trade's cloud container takes writes, and both "
        "datacenters serve every service 50/50.",
        (
            httpdns("dc", "set", "cloud", "--writable"),
            httpdns("traffic", "set", TRADE, "idc=50", "cloud=50"),
            httpdns("traffic", "set", QUOTES, "idc=50", "cloud=50"),
            httpdns("traffic", "set", WWW, "idc=50", "cloud=50"),
            Hold(20, 12),
        ),
    ),
    Stage(
        "drain the idc for maintenance, and back",
        "The idc is drained: every client is answered from the cloud; then it is "
        "undrained and the 50/50 split returns.",
        (
            httpdns("dc", "drain", "idc"),
            Hold(20, 12),
            httpdns("dc", "undrain", "idc"),
            Hold(15, 10),
        ),
    ),
)

REQUIRED = ("access", "service", "read-only", "rush", "canary", "active-active", "drain")
"""Words the report's stage names must contain, one stage each (the issue's contract)."""
