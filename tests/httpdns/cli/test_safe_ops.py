"""Safe operations (issue 13) through the real CLI against a real node: shift semantics,
guard rails, dry runs with measured impact, audit with before/after, history, revert,
roles and declarative apply.

The node here is this module's own (its own SQLite store and a config with role tokens),
so drains and reverts cannot disturb the package's shared registry.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.servers import Node, admin_call

from .conftest import ACTOR, TOKEN, fails, httpdns, ok

READ, OPS, DEPLOY = "read-secret-1", "ops-secret-22", "deploy-secret-333"
CONFIG = f"""
[tokens.viewer]
role = "read"
secret = "{READ}"

[tokens.oncall]
role = "ops"
secret_sha256 = "{hashlib.sha256(OPS.encode()).hexdigest()}"

[tokens.ci]
role = "deployer"
secret = "{DEPLOY}"
"""

WWW, API, MOBILE = "www.example.org", "api.example.org", "m.example.org"


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Node]:
    """A node with the article's first stage: idc (writable) and cloud (read-only), a
    mobile region, an ro web service on both, an rw API on idc alone."""
    tmp = tmp_path_factory.mktemp("safe-ops")
    (tmp / "httpdns.toml").write_text(CONFIG)
    n = Node(f"sqlite:///{tmp}/registry.db", tmp, token=TOKEN,
             args=("--config", str(tmp / "httpdns.toml"))).start()  # fmt: skip
    try:
        ok(n, "dc", "set", "idc", "--kind", "idc", "--writable")
        ok(n, "dc", "set", "cloud", "--kind", "cloud", "--read-only")
        ok(n, "region", "set", "mobile", "100.64.0.0/10")
        ok(n, "service", "set", WWW, "idc=60", "cloud=40")
        ok(n, "service", "set", API, "--access", "rw", "idc=100")
        ok(n, "service", "set", MOBILE, "idc=100")
        for i, (svc, dc) in enumerate([(WWW, "idc"), (WWW, "cloud"), (API, "idc"),
                                       (MOBILE, "idc"), (MOBILE, "cloud")]):  # fmt: skip
            ok(n, "endpoint", "set", svc, f"e{i}", "--dc", dc, "--address", f"192.0.2.{i + 1}")
        yield n
    finally:
        n.stop()


def _state(node: Node) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(ok(node, "state", "--json"))
    return data


def _revision(node: Node) -> int:
    return int(_state(node)["revision"])


def _traffic(node: Node, service: str) -> dict[str, dict[str, int]]:
    return dict(_state(node)["services"][service]["traffic"])


# -- 1. shift semantics ---------------------------------------------------------------------------


def test_shift_moves_a_share_of_the_source_and_reports_each_table(node: Node) -> None:
    name = "rush.example.org"
    ok(node, "service", "set", name, "idc=60", "cloud=40")
    ok(node, "traffic", "set", name, "--region", "mobile", "idc=9995", "cloud=9990")
    out = ok(node, "traffic", "shift", "--from", "idc", "--to", "cloud", "--percent", "50",
             "--service", name)  # fmt: skip
    assert _traffic(node, name) == {
        "default": {"idc": 30, "cloud": 70},
        "mobile": {"idc": 9985, "cloud": 10000},
    }
    lines = out.splitlines()
    assert lines[0].startswith("shift 50% of idc's weight to cloud: 40 weight moved in 2 tables")
    assert f"  {name} [default]: idc=60 cloud=40 -> idc=30 cloud=70 (moved 30 of idc)" in lines
    capped = next(line for line in lines if "[mobile]" in line)
    assert "moved 10 of idc; capped: cloud would pass the maximum weight 10000" in capped
    ok(node, "service", "delete", name)


def test_shift_without_service_touches_only_eligible_services_using_both(node: Node) -> None:
    before = {s: _traffic(node, s) for s in (API, MOBILE)}
    out = ok(node, "traffic", "shift", "--from", "idc", "--to", "cloud", "--percent", "10",
             "--dry-run")  # fmt: skip
    assert "nothing written" in out
    assert f"  skipped {API}: does not use cloud" in out
    assert f"  skipped {MOBILE}: does not use cloud" in out
    assert f"{WWW} [default]:" in out
    assert {s: _traffic(node, s) for s in (API, MOBILE)} == before  # dry run: nothing moved
    # an rw service that uses both while cloud is read-only is skipped too
    name = "rw.example.org"
    ok(node, "service", "set", name, "--access", "rw", "idc=90", "cloud=10")
    out = ok(node, "--json", "traffic", "shift", "--from", "idc", "--to", "cloud",
             "--percent", "10", "--dry-run")  # fmt: skip
    skipped = json.loads(out)["skipped"]
    assert {"service": name, "region": None,
            "reason": "cloud is read-only and the service is rw"} in skipped  # fmt: skip
    ok(node, "service", "delete", name)


# -- 2. guard rails -------------------------------------------------------------------------------


def test_drain_that_would_empty_is_refused_with_every_service(node: Node) -> None:
    rev = _revision(node)
    err = fails(node, "dc", "drain", "idc")
    assert err.startswith("error: would_empty: would leave ")
    assert f"{API} (default)" in err and f"{MOBILE} (default)" in err
    assert WWW not in err  # it still has cloud
    assert err.rstrip().endswith(", or --force")
    assert "would_empty" in fails(node, "dc", "drain", "idc", "--dry-run")
    assert _revision(node) == rev  # nothing written
    # the API names each service and region
    result = httpdns(node, "--json", "dc", "drain", "idc")
    assert result.returncode == 1


def test_forced_drain_is_reported_by_health_and_undone(node: Node) -> None:
    out = ok(node, "dc", "drain", "idc", "--force")
    try:
        assert "datacenter idc: drained" in out
        assert f"warning: answering empty now: {API} (default), {MOBILE} (default)" in out
        health = json.loads(ok(node, "health", "--json"))
        assert health["empty"] == {API: ["default"], MOBILE: ["default"]}
        assert f"answering empty: {API} (default), {MOBILE} (default)" in ok(node, "health")
    finally:
        ok(node, "dc", "undrain", "idc")
    assert json.loads(ok(node, "health", "--json"))["empty"] == {}


def test_read_only_flip_and_weights_to_zero_are_guarded(node: Node) -> None:
    rev = _revision(node)
    err = fails(node, "dc", "set", "idc", "--read-only")
    assert "would_empty" in err and API in err  # the rw API has no other writable datacenter
    err = fails(node, "traffic", "set", MOBILE, "idc=0", "cloud=0")
    assert "error: " in err  # a default table needs a weight (validation)
    # idc's weight to zero leaves the rw API only read-only cloud: nobody would be answered
    err = fails(node, "traffic", "set", API, "idc=0", "cloud=100")
    assert err.startswith(f"error: would_empty: would leave {API} (default) answering empty")
    assert err.rstrip().endswith("or --force")
    assert _revision(node) == rev and _traffic(node, API) == {"default": {"idc": 100}}
    # deleting the only endpoint of the rw API
    err = fails(node, "endpoint", "delete", API, "e2")
    assert err.startswith(f"error: would_empty: would leave {API} (default) answering empty; "
                          "add endpoints in another eligible datacenter first")  # fmt: skip
    # a region's own table that loses its datacenter falls back to default: not empty
    name = "region.example.org"
    ok(node, "service", "set", name, "idc=100")
    ok(node, "endpoint", "set", name, "i", "--dc", "idc", "--address", "192.0.2.60")
    ok(node, "endpoint", "set", name, "c", "--dc", "cloud", "--address", "198.51.100.60")
    ok(node, "traffic", "set", name, "--region", "mobile", "cloud=1")
    data = json.loads(ok(node, "--json", "dc", "drain", "cloud", "--dry-run"))
    assert data["empty"] == {}
    moved = data["impact"]["services"][name]["regions"]["mobile"]
    assert moved["before"] == {"cloud": 1.0} and moved["after"] == {"idc": 1.0}
    assert moved["moved"] == 1.0
    ok(node, "service", "delete", name)


def test_weights_that_never_apply_are_warnings(node: Node) -> None:
    out = ok(node, "traffic", "set", API, "idc=70", "cloud=30")
    try:
        assert (f"warning: {API}: traffic.default.cloud=30 never applies "
                "(cloud is read-only and the service is rw)") in out  # fmt: skip
        data = json.loads(ok(node, "--json", "traffic", "set", API, "idc=70", "cloud=30"))
        assert data["warnings"] == [
            f"{API}: traffic.default.cloud=30 never applies (cloud is read-only and the service is rw)"
        ]
    finally:
        ok(node, "traffic", "set", API, "idc=100")


def test_release_of_a_version_without_endpoints_needs_allow_empty(node: Node) -> None:
    err = fails(node, "release", "set", WWW, "--stable", "v1", "--canary", "v9", "--percent", "5")
    assert err == (
        f"error: no_endpoints: {WWW}: canary version 'v9' has no endpoints "
        "(deploy them first, or --allow-empty)\n"
    )
    out = ok(node, "release", "set", WWW, "--stable", "v1", "--canary", "v9", "--percent", "5",
             "--allow-empty")  # fmt: skip
    assert "v1 + v9 @ 5.0%" in out
    ok(node, "release", "set", WWW, "--stable", "v1")


# -- 3. impact before action ------------------------------------------------------------------------


def test_dry_run_measures_the_share_of_clients_that_move(node: Node) -> None:
    rev = _revision(node)
    data = json.loads(ok(node, "--json", "traffic", "set", WWW, "idc=30", "cloud=70", "--dry-run"))
    assert data["dry_run"] is True and data["revision"] == rev
    row = data["impact"]["services"][WWW]["regions"]["default"]
    assert data["impact"]["sample"] == 4096
    # 60/40 -> 30/70: about 30 % of clients move, all from idc to cloud
    assert abs(row["before"]["idc"] - 0.6) < 0.03 and abs(row["after"]["idc"] - 0.3) < 0.03
    assert abs(row["moved"] - 0.3) < 0.03
    assert row["moved"] == pytest.approx(row["before"]["idc"] - row["after"]["idc"], abs=1e-3)
    [change] = data["changes"]
    assert change["before"]["traffic"]["default"] == {"idc": 60, "cloud": 40}
    assert change["after"]["traffic"]["default"] == {"idc": 30, "cloud": 70}
    out = ok(node, "traffic", "set", WWW, "idc=30", "cloud=70", "--dry-run")
    assert out.startswith(f"dry run at revision {rev}, nothing written: service {WWW} traffic\n")
    assert "traffic.default.idc 60 -> 30; traffic.default.cloud 40 -> 70" in out
    pattern = (rf"  {re.escape(WWW)} \[default\]: cloud \d+\.\d% idc \d+\.\d% -> "
               r"cloud \d+\.\d% idc \d+\.\d%; 29\.9% of clients move\n")  # fmt: skip
    assert re.search(pattern, out), out
    assert _revision(node) == rev
    assert _traffic(node, WWW)["default"] == {"idc": 60, "cloud": 40}


SPARE = "spare"  # a datacenter nothing uses: deleting it is not refused as in use


@pytest.mark.parametrize(
    "args",
    [
        ("traffic", "set", WWW, "idc=50", "cloud=50"),
        ("traffic", "shift", "--from", "idc", "--to", "cloud", "--percent", "10", "--service", WWW),
        ("dc", "set", "edge2", "--kind", "cloud"),
        ("dc", "set", "cloud", "--labels", "tier=2"),
        ("dc", "drain", "cloud"),
        ("dc", "undrain", "cloud"),
        ("dc", "delete", SPARE),
        ("release", "set", WWW, "--stable", "v1", "--canary", "v2", "--percent", "5",
         "--allow-empty"),
        ("service", "set", WWW, "--ttl", "5"),
        ("service", "set", "new.example.org", "idc=1"),
        ("service", "delete", WWW),
        ("endpoint", "set", WWW, "e9", "--dc", "idc", "--address", "192.0.2.99"),
        ("endpoint", "delete", WWW, "e0"),
        ("region", "set", "north", "10.0.0.0/8"),
    ],
    ids=lambda args: " ".join(args[:2]),
)  # fmt: skip
def test_every_write_command_takes_dry_run_and_writes_nothing(
    node: Node, args: tuple[str, ...]
) -> None:
    if SPARE not in _state(node)["datacenters"]:
        ok(node, "dc", "set", SPARE, "--kind", "cloud")
    before = _state(node)
    out = ok(node, *args, "--dry-run")
    assert out.startswith(f"dry run at revision {before['revision']}, nothing written"), out
    assert "clients whose answer would change: up to " in out, out
    data = json.loads(ok(node, "--json", *args, "--dry-run"))
    assert data["dry_run"] is True and data["revision"] == before["revision"]
    assert data["changes"] and data["impact"]["sample"] >= 16
    assert _state(node) == before  # nothing written
    if args[:2] == ("service", "delete"):  # its clients all lose their answer
        assert f"  {WWW}: deleted; every client loses its answer" in out
        assert "up to 100.0%" in out and data["impact"]["moved"] == 1.0
    if args[:2] == ("traffic", "set"):  # 60/40 -> 50/50: ~10 % of the clients move
        assert 0.07 < data["impact"]["moved"] < 0.13, data["impact"]


# -- 4. history and undo ------------------------------------------------------------------------------


def test_audit_newest_first_with_before_after_and_verbs(node: Node) -> None:
    ok(node, "dc", "set", "edge", "--kind", "cloud")
    ok(node, "dc", "drain", "edge")
    ok(node, "dc", "undrain", "edge")
    now = _revision(node)
    data = json.loads(ok(node, "--json", "audit", "--limit", "3"))
    entries = data["entries"]
    assert [e["revision"] for e in entries] == [now, now - 1, now - 2]
    undrain, drain = entries[0]["changes"][0], entries[1]["changes"][0]
    assert (drain["verb"], undrain["verb"]) == ("drain", "undrain")
    assert drain["before"]["drained"] is False and drain["after"]["drained"] is True
    assert entries[0]["actor"] == ACTOR
    out = ok(node, "audit", "--limit", "3")
    assert "drain datacenter edge: drained False -> True" in out
    assert "undrain datacenter edge: drained True -> False" in out
    assert out.index("undrain datacenter") < out.index("drain datacenter edge: drained False")
    ok(node, "dc", "delete", "edge")
    paged = json.loads(ok(node, "--json", "audit", "--since", str(now - 2), "--limit", "2"))
    assert [e["revision"] for e in paged["entries"]] == [now - 1, now]


def test_history_and_revert(node: Node) -> None:
    name = "undo.example.org"
    ok(node, "service", "set", name, "idc=70", "cloud=30")
    ok(node, "endpoint", "set", name, "a", "--dc", "idc", "--address", "192.0.2.50")
    good = _revision(node)
    ok(node, "traffic", "set", name, "idc=10", "cloud=90")
    ok(node, "traffic", "shift", "--from", "idc", "--to", "cloud", "--percent", "50",
       "--service", name)  # fmt: skip
    ok(node, "endpoint", "set", name, "b", "--dc", "cloud", "--address", "198.51.100.50")
    history = json.loads(ok(node, "--json", "history", name))["entries"]
    assert [c["verb"] for e in history for c in e["changes"]] == [
        "set", "shift", "set", "set", "set"]  # fmt: skip
    assert all(c["key"].split("/")[0] == name for e in history for c in e["changes"])
    text = ok(node, "history", name)
    assert "shift service undo.example.org: traffic.default.idc 10 -> 5" in text

    rev = _revision(node)
    dry = ok(node, "revert", str(good), "--dry-run")
    assert "nothing written" in dry and f"endpoint {name}/b: deleted" in dry
    assert _revision(node) == rev
    out = ok(node, "revert", str(good))
    assert f"revert: 2 records restored as at revision {good} (revision {rev + 1})" in out
    assert _revision(node) == rev + 1  # one new revision
    svc = _state(node)["services"][name]
    assert svc["traffic"] == {"default": {"idc": 70, "cloud": 30}}
    assert set(svc["endpoints"]) == {"a"}
    entry = json.loads(ok(node, "--json", "audit", "--limit", "1"))["entries"][0]
    assert {c["verb"] for c in entry["changes"]} == {"revert"}
    assert "nothing to revert" in ok(node, "revert", str(rev + 1))
    ok(node, "service", "delete", name, "--force")


def test_revert_reaches_back_a_thousand_revisions(node: Node) -> None:
    name = "far.example.org"
    ok(node, "service", "set", name, "idc=70", "cloud=30")
    good = _revision(node)
    for i in range(1000):  # through the admin API: a thousand CLI processes take too long
        status, body = admin_call(node.url, "PUT", f"/api/v1/services/{name}/traffic",
                                  {"default": {"idc": 1 + i, "cloud": 1000 - i}}, token=TOKEN)  # fmt: skip
        assert status == 200, body
    now = _revision(node)
    assert now == good + 1000
    dry = ok(node, "revert", str(good), "--dry-run")
    assert f"dry run at revision {now}, nothing written: revert" in dry
    assert "traffic.default.idc 1000 -> 70; traffic.default.cloud 1 -> 30" in dry
    out = ok(node, "revert", str(good))
    assert f"revert: 1 record restored as at revision {good} (revision {now + 1})" in out
    assert _traffic(node, name) == {"default": {"idc": 70, "cloud": 30}}
    ok(node, "service", "delete", name)


# -- 5. roles ---------------------------------------------------------------------------------------------


def test_roles(node: Node) -> None:
    assert WWW in ok(node, "state", token=READ)
    ok(node, "audit", "--limit", "1", token=READ)
    err = fails(node, "traffic", "set", WWW, "idc=60", "cloud=40", token=READ)
    assert err == (f"error: forbidden: PUT /api/v1/services/{WWW}/traffic needs the ops role; "
                   "token 'viewer' has the read role\n")  # fmt: skip
    # ops shifts traffic and drains, but does not create services
    ok(node, "traffic", "set", WWW, "idc=60", "cloud=40", token=OPS)
    assert "needs the admin role" in fails(node, "service", "set", "x.example.org", "idc=1",
                                           token=OPS)  # fmt: skip
    assert "needs the deployer role" in fails(
        node, "endpoint", "set", WWW, "e1", "--weight", "50", token=OPS
    )
    ok(node, "endpoint", "set", WWW, "e1", "--weight", "100", token=DEPLOY)
    assert "needs the admin role" in fails(node, "dc", "set", "cloud", "--read-only", token=DEPLOY)
    assert "unknown token" in fails(node, "state", token="nope-nope")
    assert "no token given" in fails(node, "state", token="")
    entry = json.loads(ok(node, "--json", "audit", "--limit", "2"))["entries"]
    assert [e["actor"] for e in entry] == [f"ci:{ACTOR}", f"oncall:{ACTOR}"]


@pytest.mark.parametrize(
    ("token", "args", "needed"),
    [
        # read: state, explain, audit, nodes (and the other reads)
        (READ, ("state",), None),
        (READ, ("explain", WWW, "--uid", "device-1"), None),
        (READ, ("audit", "--limit", "1"), None),
        (READ, ("nodes",), None),
        (READ, ("history", WWW), None),
        (READ, ("traffic", "show", WWW), None),
        (READ, ("health",), None),
        (READ, ("traffic", "shift", "--from", "idc", "--to", "cloud", "--percent", "5",
                "--dry-run"), "ops"),
        (READ, ("export",), None),
        # ops: traffic, drains, releases; not endpoints, not the registry's shape
        (OPS, ("traffic", "shift", "--from", "idc", "--to", "cloud", "--percent", "5",
               "--dry-run"), None),
        (OPS, ("dc", "drain", "cloud", "--dry-run"), None),
        (OPS, ("dc", "undrain", "cloud", "--dry-run"), None),
        (OPS, ("release", "set", WWW, "--stable", "v1", "--dry-run"), None),
        (OPS, ("endpoint", "delete", WWW, "e0", "--dry-run"), "deployer"),
        (OPS, ("dc", "set", "cloud", "--writable", "--dry-run"), "admin"),
        # deployer: also endpoints
        (DEPLOY, ("endpoint", "set", WWW, "e9", "--dc", "idc", "--address", "192.0.2.9",
                  "--dry-run"), None),
        (DEPLOY, ("endpoint", "delete", WWW, "e0", "--dry-run"), None),
        (DEPLOY, ("region", "set", "north", "10.0.0.0/8", "--dry-run"), "admin"),
        (DEPLOY, ("dc", "delete", "cloud", "--dry-run"), "admin"),
        (DEPLOY, ("zone", "set", "example.org", "--ns", "ns1.example.org=192.0.2.53"), "admin"),
        (DEPLOY, ("revert", "1", "--dry-run"), "admin"),
        (DEPLOY, ("registry", "restore", "--from-node", "{self}"), "admin"),
    ],
    ids=lambda v: v if isinstance(v, str) and len(v) < 20 else None,
)  # fmt: skip
def test_each_role_reaches_what_the_issue_lists_through_the_cli(
    node: Node, token: str, args: tuple[str, ...], needed: str | None
) -> None:
    """A dry run is authorized like the write itself, so this matrix writes nothing."""
    rev = _revision(node)
    args = tuple(node.url if a == "{self}" else a for a in args)
    if needed is None:
        ok(node, *args, token=token)
    else:
        role = {READ: "read", OPS: "ops", DEPLOY: "deployer"}[token]
        err = fails(node, *args, token=token)
        assert err.startswith("error: forbidden: ") and f"needs the {needed} role" in err, err
        assert f"has the {role} role" in err, err
    assert _revision(node) == rev


# -- 6. declarative apply -----------------------------------------------------------------------------------


def test_apply_is_one_revision_and_idempotent(node: Node, tmp_path: Path) -> None:
    doc = tmp_path / "registry.toml"
    doc.write_text(
        """
