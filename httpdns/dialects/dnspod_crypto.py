"""DNSPod's encrypted dialect: ``/d?dn=<hex>&id=ID[&alg=des|aes][&ip=<hex>]``.

The ``dn`` (and ``ip``) parameters are encrypted with the key of account ``ID``
and hex-encoded; the whole answer body (``ip;ip,ttl`` exactly as the plain
dialect gives it) comes back encrypted the same way:

- ``des`` (the default): DES, ECB mode, PKCS#5 padding, the key's first 8 bytes
  (as Java's ``DESKeySpec`` takes them);
- ``aes``: AES (128/192/256 by key length), CBC mode, PKCS#7 padding, a random
  16-byte IV placed before the ciphertext.

The answer itself comes from the plain dialect's code path (and its caches): the
plain reply is remembered per decrypted request (``Replies``, checked against the
routing table like the front cache's entries) and only the encryption is per
request. Every failure answers the dialect's empty body with
a 4xx status (never JSON, never anything about the key): 404 for an unknown ``id``,
403 when the account has no key for ``alg``, and one 400 for everything about the
ciphertext — bad hex, odd length, wrong block size, bad padding, a wrong key — so
the status is no padding oracle. Replies carry ``Cache-Control: no-store`` and no
``deps``: a front cache keyed by the request never keeps an encrypted reply.

The ciphers come from ``cryptography`` (OpenSSL); DES is its ``TripleDES`` with the
8-byte key repeated three times, which is single DES.
"""

from __future__ import annotations

import binascii
import functools
import os
from binascii import unhexlify
from collections.abc import Callable, Mapping, Sequence

from cryptography.hazmat.decrepit.ciphers.algorithms import TripleDES
from cryptography.hazmat.primitives.ciphers import Cipher, CipherContext, modes
from cryptography.hazmat.primitives.ciphers.algorithms import AES

from registry.errors import RegistryError

from ..cache import BoundedCache
from ..config import DnspodAccount
from ..errors import HttpdnsError
from ..table import RoutingTable
from .base import Context, Query, Reply

ALGORITHMS = ("des", "aes")
DES_BLOCK = 8
AES_BLOCK = 16
MAX_HEX = 1024  # a 253-character name encrypted with AES is 2 * (16 + 256) = 544 hex digits
MAX_MEMO = 16_384  # decrypted DES parameters kept per key (a dict; cleared when full)
MAX_REPLIES = 20_000  # plain replies kept for encrypted requests, per process
MAX_REPLY_BYTES = 8 << 20  # and their bytes (parameters, peer, answer; roughly)
NO_STORE = (("Cache-Control", "no-store"),)
_PADS = [bytes((n,)) * n for n in range(AES_BLOCK + 1)]  # PKCS#7 padding of n bytes

Plain = Callable[[Query, Context], Reply]
# config, account, algorithm, decrypted parameters, peer, forwarded-for
_ReplyKey = tuple[int, str, str, tuple[tuple[str, str], ...], str | None, str | None]


class RandomPool:
    """Bytes of the OS CSPRNG (``os.urandom``), fetched ``size`` at a time: one system call
    per 256 IVs instead of one per IV. Each byte is handed out once; a forked child drops
    what its parent fetched (``os.register_at_fork``), so no two processes share an IV."""

    def __init__(self, size: int = 4096) -> None:
        self.size = size
        self._buf = b""
        self._at = 0
        self._blocks: list[bytes] = []  # for ``block``: 16 bytes each, handed out by pop()
        os.register_at_fork(after_in_child=self.reset)

    def reset(self) -> None:
        """Drop the fetched bytes."""
        self._buf, self._at = b"", 0
        self._blocks = []

    def block(self) -> bytes:
        """16 fresh random bytes (an AES IV): a list pop, the cheapest hand-out there is."""
        try:
            return self._blocks.pop()
        except IndexError:
            buf = os.urandom(self.size)
            self._blocks = [buf[i : i + AES_BLOCK] for i in range(0, len(buf), AES_BLOCK)]
            return self._blocks.pop()

    def __call__(self, n: int) -> bytes:
        """``n`` fresh random bytes."""
        at = self._at
        if at + n > len(self._buf):
            self._buf, at = os.urandom(max(n, self.size)), 0
        self._at = at + n
        return self._buf[at : at + n]


RANDOM = RandomPool()


class CipherError(ValueError):
    """The ciphertext cannot be decrypted with this key (hex, length, padding or text)."""


