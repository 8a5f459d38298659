"""SDK parity features of the Python client against a real ``httpdns serve``: the DNSPod
encrypted dialect (DES, AES), dual-stack lookups, the persistent cache across client
processes and its age bound, ``network_changed()``, and HTTPS with SPKI pinning.

Requests are counted with the ``on_request`` hook, never inferred from timing.
"""

from __future__ import annotations

import asyncio
import base64
import json
import ssl
import subprocess
import sys
import textwrap
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from httpdns_client import (
    AsyncResolver,
    DnspodCipher,
    FileStore,
    PinMismatch,
    RequestRejected,
    ResolveError,
    Resolver,
    spki_pin,
)

from .conftest import (
    ACCOUNT,
    AES_KEY,
    DES_KEY,
    DNSPOD_DES_ONLY,
    DNSPOD_ID,
    QUOTES,
    QUOTES_V4,
    QUOTES_V6,
    ROOT,
    SECRET,
    TRADE,
    TRADE_V4,
    DemoServer,
    HttpsServer,
    dead_server,
    wait_for,
)
from .test_python_client import Recorder

ENCRYPTED: dict[str, dict[str, Any]] = {
    "des": {"dnspod_id": DNSPOD_ID, "dnspod_key": DES_KEY},
    "aes": {"dnspod_id": DNSPOD_ID, "dnspod_key": AES_KEY, "encryption": "aes"},
}


def plain_d(server: DemoServer, query: str) -> str:
    """The plain ``/d`` answer (this test process is the same client, 127.0.0.1)."""
    with urllib.request.urlopen(f"{server.base}/d?{query}", timeout=5) as resp:
        return str(resp.read().decode())


# -- the DNSPod encrypted dialect -------------------------------------------------------------


def test_the_published_des_example() -> None:
    cipher = DnspodCipher("des", DES_KEY)
    assert cipher.encrypt_hex("www.dnspod.cn") == "87ae992c1321f299da3c0210a9900ae7"
    assert cipher.decrypt_hex("87ae992c1321f299da3c0210a9900ae7") == "www.dnspod.cn"
    aes = DnspodCipher("aes", AES_KEY)
    one, two = aes.encrypt_hex("www.dnspod.cn"), aes.encrypt_hex("www.dnspod.cn")
    assert one != two and aes.decrypt_hex(one) == aes.decrypt_hex(two) == "www.dnspod.cn"


@pytest.mark.parametrize("encryption", list(ENCRYPTED))
def test_encrypted_dialect_end_to_end(dnspod_server: DemoServer, encryption: str) -> None:
    rec = Recorder()
    with Resolver([dnspod_server.base], **ENCRYPTED[encryption], **rec.hooks()) as r:
        a = r.resolve(QUOTES)
        assert a.source == "server" and set(a.addresses) <= QUOTES_V4
        want = plain_d(dnspod_server, f"dn={QUOTES}&ttl=1")
        assert ";".join(a.addresses) + f",{int(a.ttl)}" == want  # the same steered answer
        six = r.resolve(QUOTES, "AAAA")
        assert set(six.addresses) <= QUOTES_V6 and six.addresses
        assert r.resolve(f"nope.{QUOTES}").negative
        assert r.resolve(QUOTES).source == "cache"
    assert len(rec.ok_requests()) == 3


async def test_encrypted_dialect_async(dnspod_server: DemoServer) -> None:
    for options in ENCRYPTED.values():
        async with AsyncResolver([dnspod_server.base], **options) as r:
            assert set((await r.resolve(QUOTES)).addresses) <= QUOTES_V4
            both = await r.resolve_both(QUOTES, prefer="ipv6")
            assert set(both.ipv6.addresses) <= QUOTES_V6 and both.addresses[0] in QUOTES_V6