[services."decl.example.org"]
access = "ro"
ttl = 30

[services."decl.example.org".traffic]
default = {idc = 50, cloud = 50}

[services."decl.example.org".endpoints.d1]
dc = "idc"
address = "192.0.2.77"

[services."decl.example.org".endpoints.d2]
dc = "cloud"
address = "198.51.100.77"

[services."decl.example.org".release]
stable = "v1"
"""
    )
    rev = _revision(node)
    dry = ok(node, "apply", str(doc), "--dry-run")
    assert "nothing written" in dry and _revision(node) == rev
    out = ok(node, "apply", str(doc))
    assert f"apply {doc}: 4 changes (revision {rev + 1})" in out
    assert "apply endpoint decl.example.org/d1: created" in out
    assert _state(node)["services"]["decl.example.org"]["release"]["stable"] == "v1"
    again = ok(node, "apply", str(doc))
    assert again.startswith("no change:") and _revision(node) == rev + 1
    # export -> apply is a no-op, and the export holds the declared service
    exported = tmp_path / "all.toml"
    ok(node, "export", "-o", str(exported))
    assert '[services."decl.example.org".endpoints.d1]' in exported.read_text()
    assert ok(node, "apply", str(exported)).startswith("no change:")
    # --prune deletes what the file does not name (here: a second endpoint)
    head = doc.read_text().split('[services."decl.example.org".endpoints.d2]')[0]
    doc.write_text(
        '[datacenters.idc]\nkind = "idc"\n[datacenters.cloud]\nkind = "cloud"\nwritable = false\n'
        '[regions.mobile]\ncidrs = ["100.64.0.0/10"]\n'
        + head
        + '[services."decl.example.org".release]\nstable = "v1"\n'
    )
    pruned = ok(node, "apply", str(doc), "--prune", "--dry-run", "--json")
    keys = {(c["op"], c["key"]) for c in json.loads(pruned)["changes"]}
    assert ("delete", "decl.example.org/d2") in keys
    assert ("delete", WWW) in keys  # everything not named goes
    ok(node, "service", "delete", "decl.example.org")


# -- 7. readable CLI: the effective split --------------------------------------------------------------


def test_traffic_show_measures_the_effective_split(node: Node) -> None:
    data = json.loads(ok(node, "--json", "traffic", "show", WWW, API))
    www = data[WWW]["regions"]["default"]["ipv4"]
    assert data[WWW]["sample"] == 4096
    assert set(www) == {"idc", "cloud"} and abs(www["idc"] - 0.6) < 0.03
    # the rw API is steered to idc only, whatever its table says
    assert data[API]["regions"]["default"]["ipv4"] == {"idc": 1.0}
    out = ok(node, "traffic", "show", API)
    assert out.splitlines() == [
        f"{API} (sample of 4096 client buckets)",
        "  default ipv4",
        f"    idc        {'#' * 40} 100.0%",
    ]
    assert "not_found" in fails(node, "traffic", "show", "nope.example.org")