class DesCodec:
    """DES-ECB with PKCS#5 padding under one key.

    ECB encrypts each block on its own, so one long-lived encryptor and decryptor
    serve every request (fed whole blocks only; padding is added and checked here):
    that saves building two OpenSSL contexts per request. And since the same
    parameter always has the same ciphertext, decrypted parameters are remembered
    (``memo``): a device asking again for a name costs a dict lookup. Not
    thread-safe; a node answers queries on its event loop thread.
    """

    block = DES_BLOCK

    def __init__(self, key: bytes) -> None:
        if len(key) < DES_BLOCK:
            raise ValueError("a DES key has at least 8 bytes")
        cipher = Cipher(TripleDES(key[:DES_BLOCK] * 3), modes.ECB())  # K1=K2=K3: single DES
        self._enc: CipherContext = cipher.encryptor()
        self._dec: CipherContext = cipher.decryptor()
        self.memo: dict[str, str] = {}  # hex ciphertext -> text

    def encrypt(self, plain: bytes) -> bytes:
        """The ciphertext of ``plain``."""
        return self._enc.update(pad(plain, DES_BLOCK))

    def decrypt(self, data: bytes) -> bytes:
        """The plaintext of ``data``; ``CipherError`` when it is not ours."""
        if not data or len(data) % DES_BLOCK:
            raise CipherError("the ciphertext is not a whole number of DES blocks")
        return unpad(self._dec.update(data), DES_BLOCK)


class AesCodec:
    """AES-CBC with PKCS#7 padding and a fresh random IV before the ciphertext.

    Building an OpenSSL context costs several times the AES itself, so two long-lived
    contexts serve every request, CBC's chaining doing the rest. A CBC decryptor fed
    ``a + b`` (whole blocks) outputs ``D(a) ^ previous`` (dropped here: it depends on
    the previous call) and then ``D(b) ^ a``. So:

    - decrypting ``IV + ciphertext``, its output after the first block is exactly the
      plaintext (CBC decrypts each block with the block before it, the IV for the first);
    - encrypting, the IV is ``random()`` (16 bytes of the OS CSPRNG: ``RANDOM.block``); the decryptor fed
      ``last + iv`` gives ``x = D(iv) ^ last``, ``last`` being the long-lived CBC
      encryptor's previous output block, and that encryptor fed ``x`` outputs
      ``E(x ^ last) == iv``: it is now chained on the IV, and the padded plaintext that
      follows comes out as its ciphertext. IV and ciphertext are bit for bit what a new
      ``Cipher(AES(key), CBC(iv))`` gives (checked on every call: the first block must
      be the IV).

    Not thread-safe; a node answers queries on its event loop thread.
    """

    block = AES_BLOCK

    def __init__(self, key: bytes, random: Callable[[], bytes] = RANDOM.block) -> None:
        if len(key) not in (16, 24, 32):
            raise ValueError("an AES key has 16, 24 or 32 bytes")
        self._algorithm = AES(key)
        self._random = random
        self._dec: CipherContext = Cipher(self._algorithm, modes.CBC(bytes(16))).decryptor()
        self._start()

    def _start(self) -> None:
        self._enc: CipherContext = Cipher(self._algorithm, modes.CBC(bytes(16))).encryptor()
        self._last = bytes(16)  # the encryptor's chaining block (its IV, to begin with)

    def encrypt(self, plain: bytes) -> bytes:
        """A fresh IV followed by the ciphertext of ``plain``."""
        iv = self._random()
        return self.seal(iv + self._dec.update(self._last + iv)[AES_BLOCK:], pad(plain, AES_BLOCK))

    def seal(self, chain: bytes, padded: bytes) -> bytes:
        """A fresh IV followed by the ciphertext of ``padded`` (whole blocks), given
        ``chain``: the IV and ``x = D(iv) ^ last``, ``last`` being the encryptor's last
        output block (what ``decrypt_request`` returns, or ``encrypt`` computes)."""
        out = self._enc.update(chain[16:] + padded)
        if out[:16] != chain[:16]:  # the encryptor moved on meanwhile: cannot happen (one
            self._start()  # thread, nothing encrypts between the two calls); start over
            iv = chain[:16]
            return iv + Cipher(self._algorithm, modes.CBC(iv)).encryptor().update(padded)
        self._last = out[-16:]  # (16: AES_BLOCK, a literal on this per-request path)
        return out

    def decrypt(self, data: bytes) -> bytes:
        """The plaintext of ``IV + ciphertext``; ``CipherError`` when it is not ours."""
        if len(data) < 2 * AES_BLOCK or len(data) % AES_BLOCK:
            raise CipherError("the ciphertext is not an IV and whole AES blocks")
        return unpad(self._dec.update(data)[AES_BLOCK:], AES_BLOCK)

    def decrypt_request(self, dn: bytes, ip: bytes) -> tuple[bytes, bytes | None, bytes]:
        """The plaintexts of the hex parameters ``dn`` and ``ip`` (each an IV and
        ciphertext; ``ip`` may be empty: None back), still padded (``unpad`` checks and
        strips the padding: a caller that has seen the same padded text before may skip
        that), and the ``chain`` of a reply for ``seal``, all from one decryptor call: the
        decryptor is fed ``dn + ip + last + iv`` (``iv`` fresh from the CSPRNG), whose last
        block of output is ``x = D(iv) ^ last`` (see the class docstring). ``CipherError``
        when either parameter is not hex of an IV and whole blocks."""
        n, m = len(dn), len(ip)
        if n & 31 or not 64 <= n <= MAX_HEX or (m and (m & 31 or not 64 <= m <= MAX_HEX)):
            raise CipherError("the ciphertext is not an IV and whole AES blocks")
        try:
            data = unhexlify(dn + ip)  # hex digits only: no whitespace, unlike fromhex
        except binascii.Error:
            raise CipherError("not hex digits") from None
        iv = self._random()
        out = self._dec.update(data + self._last + iv)
        at = n >> 1  # dn's IV block, its text, ip's IV block, its text, then last and iv's
        return out[16:at], (out[at + 16 : -32] if m else None), iv + out[-16:]

    def decrypt_hexes(self, texts: Sequence[str]) -> list[str]:
        """The texts of hex parameters (each an IV and ciphertext), in one decryptor call
        (the IV block of each one resets the chain for it); ``CipherError`` when any is
        not ours."""
        for text in texts:
            if len(text) > MAX_HEX or len(text) < 4 * AES_BLOCK or len(text) % (2 * AES_BLOCK):
                raise CipherError("the ciphertext is not an IV and whole AES blocks")
        joined = "".join(texts)
        try:
            data = bytes.fromhex(joined)
        except ValueError:
            raise CipherError("not hex digits") from None
        if 2 * len(data) != len(joined):  # fromhex skips whitespace; we take none
            raise CipherError("not hex digits")
        out = self._dec.update(data)
        found, at = [], 0
        for text in texts:
            end = at + len(text) // 2
            try:
                found.append(unpad(out[at + AES_BLOCK : end], AES_BLOCK).decode("ascii"))
            except UnicodeDecodeError:
                raise CipherError("the plaintext is not ASCII text") from None
            at = end
        return found


