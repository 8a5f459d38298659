"""TTL-first traffic moves (``traffic set|shift --ttl-first``): clients converge on a
change within seconds instead of within the service's TTL.

1. lower the TTL of every service the change touches to a floor (``--ttl-floor``,
   default 5 s; services already at or below it are left alone);
2. wait one old TTL (plus ``PROPAGATION``): every answer cached with the old TTL has
   expired, so clients hold answers that expire within the floor;
3. make the change;
4. wait one floor TTL (plus ``PROPAGATION``): clients have asked again and got the
   new answer;
5. restore each TTL, unless someone changed it meanwhile (then it is left, and said).

**Crash safety.** Before the first TTL is lowered, a note of the TTLs to restore is
written to a local file (``$HTTPDNS_TTL_NOTE``, else
``$XDG_STATE_HOME/httpdns/ttl-first.json``, else ``~/.local/state/httpdns/...``),
keyed by server and service; it is removed once every TTL is restored. Ctrl-C or
SIGTERM restore at once (the change itself is not undone if it was made). After a
harder death (SIGKILL, a lost machine) ``httpdns traffic restore-ttl`` restores what
the note says, and a later ``--ttl-first`` run takes the old TTL from the note rather
than the floor it finds.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any

import click

from .client import Client, record, segment
from .errors import CliError

DEFAULT_FLOOR = 5  # seconds
PROPAGATION = 1.0  # seconds for a registry change to reach every node, added to each wait
SERVICE_KEYS = ("traffic", "access", "ttl", "answers", "all_down")  # a Service body's fields


@dataclass(frozen=True, slots=True)
class Lowering:
    """One service whose TTL goes from ``old`` to ``floor`` around the change."""

    service: str
    old: int
    floor: int


def note_path() -> Path:
    """Where the note of TTLs to restore lives."""
    given = os.environ.get("HTTPDNS_TTL_NOTE")
    if given:
        return Path(given)
    state = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(state) / "httpdns" / "ttl-first.json"


def read_notes(path: Path | None = None) -> dict[str, dict[str, dict[str, Any]]]:
    """server -> service -> ``{"ttl", "floor", "since"}`` (empty when there is no note)."""
    try:
        data = json.loads((path or note_path()).read_text())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        raise CliError(f"cannot read the TTL note {path or note_path()}: {exc}") from None
    return data if isinstance(data, dict) else {}


def _write_notes(notes: Mapping[str, Any], path: Path | None = None) -> None:
    path = path or note_path()
    try:
        if not any(notes.values()):
            path.unlink(missing_ok=True)
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(notes, indent=1, sort_keys=True))
        os.replace(tmp, path)  # never a half-written note
    except OSError as exc:
        raise CliError(f"cannot write the TTL note {path}: {exc.strerror or exc}") from None


def plan(client: Client, services: list[str], floor: int) -> list[Lowering]:
    """The services whose TTL is above ``floor`` (their old TTL from a leftover note when
    an interrupted run left them at its floor)."""
    state = client.state()
    noted = read_notes().get(client.server, {})
    out = []
    for name in sorted(set(services)):
        current = record(state, "services", name)
        if current is None:
            raise CliError(f"not_found: service {name!r} does not exist")
        ttl = int(current.get("ttl") or 0)
        note = noted.get(name)
        if note is not None and ttl == int(note.get("floor", -1)):
            ttl = int(note["ttl"])  # a run died before restoring: the real TTL is the noted one
        if ttl > floor:
            out.append(Lowering(name, ttl, floor))
    return out


def describe(lowered: list[Lowering], change: str) -> list[str]:
    """The steps of a TTL-first move, for ``--dry-run`` and the run itself."""
    if not lowered:
        return [f"ttl-first: no TTL above the floor to lower; {change} at once"]
    wait = max(x.old for x in lowered) + PROPAGATION
    floor = max(x.floor for x in lowered) + PROPAGATION
    return [
        *(f"ttl-first: lower the TTL of {x.service} {x.old}s -> {x.floor}s" for x in lowered),
        f"ttl-first: wait {wait:g}s (one old TTL + propagation) for cached answers to expire",
        f"ttl-first: {change}",
        f"ttl-first: wait {floor:g}s (one floor TTL + propagation)",
        *(f"ttl-first: restore the TTL of {x.service} to {x.old}s" for x in lowered),
    ]


def _set_ttl(client: Client, service: str, ttl: int, only_if: int | None = None) -> bool:
    """Set one service's TTL (compare-and-set on the snapshot read); with ``only_if``, only
    when the TTL is still that. Whether it was written."""
    state = client.state()
    current = record(state, "services", service)
    if current is None or (only_if is not None and current.get("ttl") != only_if):
        return False
    body = {k: current[k] for k in SERVICE_KEYS if k in current}
    body["ttl"] = ttl
    client.api("PUT", f"/services/{segment(service)}", body, if_match=state.get("revision"))
    return True


class _Terminated(Exception):
    """SIGTERM during a TTL-first move: unwind so the TTLs are restored."""


@contextlib.contextmanager
def _sigterm_unwinds() -> Iterator[None]:
    def handler(signum: int, frame: FrameType | None) -> None:
        raise _Terminated

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def restore(client: Client, lowered: list[Lowering], say: Callable[[str], None]) -> list[str]:
    """Put each TTL back (unless changed meanwhile) and drop its note; what was left."""
    left = []
    notes = read_notes()
    mine = notes.setdefault(client.server, {})
    for x in lowered:
        if _set_ttl(client, x.service, x.old, only_if=x.floor):
            say(f"ttl-first: restored the TTL of {x.service} to {x.old}s")
        else:
            left.append(x.service)
            say(f"ttl-first: the TTL of {x.service} changed meanwhile; left as it is")
        mine.pop(x.service, None)
    if not mine:
        notes.pop(client.server, None)
    _write_notes(notes)
    return left


def run(
    client: Client, services: list[str], floor: int, what: str, change: Callable[[], None],
    sleep: Callable[[float], None] = time.sleep,
) -> None:  # fmt: skip
    """Make ``change`` (one registry write through ``client``) TTL-first; ``what`` says
    what it is. Progress goes to stderr (stdout stays the change's output)."""

    def say(line: str) -> None:
        click.echo(line, err=True)

    lowered = plan(client, services, floor)
    if client.dry_run:
        for line in describe(lowered, what):
            click.echo(line, err=client.json)
        change()
        return
    if not lowered:
        say(describe(lowered, what)[0])
        change()
        return
    notes = read_notes()
    mine = notes.setdefault(client.server, {})
    for x in lowered:
        mine[x.service] = {"ttl": x.old, "floor": x.floor, "since": time.time()}
    _write_notes(notes)  # before the first write: a death from here on leaves the note
    changed: bool | None = False  # None: interrupted while the change was in flight
    try:
        with _sigterm_unwinds():
            for x in lowered:
                if not _set_ttl(client, x.service, x.floor):
                    raise CliError(f"not_found: service {x.service!r} does not exist")
                say(f"ttl-first: lowered the TTL of {x.service} {x.old}s -> {x.floor}s")
            wait = max(x.old for x in lowered) + PROPAGATION
            say(f"ttl-first: waiting {wait:g}s for answers cached with the old TTL to expire")
            sleep(wait)
            changed = None
            change()
            changed = True
            wait = floor + PROPAGATION
            say(f"ttl-first: waiting {wait:g}s before restoring the TTL")
            sleep(wait)
    except (KeyboardInterrupt, _Terminated):
        made = {
            True: "",
            False: " (the traffic change was not made)",
            None: " (the traffic change may or may not have been made: check it)",
        }
        say(f"ttl-first: interrupted; restoring the TTL{made[changed]}")
        restore(client, lowered, say)
        raise SystemExit(130) from None
    except BaseException:
        restore(client, lowered, say)
        raise
    restore(client, lowered, say)