@pytest.mark.parametrize(
    ("options", "status", "hint"),
    [
        ({"dnspod_id": DNSPOD_ID, "dnspod_key": "wrong-key"}, 400, "check dnspod_key"),
        ({"dnspod_id": "4242", "dnspod_key": DES_KEY}, 404, "does not know dnspod_id 4242"),
        (
            {"dnspod_id": DNSPOD_DES_ONLY, "dnspod_key": AES_KEY, "encryption": "aes"},
            403,
            "has no aes key",
        ),
    ],
)
def test_encrypted_dialect_refusals_are_clear(
    dnspod_server: DemoServer, options: dict[str, Any], status: int, hint: str
) -> None:
    with (
        Resolver([dnspod_server.base], **options) as r,
        pytest.raises(RequestRejected) as info,
    ):
        r.resolve(QUOTES)
    assert info.value.status == status and hint in str(info.value)


def test_encrypted_options_are_checked() -> None:
    with pytest.raises(ValueError, match="dialect='d'"):
        Resolver(["http://192.0.2.1"], dialect="json", dnspod_id="1", dnspod_key=DES_KEY)
    with pytest.raises(ValueError, match="at least 8 bytes"):
        Resolver(["http://192.0.2.1"], dnspod_id="1", dnspod_key="short")
    with pytest.raises(ValueError, match="des or aes"):
        Resolver(["http://192.0.2.1"], dnspod_id="1", dnspod_key=DES_KEY, encryption="rc4")


# -- dual stack -------------------------------------------------------------------------------

BOTH_DIALECTS: dict[str, tuple[dict[str, Any], int]] = {
    "d": ({"dialect": "d"}, 1),
    "aliyun": ({"dialect": "aliyun", "account": ACCOUNT}, 1),
    "aliyun-signed": ({"dialect": "aliyun", "account": ACCOUNT, "secret": SECRET}, 1),
    "dnspod-des": (ENCRYPTED["des"], 1),
    "dnspod-aes": (ENCRYPTED["aes"], 1),
    "json": ({"dialect": "json"}, 2),
}


@pytest.mark.parametrize("dialect", list(BOTH_DIALECTS))
def test_resolve_both(dnspod_server: DemoServer, dialect: str) -> None:
    options, requests = BOTH_DIALECTS[dialect]
    rec = Recorder()
    with Resolver([dnspod_server.base], **options, **rec.hooks()) as r:
        both = r.resolve_both(QUOTES)
        assert both.ipv4.addresses and set(both.ipv4.addresses) <= QUOTES_V4
        assert both.ipv6.addresses and set(both.ipv6.addresses) <= QUOTES_V6
        assert both.addresses == both.ipv4.addresses + both.ipv6.addresses
        assert both.source == "server" and both.first == both.ipv4.addresses[0]
        assert len(rec.ok_requests()) == requests
        # Both families are cached now: no request for either, nor for resolve_both.
        assert r.resolve(QUOTES, "AAAA").source == "cache"
        again = r.resolve_both(QUOTES, prefer="ipv6")
        assert again.source == "cache"
        assert again.addresses == both.ipv6.addresses + both.ipv4.addresses
        trade = r.resolve_both(TRADE)  # A only
        assert set(trade.ipv4.addresses) <= TRADE_V4 and trade.ipv6.negative
        assert trade.addresses == trade.ipv4.addresses
        assert r.resolve_both(f"nope.{QUOTES}").negative
        assert len(rec.ok_requests()) == 3 * requests


@pytest.mark.parametrize("dialect", ["d", "json"])
def test_resolve_both_when_no_server_answers(dialect: str) -> None:
    with Resolver([dead_server()], dialect=dialect, system_fallback=False) as r:
        with pytest.raises(ResolveError):
            r.resolve_both(QUOTES)
        with pytest.raises(ValueError, match="prefer"):
            r.resolve_both(QUOTES, prefer="ipv5")
        literal = r.resolve_both("192.0.2.1")
        assert literal.addresses == ("192.0.2.1",) and literal.ipv6.negative
    with Resolver([dead_server()], dialect=dialect) as r:  # the system knows localhost
        assert "127.0.0.1" in r.resolve_both("localhost").addresses