Codec = DesCodec | AesCodec


def pad(data: bytes, block: int) -> bytes:
    """PKCS#7 padding (PKCS#5 for 8-byte blocks): 1 to ``block`` bytes, each their count."""
    return data + _PADS[block - len(data) % block]


def unpad(data: bytes, block: int) -> bytes:
    """``data`` without its PKCS#7 padding; ``CipherError`` when the padding is wrong."""
    n = data[-1] if data else 0
    if not 1 <= n <= block or not data.endswith(_PADS[n]):
        raise CipherError("bad padding (or a wrong key)")
    return data[:-n]


@functools.lru_cache(maxsize=256)
def codec(alg: str, key: bytes) -> Codec:
    """The codec of one algorithm and key, built once per process."""
    return DesCodec(key) if alg == "des" else AesCodec(key)


def account_codec(account: DnspodAccount, alg: str) -> Codec | None:
    """The account's codec for ``alg``, or None when it has no key for it."""
    key = account.des_key if alg == "des" else account.aes_key
    return None if key is None else codec(alg, key)


def decrypt_hex(c: Codec, text: str) -> str:
    """Decrypt a hex parameter to text; ``CipherError`` for anything wrong."""
    if isinstance(c, DesCodec):
        found = c.memo.get(text)
        if found is None:
            found = _decrypt_hex(c, text)
            if len(c.memo) >= MAX_MEMO:
                c.memo.clear()
            c.memo[text] = found
        return found
    return _decrypt_hex(c, text)


def _decrypt_hex(c: Codec, text: str) -> str:
    if len(text) > MAX_HEX:
        raise CipherError("the ciphertext is too long")
    try:
        data = bytes.fromhex(text)
        if 2 * len(data) != len(text):  # fromhex skips whitespace; we take none
            raise ValueError
    except ValueError:
        raise CipherError("not an even number of hex digits") from None
    try:
        return c.decrypt(data).decode("ascii")
    except UnicodeDecodeError:
        raise CipherError("the plaintext is not ASCII text") from None


