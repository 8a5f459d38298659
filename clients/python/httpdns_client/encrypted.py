"""DNSPod's encrypted dialect, client side: ``/d?dn=<hex>&id=ID[&alg=aes]``.

The name (``dn``) is encrypted with the account's key and hex-encoded; the answer body
comes back encrypted the same way:

- ``des``: DES, ECB mode, PKCS#5 padding, the key's first 8 bytes (Java's ``DESKeySpec``);
- ``aes``: AES, CBC mode, PKCS#7 padding, a random 16-byte IV before the ciphertext.

The ciphers come from the ``cryptography`` package (``pip install
'httpdns-client[dnspod]'``), imported only when an encrypted resolver is made.
"""

from __future__ import annotations

import binascii
import os
from collections.abc import Callable
from typing import Any, Literal
from urllib.parse import quote

from .core import QType, RequestRejected
from .protocol import Protocol, Record, Request

Encryption = Literal["des", "aes"]
ENCRYPTIONS: tuple[Encryption, ...] = ("des", "aes")


class DnspodCipher:
    """One account key and algorithm: text in, hex out, and back."""

    def __init__(
        self, encryption: str, key: str | bytes, random: Callable[[int], bytes] = os.urandom
    ) -> None:
        try:
            from cryptography.hazmat.decrepit.ciphers.algorithms import TripleDES
            from cryptography.hazmat.primitives.ciphers import Cipher, modes
            from cryptography.hazmat.primitives.ciphers.algorithms import AES
        except ImportError:  # pragma: no cover - depends on the installation
            raise ImportError(
                "the DNSPod encrypted dialect needs the cryptography package: "
                "pip install 'httpdns-client[dnspod]'"
            ) from None
        raw = key.encode() if isinstance(key, str) else bytes(key)
        self.encryption = encryption
        self._random = random
        self._cipher: Any = Cipher
        self._modes: Any = modes
        if encryption == "des":
            if len(raw) < 8:
                raise ValueError("a DES key has at least 8 bytes (the first 8 are used)")
            self._algorithm: Any = TripleDES(raw[:8] * 3)  # K1=K2=K3 is single DES
            self.block = 8
        elif encryption == "aes":
            if len(raw) not in (16, 24, 32):
                raise ValueError("an AES key has 16, 24 or 32 bytes")
            self._algorithm = AES(raw)
            self.block = 16
        else:
            raise ValueError(f"encryption {encryption!r} is not des or aes")

    def encrypt_hex(self, text: str) -> str:
        """``text`` encrypted and hex-encoded (with its IV first for AES)."""
        data = text.encode()
        n = self.block - len(data) % self.block
        data += bytes((n,)) * n
        if self.encryption == "des":
            enc = self._cipher(self._algorithm, self._modes.ECB()).encryptor()
            return str((enc.update(data) + enc.finalize()).hex())
        iv = self._random(16)
        enc = self._cipher(self._algorithm, self._modes.CBC(iv)).encryptor()
        return str((iv + enc.update(data) + enc.finalize()).hex())

    def decrypt_hex(self, text: str) -> str:
        """The text of a hex ciphertext; ``ValueError`` when it is not one of ours."""
        data = binascii.unhexlify(text.strip())
        if self.encryption == "des":
            if not data or len(data) % 8:
                raise ValueError("the answer is not whole DES blocks")
            dec = self._cipher(self._algorithm, self._modes.ECB()).decryptor()
        else:
            if len(data) < 32 or len(data) % 16:
                raise ValueError("the answer is not an IV and whole AES blocks")
            dec = self._cipher(self._algorithm, self._modes.CBC(data[:16])).decryptor()
            data = data[16:]
        plain: bytes = dec.update(data) + dec.finalize()
        n = plain[-1]
        if not 1 <= n <= self.block or plain[-n:] != bytes((n,)) * n:
            raise ValueError("the answer does not decrypt with this key (bad padding)")
        return plain[:-n].decode("ascii")


class EncryptedProtocol(Protocol):
    """The ``d`` dialect with DNSPod's encryption (account ``dnspod_id``)."""

    def __init__(
        self,
        *,
        dnspod_id: str,
        dnspod_key: str | bytes,
        encryption: str = "des",
        uid: str | None = None,
        negative_ttl: float = 30.0,
    ) -> None:
        super().__init__("d", uid=uid, negative_ttl=negative_ttl)
        if not str(dnspod_id).isalnum():
            raise ValueError(f"dnspod_id {dnspod_id!r} must be letters and digits")
        self.dnspod_id = str(dnspod_id)
        self.cipher = DnspodCipher(encryption, dnspod_key)

    @property
    def encryption(self) -> str:
        """``des`` or ``aes``."""
        return self.cipher.encryption

    def encrypted_path(self, name: str, kind: str) -> str:
        """``/d?dn=<hex>&id=ID[&alg=aes]&type=KIND&ttl=1`` (and ``uid``)."""
        alg = "&alg=aes" if self.cipher.encryption == "aes" else ""
        path = f"/d?dn={self.cipher.encrypt_hex(name)}&id={self.dnspod_id}{alg}"
        path += f"&type={kind}&ttl=1"
        return path if self.uid is None else f"{path}&uid={quote(self.uid, safe='')}"

    def request(self, qtype: QType, name: str) -> Request:
        """The encrypted request for one name."""
        return Request(self.encrypted_path(name, "a" if qtype == "A" else "aaaa"), qtype, (name,))

    def decrypt_body(self, body: bytes) -> bytes:
        """The plain answer text of an encrypted body (an empty body stays empty)."""
        text = body.decode("ascii").strip()
        return self.cipher.decrypt_hex(text).encode("ascii") if text else b""

    def _parse_d(self, body: bytes) -> Record:
        return super()._parse_d(self.decrypt_body(body))

    def _http_error(self, status: int, body: bytes, server: str) -> Exception:
        hints = {
            400: "the server could not decrypt the request: check dnspod_key and encryption",
            403: f"account {self.dnspod_id} has no {self.encryption} key on the server",
            404: f"the server does not know dnspod_id {self.dnspod_id}",
        }
        if status in hints and not body.strip():
            return RequestRejected(server, status, f"http_{status}", hints[status])
        return super()._http_error(status, body, server)