# -- the persistent cache ---------------------------------------------------------------------

CHILD = textwrap.dedent(
    """
    import json, sys
    from httpdns_client import Resolver
    with Resolver([sys.argv[1]], cache_store=sys.argv[2]) as r:
        a = r.resolve(sys.argv[3])
        b = r.resolve_both(sys.argv[4])
        print(json.dumps([a.addresses, b.ipv4.addresses, b.ipv6.addresses]))
    """
)


def _child_resolves(server: str, store: Path) -> list[list[str]]:
    """Another client process resolves QUOTES (A) and TRADE (both) and exits."""
    env_path = str(ROOT / "clients" / "python")
    proc = subprocess.run(
        [sys.executable, "-c", f"import sys; sys.path.insert(0, {env_path!r})\n" + CHILD,
         server, str(store), QUOTES, TRADE],
        capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    return list(json.loads(proc.stdout))


def test_persistent_cache_survives_a_client_restart(own_server: DemoServer, tmp_path: Path) -> None:
    store = tmp_path / "cache" / "httpdns.json"
    quotes, trade4, trade6 = _child_resolves(own_server.base, store)
    assert store.stat().st_mode & 0o777 == 0o600
    own_server.stop()  # nothing to ask now: only the file can answer
    rec = Recorder()
    with Resolver([own_server.base], cache_store=store, system_fallback=False, **rec.hooks()) as r:
        a = r.resolve(QUOTES)
        assert a.source == "cache" and list(a.addresses) == quotes
        assert list(r.resolve(TRADE).addresses) == trade4
        assert not rec.requests  # nothing asked: the restored answers are fresh
        assert trade6 == []
        with pytest.raises(ResolveError):  # negative answers are not kept across runs
            r.resolve(TRADE, "AAAA")
    # Past the TTL (20 s) but within max_age: served stale, revalidated at once.
    own_server.start()
    later = time.time() + 25
    rec = Recorder()
    with Resolver(
        [own_server.base], cache_store=store, wall_clock=lambda: later, **rec.hooks()
    ) as r:
        a = r.resolve(QUOTES)
        assert a.source == "stale" and list(a.addresses) == quotes
        wait_for(lambda: len(rec.ok_requests(background=True)) == 1, what="a revalidation")
        wait_for(lambda: r.resolve(QUOTES).source == "cache", what="a fresh answer")


def test_persistent_cache_never_serves_past_max_age(tmp_path: Path) -> None:
    store = tmp_path / "httpdns.json"
    fetched = time.time() - 100
    records = [
        {"name": QUOTES, "type": "A", "addresses": ["192.0.2.20"], "ttl": 20,
         "fetched": fetched, "server": None},
        {"name": TRADE, "type": "A", "addresses": ["192.0.2.10"], "ttl": 3600,
         "fetched": fetched, "server": None},
    ]  # fmt: skip
    FileStore(store).save(records)
    # max_age 150: both restored (QUOTES stale, TRADE fresh).
    with Resolver([dead_server()], cache_store=store, max_age=150, system_fallback=False) as r:
        assert r.resolve(QUOTES).source == "stale"
        assert r.resolve(TRADE).source == "cache"
    # max_age 90: both are older than the bound, even TRADE within its TTL.
    with Resolver([dead_server()], cache_store=store, max_age=90, system_fallback=False) as r:
        assert r.peek(QUOTES) is None and r.peek(TRADE) is None
        with pytest.raises(ResolveError):
            r.resolve(TRADE)
    assert FileStore(store).load() == []  # and they are gone from the file
    # A restored answer stops being served when it reaches the bound.
    FileStore(store).save(records)
    now = [1000.0]
    wall = time.time()
    with Resolver(
        [dead_server()], cache_store=store, max_age=150, system_fallback=False,
        clock=lambda: now[0], wall_clock=lambda: wall,
    ) as r:  # fmt: skip
        assert r.resolve(TRADE).source == "cache"
        now[0] += 49
        assert r.resolve(TRADE).source == "cache"
        now[0] += 2  # 151 s after it was fetched, TTL 3600 notwithstanding
        assert r.peek(TRADE) is None
        with pytest.raises(ResolveError):
            r.resolve(TRADE)


def test_answers_are_saved_within_a_second_without_close(
    demo_server: DemoServer, tmp_path: Path
) -> None:
    store = tmp_path / "httpdns.json"
    r = Resolver([demo_server.base], cache_store=store)
    try:
        r.resolve(QUOTES)  # saved at once
        r.resolve(TRADE)  # within the second: saved by the timer thread
        names = lambda: {a["name"] for a in FileStore(store).load()}  # noqa: E731
        wait_for(lambda: names() == {QUOTES, TRADE}, timeout=5, what="the second save")
    finally:
        r.close()


async def test_async_answers_are_saved_within_a_second(
    demo_server: DemoServer, tmp_path: Path
) -> None:
    store = tmp_path / "httpdns.json"
    async with AsyncResolver([demo_server.base], cache_store=store) as r:
        await r.resolve(QUOTES)
        await r.resolve(TRADE)
        for _ in range(300):
            if {a["name"] for a in FileStore(store).load()} == {QUOTES, TRADE}:
                break
            await asyncio.sleep(0.02)  # poll interval while the loop's timer saves
        assert {a["name"] for a in FileStore(store).load()} == {QUOTES, TRADE}


def test_max_age_bounds_live_answers_too(demo_server: DemoServer) -> None:
    now = [1000.0]
    with Resolver([demo_server.base], max_age=5, clock=lambda: now[0]) as r:
        a = r.resolve(QUOTES)  # TTL 20, but never served past 5 s
        assert a.ttl == 20 and a.expires_at == 1005.0
        now[0] += 4.5
        assert r.resolve(QUOTES).source == "cache"
        now[0] += 1
        assert r.peek(QUOTES) is None  # not even stale
    with pytest.raises(ValueError, match="max_age"):
        Resolver([demo_server.base], max_age=0)


def test_garbled_cache_file_is_ignored(tmp_path: Path, demo_server: DemoServer) -> None:
    store = tmp_path / "httpdns.json"
    store.write_text("{not json")
    with Resolver([demo_server.base], cache_store=store) as r:
        assert r.resolve(QUOTES).source == "server"
    assert json.loads(store.read_text())["answers"][0]["name"] == QUOTES
    store.write_text(json.dumps({"format": 1, "answers": [{"name": QUOTES, "type": "A",
                     "addresses": ["not-an-ip"], "ttl": 20, "fetched": time.time()}]}))  # fmt: skip
    with Resolver([demo_server.base], cache_store=store) as r:
        assert r.peek(QUOTES) is None


async def test_async_persistent_cache(demo_server: DemoServer, tmp_path: Path) -> None:
    store = tmp_path / "httpdns.json"
    async with AsyncResolver([demo_server.base], cache_store=store) as r:
        first = await r.resolve(QUOTES, "AAAA")
    async with AsyncResolver([dead_server()], cache_store=store, system_fallback=False) as r:
        again = await r.resolve(QUOTES, "AAAA")
        assert again.source == "cache" and again.addresses == first.addresses


# -- network changes --------------------------------------------------------------------------


def test_network_changed_re_resolves_hot_names_and_marks_others_stale(
    demo_server: DemoServer,
) -> None:
    rec = Recorder()
    with Resolver([demo_server.base], **rec.hooks()) as r:
        r.resolve(QUOTES)
        r.resolve(QUOTES, "AAAA")
        r.prefetch([TRADE])  # cached but never used: not hot
        r.resolve(f"nope.{QUOTES}")  # negative
        assert len(rec.ok_requests()) == 4
        assert r.network_changed() == 2
        wait_for(lambda: len(rec.ok_requests(background=True)) == 3, what="two re-resolutions")
        refreshed = {(e.names, e.qtype) for e in rec.ok_requests(background=True)[1:]}
        assert refreshed == {((QUOTES,), "A"), ((QUOTES,), "AAAA")}
        wait_for(lambda: r.peek(QUOTES) is not None and r.peek(QUOTES).source == "cache")  # type: ignore[union-attr]
        trade = r.peek(TRADE)
        assert trade is not None and trade.source == "stale"  # served, then revalidated
        assert r.resolve(TRADE).source == "stale"
        wait_for(lambda: len(rec.ok_requests(background=True)) == 4, what="TRADE revalidated")
        assert r.resolve(f"nope.{QUOTES}").source == "server"  # negative answers dropped


def test_network_changed_forgets_server_backoff(demo_server: DemoServer) -> None:
    dead = dead_server()
    rec = Recorder()
    with Resolver([dead, demo_server.base], backoff=60, **rec.hooks()) as r:
        r.resolve(QUOTES)
        assert r.server_states()[0].retry_in > 30
        r.network_changed()
        wait_for(lambda: len(rec.ok_requests(background=True)) == 1, what="a re-resolution")
        # The re-resolution tried the dead server again: its backoff was forgotten.
        assert [e.server for e in rec.requests if e.background] == [dead, demo_server.base]


async def test_async_network_changed(demo_server: DemoServer) -> None:
    rec = Recorder()
    async with AsyncResolver([demo_server.base], **rec.hooks()) as r:
        await r.resolve(QUOTES)
        assert r.network_changed() == 1
        assert (await r.resolve(QUOTES)).source == "stale"
        for _ in range(500):
            if len(rec.ok_requests(background=True)) == 1:
                break
            await asyncio.sleep(0.01)  # poll interval while the background task runs
        assert len(rec.ok_requests(background=True)) == 1


# -- HTTPS with SPKI pinning ------------------------------------------------------------------


def test_spki_pin_matches_an_independent_computation(https_server: HttpsServer) -> None:
    pem = https_server.cert.cert_chain_pems[0].bytes()
    der = ssl.PEM_cert_to_DER_cert(pem.decode())
    assert spki_pin(der) == https_server.pin()


async def test_https_with_pins(https_server: HttpsServer) -> None:
    url = https_server.url
    trusted = ssl.create_default_context()
    https_server.ca.configure_trust(trusted)
    good = https_server.pin()
    backup = "sha256/" + base64.b64encode(b"\1" * 32).decode()
    options: dict[str, Any] = {"ssl_context": trusted, "tls_hostname": "httpdns.test"}
    with Resolver([url], pins=[backup, good], **options) as r:
        assert set((await asyncio.to_thread(r.resolve, QUOTES)).addresses) <= QUOTES_V4
    async with AsyncResolver([url], pins=[good], **options) as ar:
        assert set((await ar.resolve(QUOTES)).addresses) <= QUOTES_V4
    # A certificate the CA vouches for, but with another key: refused, like a dead server.
    for flavour in ("sync", "async"):
        rec = Recorder()
        kwargs = {"pins": [backup], "system_fallback": False, **options, **rec.hooks()}
        with pytest.raises(ResolveError):
            if flavour == "sync":
                with Resolver([url], **kwargs) as r:
                    await asyncio.to_thread(r.resolve, QUOTES)
            else:
                async with AsyncResolver([url], **kwargs) as ar:
                    await ar.resolve(QUOTES)
        error = rec.requests[0].error
        assert isinstance(error.__cause__, PinMismatch), error
        assert "is not pinned" in str(error)


def test_pins_are_checked() -> None:
    with pytest.raises(ValueError, match="https servers only"):
        Resolver(["http://192.0.2.1"], pins=["sha256/" + "A" * 43 + "="])
    with pytest.raises(ValueError, match="SHA-256"):
        Resolver(["https://192.0.2.1"], pins=["sha256/abc"])