def encrypt_hex(c: Codec, text: str) -> str:
    """Encrypt text and hex-encode it (lower case)."""
    return c.encrypt(text.encode()).hex()


def _empty(status: int) -> Reply:
    return Reply(status, "text/plain; charset=utf-8", b"", NO_STORE)


class Replies:
    """Plain replies of encrypted requests, keyed by the decrypted request (config,
    account, algorithm, parameters, peer, forwarded-for), each with the compiled
    services it came from: reused while those are unchanged, as the front cache does
    for plain requests. Never served as such: the caller encrypts them per request.
    Bounded by entries and by bytes (junk parameters are part of the key). The fast
    path keeps its own (``dnspod_lane.Lane``); this one serves the aiohttp front end
    and the requests the lane leaves to the dialect function."""

    def __init__(self, max_entries: int = MAX_REPLIES, max_bytes: int = MAX_REPLY_BYTES) -> None:
        self.entries: BoundedCache[_ReplyKey, Reply] = BoundedCache(max_entries, max_bytes)

    def get(self, key: _ReplyKey, table: RoutingTable) -> Reply | None:
        """The remembered reply, if the services it came from (``deps``) are unchanged."""
        hit = self.entries.get(key)
        if hit is None or not table.still_valid(hit.deps):
            return None
        return hit

    def put(self, key: _ReplyKey, reply: Reply) -> None:
        """Remember a reply (the oldest go when over a bound)."""
        _, _, _, params, peer, forwarded = key
        size = 200 + sum(len(k) + len(v) for k, v in params) + len(reply.body)
        self.entries.put(key, reply, size + len(peer or "") + len(forwarded or ""))


REPLIES = Replies()


def _answer(q: Query, ctx: Context, plain: Plain, key: _ReplyKey) -> Reply:
    """The plain reply for a decrypted request: remembered, or computed."""
    found = REPLIES.get(key, ctx.table)
    if found is not None:
        return found
    reply = plain(q, ctx)
    if reply.status == 200 and reply.deps:
        REPLIES.put(key, reply)
    return reply


def decrypted_params(params: Mapping[str, str], c: Codec) -> dict[str, str]:
    """The plain dialect's parameters of an encrypted request: ``dn`` (and ``ip`` when
    given) decrypted, ``id`` and ``alg`` dropped; ``CipherError`` for a bad ciphertext."""
    out = {k: v for k, v in params.items() if k not in _OURS}
    dn, ip = params.get("dn", ""), params.get("ip")
    if isinstance(c, AesCodec):  # both in one decryptor call
        texts = c.decrypt_hexes((dn, ip) if ip else (dn,))
        out["dn"] = texts[0]
        if ip:
            out["ip"] = texts[1]
        return out
    out["dn"] = decrypt_hex(c, dn)
    if ip:
        out["ip"] = decrypt_hex(c, ip)
    return out


def resolve_encrypted(q: Query, ctx: Context, plain: Plain) -> Reply:
    """Answer an encrypted ``/d`` query: decrypt ``dn`` (and ``ip``), answer through
    ``plain`` (the plain dialect), encrypt the whole body."""
    account = ctx.config.dnspod.get(q.params.get("id", ""))
    if account is None:
        return _empty(404)
    alg = (q.params.get("alg") or "des").lower()
    if alg not in ALGORITHMS:
        return _empty(400)
    c = account_codec(account, alg)
    if c is None:
        return _empty(403)
    try:
        params = decrypted_params(q.params, c)
    except CipherError:
        return _empty(400)
    inner = Query(params=params, peer=q.peer, forwarded_for=q.forwarded_for, account=q.account)
    # everything the plain answer can depend on (the config: trusted proxies)
    key = (id(ctx.config), account.id, alg, tuple(sorted(params.items())), q.peer, q.forwarded_for)
    try:
        reply = _answer(inner, ctx, plain, key)
    except (HttpdnsError, RegistryError) as exc:  # a bad name or ip inside the ciphertext
        return _empty(exc.status if 400 <= exc.status < 500 or exc.status == 503 else 400)
    if reply.status != 200 or not reply.body:  # nothing to encrypt: the name is not served
        return _empty(reply.status)
    body = c.encrypt(reply.body).hex().encode()
    if alg == "des":
        # DES-ECB is deterministic: the same request always gets the same ciphertext, so the
        # front cache may keep it like a plain answer (while its services are unchanged).
        return Reply(200, reply.content_type, body, (), reply.deps)
    return Reply(200, reply.content_type, body, NO_STORE)  # AES: a fresh IV every time


_OURS = frozenset(("id", "alg", "dn", "ip"))
