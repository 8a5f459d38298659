"""The DNSPod encrypted dialect: the ciphers against published and OpenSSL vectors, the
``[dnspod."ID"]`` config block, ``/d?dn=<hex>&id=ID`` answers (decrypted, they equal the
plain dialect's) on the dialect function, the fast path and the aiohttp app, and every
malformed request a clean empty 4xx (hypothesis over the hex parameters).

Golden vectors, recorded once:
- ``www.dnspod.cn`` under DES key ``dnspodpass`` is ``87ae992c1321f299da3c0210a9900ae7``,
  the example of Tencent Cloud's HTTPDNS documentation ("AES、DES 加密解密说明",
  cloud.tencent.com/document/api/379/3530);
- ``www.google.com`` under DES key ``weijianliao`` is ``cd52888ecabcac455a14ddbac7f03d97``
  (the example of the lua-resty-des README, checked against 119.29.29.29 there);
- the others were made with the OpenSSL CLI (``openssl enc -des-ecb -provider legacy``,
  ``openssl enc -aes-128-cbc`` / ``-aes-256-cbc`` with a fixed ``-iv``).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import random
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from httpdns import config as config_mod
from httpdns.config import Config, ConfigError, DnspodAccount
from httpdns.dialects import Context, Query, resolve_d
from httpdns.dialects.dnspod_crypto import (
    AesCodec,
    CipherError,
    DesCodec,
    RandomPool,
    codec,
    decrypt_hex,
    encrypt_hex,
    pad,
    unpad,
)
from httpdns.fasthttp import FastServer
from httpdns.routes import QUERY_ROUTES
from httpdns.table import RoutingTable
from registry.changes import Change
from registry.model import Datacenter, Endpoint, Service
from registry.snapshot import Snapshot

from .conftest import SHOP, make_config

DES_ID = "1001"
AES_ID = "1002"
BOTH_ID = "1003"
DES_KEY = "dnspodpass"
AES_KEY = "0123456789abcdef"
AES256_KEY = "0123456789abcdef0123456789abcdef"
NAME = "www.example.org"
ZONE = "example.org"
V4 = ["192.0.2.1", "192.0.2.2", "192.0.2.3"]
V6 = ["2001:db8::1", "2001:db8::2"]
ACCOUNTS = {
    DES_ID: DnspodAccount(DES_ID, des_key=DES_KEY.encode()),
    AES_ID: DnspodAccount(AES_ID, aes_key=AES_KEY.encode()),
    BOTH_ID: DnspodAccount(BOTH_ID, des_key=b"another-key", aes_key=AES256_KEY.encode()),
}


# -- the ciphers -----------------------------------------------------------------------------


def test_the_published_des_example() -> None:
    des = codec("des", DES_KEY.encode())
    assert encrypt_hex(des, "www.dnspod.cn") == "87ae992c1321f299da3c0210a9900ae7"
    assert decrypt_hex(des, "87ae992c1321f299da3c0210a9900ae7") == "www.dnspod.cn"
    assert decrypt_hex(des, "87AE992C1321F299DA3C0210A9900AE7") == "www.dnspod.cn"
    other = codec("des", b"weijianliao")  # longer keys: the first 8 bytes, as Java does
    assert encrypt_hex(other, "www.google.com") == "cd52888ecabcac455a14ddbac7f03d97"


def test_des_answer_body_matches_openssl() -> None:
    des = DesCodec(b"dnspodpa")  # the same key as dnspodpass (first 8 bytes)
    golden = "523362ba93cdece11dcc81c38e98dc73ef055b840fc746fcd84cbdcff638cefa"
    assert encrypt_hex(des, "192.0.2.20;198.51.100.21,20") == golden
    assert decrypt_hex(codec("des", DES_KEY.encode()), golden) == "192.0.2.20;198.51.100.21,20"


@pytest.mark.parametrize(
    ("key", "iv", "plain", "golden"),
    [
        (AES_KEY, "000102030405060708090a0b0c0d0e0f", "quotes.demo.example",
         "d186e7b286d5c05944e7f026220e0dbea82a027e2071a7be9ba7eb5e49311abb"),
        (AES256_KEY, "0f0e0d0c0b0a09080706050403020100", "www.dnspod.cn",
         "23e8dcaedc062fb5564decb755d9ca2d"),
    ],
)  # fmt: skip
def test_aes_matches_openssl(key: str, iv: str, plain: str, golden: str) -> None:
    aes = AesCodec(key.encode(), random=lambda: bytes.fromhex(iv))
    assert encrypt_hex(aes, plain) == iv + golden
    assert decrypt_hex(codec("aes", key.encode()), iv + golden) == plain


def test_aes_round_trips_with_random_ivs() -> None:
    aes = codec("aes", AES_KEY.encode())
    seen = set()
    for i in range(50):
        text = "a" * i + ".example.org"
        hex_text = encrypt_hex(aes, text)
        assert len(hex_text) == 2 * (16 + (len(text) // 16 + 1) * 16)
        assert decrypt_hex(aes, hex_text) == text
        seen.add(hex_text[:32])
    assert len(seen) == 50  # a fresh IV every time


def test_aes_encryption_is_textbook_cbc_under_fresh_ivs() -> None:
    """The long-lived contexts give exactly what a new Cipher per message gives."""
    rng = random.Random(17)
    ivs: list[bytes] = []

    def fresh() -> bytes:
        ivs.append(rng.randbytes(16))
        return ivs[-1]

    for key in (AES_KEY, AES256_KEY):
        aes = AesCodec(key.encode(), random=fresh)
        for i in range(60):
            text = rng.randbytes(i % 40)
            out = aes.encrypt(text)
            enc = Cipher(algorithms.AES(key.encode()), modes.CBC(ivs[-1])).encryptor()
            padded = text + bytes((16 - len(text) % 16,)) * (16 - len(text) % 16)
            assert out == ivs[-1] + enc.update(padded) + enc.finalize()
            # decrypting in between (another long-lived context) changes nothing
            assert aes.decrypt(out) == text


def test_aes_request_decryption_chains_the_reply_on_a_fresh_iv() -> None:
    """``decrypt_request`` gives the padded texts of dn and ip and, from the same decryptor
    call, the chaining block ``seal`` needs: the reply is textbook CBC under a fresh IV."""
    rng = random.Random(18)
    ivs: list[bytes] = []

    def fresh() -> bytes:
        ivs.append(rng.randbytes(16))
        return ivs[-1]

    aes = AesCodec(AES_KEY.encode(), random=fresh)
    sender = AesCodec(AES_KEY.encode())
    for i in range(40):
        dn, ip = "n" * i + ".example.org", f"198.51.100.{i}"
        dn_hex, ip_hex = encrypt_hex(sender, dn).encode(), encrypt_hex(sender, ip).encode()
        sent = (dn_hex, ip_hex) if i % 3 else (dn_hex.upper(), b"")
        got_dn, got_ip, chain = aes.decrypt_request(*sent)
        assert unpad(got_dn, 16) == dn.encode()
        assert got_ip is None if not sent[1] else unpad(got_ip, 16) == ip.encode()
        reply = rng.randbytes(i)
        out = aes.seal(chain, pad(reply, 16))
        enc = Cipher(algorithms.AES(AES_KEY.encode()), modes.CBC(ivs[-1])).encryptor()
        assert out == ivs[-1] + enc.update(pad(reply, 16)) + enc.finalize()
        assert aes.decrypt(out) == reply
    assert len(set(ivs)) == len(ivs)
    good = encrypt_hex(sender, NAME).encode()
    for bad in (b"", b"00", good[:-32], good[:-1] + b"g", b" " + good[1:], good + b"0" * 32 * 40):
        with pytest.raises(CipherError):
            aes.decrypt_request(bad, b"")
        with pytest.raises(CipherError):
            aes.decrypt_request(good, bad or b"00")
    # a chain gone stale (the encryptor moved on) still gives a correct reply
    _, _, stale = aes.decrypt_request(good, b"")
    aes.encrypt(b"in between")
    out = aes.seal(stale, pad(b"late", 16))
    assert out[:16] == stale[:16] and aes.decrypt(out) == b"late"


def test_aes_parameters_decrypt_in_one_call() -> None:
    aes = AesCodec(AES_KEY.encode())
    texts = ["www.example.org", "198.51.100.7", "a" * 40]
    hexes = [encrypt_hex(aes, t) for t in texts]
    assert aes.decrypt_hexes(hexes) == texts
    assert aes.decrypt_hexes(hexes[::-1]) == texts[::-1]
    assert aes.decrypt_hexes(hexes[:1]) == texts[:1]
    for bad in ("", "00", hexes[1][:-32], hexes[1][:-1] + "g", " " + hexes[1][1:],
                hexes[1][:32] + "87ae992c1321f299da3c0210a9900ae7"):  # fmt: skip
        with pytest.raises(CipherError):
            aes.decrypt_hexes([hexes[0], bad])
    assert aes.decrypt_hexes(hexes) == texts  # a failure leaves nothing behind


@pytest.mark.parametrize("way", ["call", "block"])
def test_random_pool_hands_out_each_byte_once_and_not_to_a_forked_child(way: str) -> None:
    pool = RandomPool(size=64)
    take = pool.block if way == "block" else lambda: pool(16)
    chunks = [take() for _ in range(20)]  # over several refills
    assert all(len(c) == 16 for c in chunks) and len(set(chunks)) == 20
    assert len(pool(100)) == 100  # more than the pool size at once
    take()  # the parent holds fetched bytes now
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: its next bytes must not be the parent's
        os.write(write, take())
        os._exit(0)
    os.close(write)
    child = os.read(read, 16)
    os.close(read)
    assert os.waitpid(pid, 0)[1] == 0
    assert len(child) == 16 and child != take()


def test_des_parameters_are_remembered_and_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    des = DesCodec(b"memo-key")
    monkeypatch.setattr("httpdns.dialects.dnspod_crypto.MAX_MEMO", 3)
    texts = [f"n{i}.example.org" for i in range(5)]
    hexes = [encrypt_hex(des, t) for t in texts]
    assert [decrypt_hex(des, h) for h in hexes[:3]] == texts[:3]
    assert des.memo == dict(zip(hexes[:3], texts[:3], strict=True))
    assert decrypt_hex(des, hexes[0]) == texts[0]  # from the memo
    assert decrypt_hex(des, hexes[3]) == texts[3]  # full: cleared, then kept
    assert des.memo == {hexes[3]: texts[3]}
    with pytest.raises(CipherError):
        decrypt_hex(des, hexes[4][:-2])
    assert hexes[4][:-2] not in des.memo  # failures are not remembered


@pytest.mark.parametrize(
    ("alg", "text"),
    [
        ("des", ""),  # nothing
        ("des", "87ae992c1321f299da3c0210a9900ae"),  # odd length
        ("des", "87ae992c1321f299da3c0210a9900ag7"),  # not hex
        ("des", "87ae992c1321f299da3c0210a9900a"),  # not whole blocks
        ("des", "87ae992c1321f299"),  # a block, but bad padding under this key
        ("des", "cd52888ecabcac455a14ddbac7f03d97"),  # another key's ciphertext
        ("des", "0x87ae992c1321f299da3c0210a9900ae7"),
        ("des", " 87ae992c1321f299da3c0210a9900ae7"),
        ("des", "87ae992c1321f299da3c0210a9900ae7" * 40),  # over the size bound
        ("aes", "000102030405060708090a0b0c0d0e0f"),  # an IV and no block
        ("aes", "d186e7b286d5c05944e7f026220e0dbea82a027e2071a7be9ba7eb5e49311a"),
        ("aes", "87ae992c1321f299da3c0210a9900ae787ae992c1321f299da3c0210a9900ae7"),
    ],
)
def test_malformed_ciphertexts_are_cipher_errors(alg: str, text: str) -> None:
    c = codec(alg, DES_KEY.encode() if alg == "des" else AES_KEY.encode())
    with pytest.raises(CipherError):
        decrypt_hex(c, text)


# -- configuration ---------------------------------------------------------------------------


def _load(tmp_path: Path, text: str) -> Config:
    path = tmp_path / "c.toml"
    path.write_text(text)
    return config_mod.load(str(path), env={})


def test_config_accounts(tmp_path: Path) -> None:
    cfg = _load(
        tmp_path,
        '[dnspod."1"]\ndes_key = "dnspodpass"\n'
        '[dnspod."2"]\naes_key = "0123456789abcdef"\n'
        '[dnspod."3"]\ndes_key = "12345678"\naes_key = "0123456789abcdef0123456789abcdef"\n',
    )
    assert cfg.dnspod["1"] == DnspodAccount("1", des_key=b"dnspodpass")
    assert cfg.dnspod["2"].des_key is None and cfg.dnspod["2"].aes_key == b"0123456789abcdef"
    assert cfg.dnspod["3"].des_key == b"12345678"
    assert "dnspodpass" not in repr(cfg.dnspod) and "0123456789" not in repr(cfg.dnspod)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('[dnspod."1"]\n', "needs des_key or aes_key"),
        ('[dnspod."1"]\nother = 1\n', "unknown key 'other'"),
        ('[dnspod."1"]\ndes_key = "short"\n', "at least 8 bytes"),
        ('[dnspod."1"]\naes_key = "0123456789abcde"\n', "16, 24 or 32 bytes"),
        ('[dnspod."1"]\ndes_key = 12345678\n', "must be a string"),
        ('[dnspod."a-b"]\ndes_key = "12345678"\n', "letters and digits"),
        ('dnspod = "x"\n', "must be a table"),
    ],
)
def test_config_rejects(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as info:
        _load(tmp_path, text)
    assert "short" not in str(info.value) and "0123456789abcde" not in str(info.value)


def test_sample_config_has_an_account() -> None:
    cfg = config_mod.load(str(Path(__file__).parents[2] / "httpdns.sample.toml"), env={})
    assert cfg.dnspod, "httpdns.sample.toml documents [dnspod.ID]"


# -- the dialect -----------------------------------------------------------------------------


def _table() -> RoutingTable:
    records: list[Any] = [
        Datacenter.from_dict("idc", {"kind": "idc", "writable": True}),
        Service.from_dict(
            NAME, {"access": "ro", "ttl": 60, "answers": 2, "traffic": {"default": {"idc": 100}}}
        ),
    ]
    for i, address in enumerate(V4 + V6):
        data = {"dc": "idc", "address": address, "port": 443, "version": "v1"}
        records.append(Endpoint.from_dict(NAME, f"e{i}", data))
    snapshot, _ = Snapshot().apply([Change.put(r) for r in records], 1)
    return RoutingTable(snapshot)


CONTEXT = Context(
    _table(), dataclasses.replace(config_mod.load(None, env={}, zones=[ZONE]), dnspod=ACCOUNTS)
)


def _plain(**params: str) -> bytes:
    reply = resolve_d(Query(params=params, peer="203.0.113.9"), CONTEXT)
    assert reply.status == 200
    return reply.body


def _encrypted(account: str, alg: str | None, **params: str) -> tuple[int, bytes, dict[str, str]]:
    key = ACCOUNTS[account].des_key if alg in (None, "des") else ACCOUNTS[account].aes_key
    assert key is not None
    c = codec(alg or "des", key)
    sent = dict(params)
    for name in ("dn", "ip"):
        if name in sent:
            sent[name] = encrypt_hex(c, sent[name])
    sent["id"] = account
    if alg is not None:
        sent["alg"] = alg
    reply = resolve_d(Query(params=sent, peer="203.0.113.9"), CONTEXT)
    # AES answers and errors are never kept; a DES answer is deterministic and may be
    no_store = dict(reply.headers).get("Cache-Control") == "no-store"
    assert no_store == (reply.status != 200 or not reply.body or (alg or "des") == "aes")
    body = decrypt_hex(c, reply.body.decode()).encode() if reply.body else b""
    return reply.status, body, dict(reply.headers)


@pytest.mark.parametrize(("account", "alg"), [(DES_ID, None), (DES_ID, "des"), (AES_ID, "aes"),
                                              (BOTH_ID, "des"), (BOTH_ID, "AES")])  # fmt: skip
@pytest.mark.parametrize(
    "params",
    [
        {"dn": NAME},
        {"dn": NAME, "ttl": "1"},
        {"dn": NAME, "ttl": "1", "type": "aaaa"},
        {"dn": NAME, "ttl": "1", "type": "addrs", "clientip": "1"},
        {"dn": NAME, "ip": "198.51.100.7", "ttl": "1", "query": "1"},
        {"dn": NAME.upper() + ".", "ip": "2001:db8:9::1", "ttl": "1"},
    ],
)
def test_encrypted_answers_equal_plain_answers(
    account: str, alg: str | None, params: dict[str, str]
) -> None:
    status, body, _ = _encrypted(account, alg.lower() if alg else None, **params)
    assert status == 200
    assert body == _plain(**params)
    assert body and body.split(b",")[0].split(b";")[0].decode() in V4 + V6


def test_unknown_name_is_an_empty_200() -> None:
    status, body, _ = _encrypted(DES_ID, None, dn=f"nope.{ZONE}")
    assert (status, body) == (200, b"")


def test_des_answers_are_deterministic_aes_answers_are_not() -> None:
    c = codec("des", DES_KEY.encode())
    q = Query(params={"dn": encrypt_hex(c, NAME), "id": DES_ID}, peer="203.0.113.9")
    assert resolve_d(q, CONTEXT).body == resolve_d(q, CONTEXT).body
    a = codec("aes", AES_KEY.encode())
    q = Query(params={"dn": encrypt_hex(a, NAME), "id": AES_ID, "alg": "aes"}, peer="203.0.113.9")
    assert resolve_d(q, CONTEXT).body != resolve_d(q, CONTEXT).body


def _raw(**params: str) -> tuple[int, bytes, str]:
    reply = resolve_d(Query(params=params, peer="203.0.113.9"), CONTEXT)
    assert dict(reply.headers).get("Cache-Control") == "no-store"
    return reply.status, reply.body, reply.content_type


DES_DN = "87ae992c1321f299da3c0210a9900ae7"  # www.dnspod.cn under dnspodpass: not served here


@pytest.mark.parametrize(
    ("params", "status"),
    [
        ({"dn": DES_DN, "id": "9999"}, 404),  # unknown id
        ({"dn": DES_DN, "id": ""}, 404),
        ({"dn": DES_DN, "id": DES_ID, "alg": "aes"}, 403),  # no AES key for this account
        ({"dn": DES_DN, "id": AES_ID}, 403),  # no DES key
        ({"dn": DES_DN, "id": DES_ID, "alg": "rc4"}, 400),
        ({"id": DES_ID}, 400),  # no dn
        ({"dn": DES_DN[:-1], "id": DES_ID}, 400),  # odd hex
        ({"dn": DES_DN[:-2] + "zz", "id": DES_ID}, 400),  # bad hex
        ({"dn": DES_DN[:-4], "id": DES_ID}, 400),  # wrong block size
        ({"dn": DES_DN[:16], "id": DES_ID}, 400),  # bad padding
        ({"dn": "cd52888ecabcac455a14ddbac7f03d97", "id": DES_ID}, 400),  # wrong key
        ({"dn": DES_DN, "id": BOTH_ID}, 400),  # wrong key
        ({"dn": DES_DN, "id": DES_ID, "ip": "3132"}, 400),  # ip: not whole blocks
        ({"dn": DES_DN, "id": AES_ID, "alg": "aes"}, 400),  # a DES block is no IV + block
        ({"dn": DES_DN, "id": DES_ID, "type": "mx"}, 400),  # decrypted, then refused
    ],
)
def test_malformed_requests_are_empty_4xx(params: dict[str, str], status: int) -> None:
    got, body, ctype = _raw(**params)
    assert (got, body) == (status, b"")
    assert ctype.startswith("text/plain")


@pytest.mark.parametrize(("plain", "status"), [("not a name!", 400), ("1.2.3.4;x", 400)])
def test_a_bad_name_or_ip_inside_the_ciphertext_is_an_empty_400(plain: str, status: int) -> None:
    c = codec("des", DES_KEY.encode())
    assert _raw(dn=encrypt_hex(c, plain), id=DES_ID)[:2] == (status, b"")
    assert _raw(dn=encrypt_hex(c, NAME), ip=encrypt_hex(c, plain), id=DES_ID)[:2] == (400, b"")


HEX_ISH = st.text(alphabet="0123456789abcdefABCDEF", max_size=200) | st.text(max_size=60)
PROPERTY = settings(
    max_examples=300,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)


@PROPERTY
@given(
    dn=HEX_ISH,
    ip=st.none() | HEX_ISH,
    account=st.sampled_from([DES_ID, AES_ID, BOTH_ID, "1", ""]),
    alg=st.sampled_from([None, "des", "aes", "DES", "x"]),
)
def test_any_hex_parameters_answer_empty_4xx_or_an_answer(
    dn: str, ip: str | None, account: str, alg: str | None
) -> None:
    params = {"dn": dn, "id": account}
    if ip is not None:
        params["ip"] = ip
    if alg is not None:
        params["alg"] = alg
    status, body, _ = _raw(**params)
    assert status in (200, 400, 403, 404)
    if status != 200:
        assert body == b""
    else:  # the rare random ciphertext that decrypts to a name: hex, or empty
        assert all(ch in b"0123456789abcdef" for ch in body)


@PROPERTY
@given(noise=st.binary(min_size=1, max_size=40), alg=st.sampled_from(["des", "aes"]))
def test_any_ciphertext_under_the_right_key_never_fails_the_server(noise: bytes, alg: str) -> None:
    key = DES_KEY.encode() if alg == "des" else AES_KEY.encode()
    account = DES_ID if alg == "des" else AES_ID
    c = codec(alg, key)
    dn = c.encrypt(noise).hex()  # valid framing, arbitrary plaintext
    status, body, _ = _raw(dn=dn, id=account, alg=alg)
    assert status in (200, 400)
    assert status == 200 or body == b""


def test_remembered_plain_answers_follow_registry_changes() -> None:
    table = _table()
    ctx = Context(table, CONTEXT.config)
    c = codec("des", DES_KEY.encode())
    q = Query(params={"dn": encrypt_hex(c, NAME), "id": DES_ID}, peer="203.0.113.9")

    def answer() -> set[str]:
        body = resolve_d(q, ctx).body
        return set(decrypt_hex(c, body.decode()).split(";"))

    first = answer()
    assert first <= set(V4) and answer() == first
    snapshot = table.snapshot
    moved = [
        Change.put(Endpoint.from_dict(NAME, f"e{i}", {"dc": "idc", "address": f"192.0.2.{50 + i}",
                                                      "port": 443, "version": "v1"}))
        for i in range(len(V4))
    ]  # fmt: skip
    new, _ = snapshot.apply(moved, snapshot.revision + 1)
    table.update(new, frozenset({NAME}))
    assert answer() <= {"192.0.2.50", "192.0.2.51", "192.0.2.52"}


# -- the front ends --------------------------------------------------------------------------


def test_fast_path_answers_encrypted_and_errors_without_json(
    caplog: pytest.LogCaptureFixture,
) -> None:
    server = FastServer(CONTEXT, QUERY_ROUTES, asyncio.Protocol)
    found = server.router.match(b"GET", b"/d")
    assert found is not None
    route = found[0]

    def get(target: bytes) -> tuple[bytes, bytes]:
        head, tail, _ = server.respond(route, None, b"GET", target, b"", b"", "203.0.113.9")
        headers, _, body = (head + tail).partition(b"\r\n\r\n")
        return headers, body

    c = codec("des", DES_KEY.encode())
    target = f"/d?dn={encrypt_hex(c, NAME)}&id={DES_ID}&ttl=1".encode()
    with caplog.at_level(logging.DEBUG):
        head, body = get(target)
        assert head.startswith(b"HTTP/1.1 200 ")
        assert b"Cache-Control: no-store" not in head
        assert decrypt_hex(c, body.decode()).encode() == _plain(dn=NAME, ttl="1")
        assert server.cache.get((target, "203.0.113.9", None)) is not None  # DES: kept
        assert get(target)[1] == body  # the same ciphertext, from the front cache
        a = codec("aes", AES_KEY.encode())
        aes = f"/d?dn={encrypt_hex(a, NAME)}&id={AES_ID}&alg=aes".encode()
        head, body = get(aes)
        assert head.startswith(b"HTTP/1.1 200 ") and b"Cache-Control: no-store" in head
        assert server.cache.get((aes, "203.0.113.9", None)) is None  # AES: never kept
        assert get(aes)[1] != body  # a fresh IV every time
        head, body = get(b"/d?dn=abc&id=" + DES_ID.encode())
        assert head.startswith(b"HTTP/1.1 400 ") and body == b""
    assert DES_KEY not in caplog.text


@pytest.fixture
def config() -> Config:
    return dataclasses.replace(make_config(), dnspod=ACCOUNTS)


async def test_aiohttp_app_serves_the_encrypted_dialect(served: TestClient) -> None:
    c = codec("aes", AES_KEY.encode())
    params = {"dn": encrypt_hex(c, SHOP), "id": AES_ID, "alg": "aes", "ttl": "1"}
    params["ip"] = encrypt_hex(c, "10.1.2.3")
    resp = await served.get("/d", params=params)
    assert resp.status == 200
    assert resp.headers["Cache-Control"] == "no-store"
    plain = await served.get("/d", params={"dn": SHOP, "ip": "10.1.2.3", "ttl": "1"})
    assert decrypt_hex(c, await resp.text()) == await plain.text()
    resp = await served.get("/d", params={"dn": "00", "id": "424242"})
    assert (resp.status, await resp.read()) == (404, b"")
