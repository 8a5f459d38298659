"""A real Prometheus (Debian's ``prometheus``, started here on loopback, 1 s scrape interval)
scraping a real ``httpdns serve``: counters after known traffic read back through its HTTP API,
answer shares equal to what 2,000 distinct clients received per datacenter and version,
``promtool check metrics`` clean, and every expression of the Grafana dashboard
(``dashboards/httpdns.json``) parsed by ``promtool`` and naming metrics the node exports.

Each test moves series no other test touches, so they pass alone and in any order."""

from __future__ import annotations

import http.client
import json
import re
import subprocess
import urllib.parse
import urllib.request
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import dns.message
import dns.query
import pytest

from tests.servers import (
    Node,
    free_port,
    free_udp_tcp_port,
    need,
    prometheus_query,
    prometheus_scalar,
    seed_test_registry,
    wait_until,
)

from .conftest import PAY, SHOP, SHOP_CANARY_V4, dc_of

DASHBOARD = Path(__file__).resolve().parents[2] / "dashboards" / "httpdns.json"
OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


@dataclass
class Stack:
    node: Node
    dns_port: int
    prometheus: str  # base URL

    def query(self, expr: str) -> list[dict[str, Any]]:
        """An instant query through the Prometheus HTTP API; the result vector."""
        return prometheus_query(self.prometheus, expr)

    def scalar(self, expr: str) -> float | None:
        return prometheus_scalar(self.prometheus, expr)


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    prometheus = need("prometheus")
    tmp = tmp_path_factory.mktemp("prometheus")
    dns_port = free_udp_tcp_port()
    node = Node(
        f"sqlite:///{tmp}/registry.db",
        tmp,
        args=("--dns", f"127.0.0.1:{dns_port}", "--zone", "example.org"),
    )
    node.start()
    port = free_port()
    (tmp / "prometheus.yml").write_text(
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
        "scrape_configs:\n  - job_name: httpdns\n    static_configs:\n"
        f"      - targets: ['127.0.0.1:{node.port}']\n"
    )
    log = open(tmp / "prometheus.log", "wb")  # noqa: SIM115 - closed at teardown
    proc = subprocess.Popen(
        [
            prometheus,
            f"--config.file={tmp / 'prometheus.yml'}",
            f"--storage.tsdb.path={tmp / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=log,
        stderr=log,
    )
    s = Stack(node, dns_port, f"http://127.0.0.1:{port}")
    try:
        seed_test_registry(node.url)

        def scraped() -> bool:
            if proc.poll() is not None:
                raise RuntimeError((tmp / "prometheus.log").read_text()[-2000:])
            try:
                return s.scalar('up{job="httpdns"}') == 1.0
            except OSError:
                return False

        wait_until(scraped, 30, "Prometheus scraping the node")
        yield s
    finally:
        proc.terminate()
        proc.wait(10)
        log.close()
        node.stop()


def test_counters_after_known_traffic(stack: Stack) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", stack.node.port, timeout=5)
    for i in range(37):  # google dialect, names not served: only this test moves that series
        conn.request("GET", f"/resolve?name=nothing{i}.example.org&ip=203.0.113.1")
        resp = conn.getresponse()
        assert json.loads(resp.read())["Status"] == 3
    conn.close()
    for _ in range(11):  # and the DNS listener's REFUSED
        dns.query.udp(
            dns.message.make_query("outside.test", "A"), "127.0.0.1", port=stack.dns_port, timeout=2
        )
    wait_until(
        lambda: (
            stack.scalar('httpdns_queries_total{dialect="google",rcode="NXDOMAIN"}') == 37
            and stack.scalar('httpdns_queries_total{dialect="dns",rcode="REFUSED"}') == 11
        ),
        15,
        "Prometheus to see the counters",
    )
    assert stack.scalar("httpdns_registry_revision") == float(
        json.load(OPENER.open(stack.node.url + "/healthz"))["revision"]
    )
    assert stack.scalar('httpdns_node_status{status="ok"}') == 1.0


def test_answer_shares_equal_what_2000_clients_received(stack: Stack) -> None:
    received: Counter[tuple[str, str]] = Counter()
    conn = http.client.HTTPConnection("127.0.0.1", stack.node.port, timeout=5)
    for i in range(2000):  # 2,000 distinct clients, each in its own /24
        conn.request("GET", f"/d?dn={SHOP}&ip=10.{i >> 8}.{i & 255}.7")
        resp = conn.getresponse()
        assert resp.status == 200
        first = resp.read().decode().split(";")[0]
        received[(dc_of(first), "v2" if first in SHOP_CANARY_V4.values() else "v1")] += 1
    conn.close()
    assert sum(received.values()) == 2000 and received[("idc", "v2")] + received[("cloud", "v2")]

    def seen() -> dict[tuple[str, str], int]:
        rows = stack.query(f'sum by (dc, version) (httpdns_answers_total{{service="{SHOP}"}})')
        return {
            (r["metric"]["dc"], r["metric"]["version"]): int(float(r["value"][1])) for r in rows
        }

    wait_until(lambda: seen() == dict(received), 15, f"answer shares {dict(received)}")


def test_promtool_check_metrics_is_clean(stack: Stack) -> None:
    promtool = need("promtool")
    with OPENER.open(f"{stack.node.url}/d?dn={PAY}&ip=203.0.113.2", timeout=5) as r:
        r.read()
    body = OPENER.open(stack.node.url + "/metrics", timeout=5).read()
    out = subprocess.run(
        [promtool, "check", "metrics"], input=body, capture_output=True, timeout=30
    )
    assert out.returncode == 0 and not out.stdout.strip() and not out.stderr.strip(), out


def dashboard_exprs(service: str = ".*") -> list[str]:
    """Every query of the dashboard, Grafana variables replaced as Grafana would."""
    dash = json.loads(DASHBOARD.read_text())
    exprs = [t["expr"] for p in dash["panels"] for t in p["targets"]]
    exprs += [v["definition"] for v in dash["templating"]["list"] if "definition" in v]
    subst = {"$__rate_interval": "1m", "$instance": ".*", "$service": service}
    out = []
    for e in exprs:
        for k, v in subst.items():
            e = e.replace(k, v)
        out.append(e)
    return out


def test_dashboard_expressions_parse_and_name_exported_metrics(
    stack: Stack, tmp_path: Path
) -> None:
    promtool = need("promtool")
    exprs = [e for e in dashboard_exprs() if not e.startswith("label_values(")]
    assert len(exprs) >= 12
    rules = {
        "groups": [
            {
                "name": "dashboard",
                "rules": [{"record": f"dashboard:expr{i}", "expr": e} for i, e in enumerate(exprs)],
            }
        ]
    }
    (tmp_path / "rules.yml").write_text(json.dumps(rules))  # YAML is a superset of JSON
    out = subprocess.run(
        [promtool, "check", "rules", str(tmp_path / "rules.yml")], capture_output=True, timeout=30
    )
    assert out.returncode == 0, out
    body = OPENER.open(stack.node.url + "/metrics", timeout=5).read().decode()
    exported = set(re.findall(r"^# TYPE (\w+) ", body, re.M))
    exported |= {f"{n}_{s}" for n in exported for s in ("total", "bucket", "sum", "count")}
    named = {m for e in dashboard_exprs() for m in re.findall(r"\bhttpdns_\w+", e)}
    assert named and named <= exported, named - exported
    for e in exprs:  # and Prometheus itself evaluates each one
        stack.query(e)


async def test_analysis_query_against_the_real_prometheus(stack: Stack) -> None:
    from deployer.analysis import Check, decide, query_prometheus

    for _ in range(5):  # the aliyun dialect's NXDOMAIN: only this test moves it
        with OPENER.open(f"{stack.node.url}/100000/d?host=nowhere.example.org", timeout=5) as r:
            r.read()
    wait_until(
        lambda: stack.scalar('httpdns_queries_total{dialect="aliyun",rcode="NXDOMAIN"}') == 5,
        15,
        "Prometheus to see the aliyun queries",
    )
    query = 'sum(httpdns_queries_total{dialect="aliyun",rcode="NXDOMAIN"})'
    bad = Check("errors", stack.prometheus, query, max=4)
    good = Check("errors", stack.prometheus, query, max=5)
    empty = Check("errors", stack.prometheus, 'httpdns_queries_total{dialect="none"}', max=1)
    down = Check("errors", f"http://127.0.0.1:{free_port()}", query, max=1)
    async with aiohttp.ClientSession() as session:
        values = {
            "bad": await query_prometheus(session, bad),
            "good": await query_prometheus(session, good),
            "empty": await query_prometheus(session, empty),
            "down": await query_prometheus(session, down),
        }
    assert values == {"bad": 5.0, "good": 5.0, "empty": None, "down": None}
    assert decide([bad], {"errors": values["bad"]}, 0, 1)[0] == "abort"
    assert decide([good], {"errors": values["good"]}, 0, 1)[0] == "proceed"
    assert decide([empty], {"errors": values["empty"]}, 0, 1)[0] == "hold"
