"""The admin-API HTTP client every command shares, with ``urllib`` only: the CLI
starts fast and needs no event loop.

``Client`` carries the global options (server, token, actor, ``--json``, timeout);
the group creates it and options given after a subcommand update it.
"""

from __future__ import annotations

import gzip
import json
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from http.client import HTTPException
from typing import Any

from ..config import DEFAULT_SERVER
from .errors import CliError, UnreachableError, api_error

GZIP_OVER = 256 << 10  # request bodies larger than this go gzip-compressed (a big apply)


@dataclass(frozen=True, slots=True)
class Response:
    """An HTTP response as the CLI needs it; ``ms`` is the round trip time."""

    status: int
    reason: str
    headers: Mapping[str, str]
    body: bytes
    ms: float


def _transport(request: urllib.request.Request, timeout: float) -> Response:
    """Send ``request`` with urllib; HTTP error statuses are returned, not raised.

    Tests replace this module attribute with an in-memory transport.
    """
    start = time.perf_counter()
    try:
        with urllib.request.urlopen(request, timeout=timeout) as r:
            body = r.read()
            status, reason, headers = r.status, r.reason, dict(r.headers.items())
    except urllib.error.HTTPError as e:
        try:
            body = e.read()
        except (OSError, HTTPException):
            body = b""
        finally:
            e.close()
        status, reason, headers = e.code, str(e.reason), dict(e.headers.items())
    ms = (time.perf_counter() - start) * 1000
    return Response(status, reason, headers, body, ms)


@dataclass(slots=True)
class Client:
    """The global options and the HTTP calls every command shares."""

    server: str = DEFAULT_SERVER
    token: str | None = None
    actor: str = "unknown"
    json: bool = False
    timeout: float = 10.0
    # write flags (``--dry-run``, ``--force``, ``--allow-empty``): every write carries them
    dry_run: bool = False
    force: bool = False
    allow_empty: bool = False

    def send(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        body: Any = None,
        headers: Mapping[str, str] | None = None,
    ) -> Response:
        """Send one request; raise CliError if unreachable, ApiError on a status >= 400.

        ``params`` (None values left out) extend any query string ``path`` already has.
        """
        url = self.server + path
        query = {k: v for k, v in (params or {}).items() if v is not None}
        if query:
            url += ("&" if "?" in path else "?") + urllib.parse.urlencode(query)
        data = None if body is None else json.dumps(body).encode()
        gzipped = data is not None and len(data) > GZIP_OVER
        if gzipped:
            data = gzip.compress(data, compresslevel=5)  # type: ignore[arg-type]
        request = urllib.request.Request(url, data=data, method=method)
        request.add_header("Accept", "application/json")
        request.add_header("User-Agent", "httpdns-cli")
        if data is not None:
            request.add_header("Content-Type", "application/json")
        if gzipped:
            request.add_header("Content-Encoding", "gzip")
        for name, value in (headers or {}).items():
            request.add_header(name, value)
        try:
            response = _transport(request, self.timeout)
        except urllib.error.URLError as e:
            raise self._unreachable(e.reason) from None
        except (OSError, HTTPException) as e:
            raise self._unreachable(e) from None
        if response.status >= 400:
            token_given = request.has_header("Authorization")
            raise api_error(
                response.status, response.reason, response.body, token_given=token_given
            )
        return response

    def _unreachable(self, reason: object) -> UnreachableError:
        if isinstance(reason, ConnectionRefusedError):
            return UnreachableError(
                f"cannot reach {self.server}: connection refused (is `httpdns serve` running?)"
            )
        if isinstance(reason, TimeoutError):
            return UnreachableError(f"cannot reach {self.server}: timed out after {self.timeout}s")
        text = getattr(reason, "strerror", None) or str(reason) or type(reason).__name__
        return UnreachableError(f"cannot reach {self.server}: {text}")

    def api(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        params: Mapping[str, Any] | None = None,
        if_match: int | None = None,
    ) -> dict[str, Any]:
        """Call the admin API at ``/api/v1`` + ``path`` and return the JSON object."""
        headers = {"X-Actor": self.actor}
        if method != "GET":
            flags = {"dry_run": self.dry_run, "force": self.force, "allow_empty": self.allow_empty}
            params = {**(params or {}), **{k: "1" for k, on in flags.items() if on}}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        if if_match is not None:
            headers["If-Match"] = str(if_match)
        response = self.send(method, "/api/v1" + path, params=params, body=body, headers=headers)
        return self.decode(response)

    def decode(self, response: Response) -> dict[str, Any]:
        """The JSON object of a successful response."""
        try:
            data = json.loads(response.body)
        except ValueError:
            data = None
        if not isinstance(data, dict):
            raise CliError(f"unexpected answer from {self.server}: not a JSON object")
        return data

    def state(self) -> dict[str, Any]:
        """The whole registry snapshot."""
        return self.api("GET", "/state")


def segment(text: str) -> str:
    """``text`` quoted as one URL path segment (a service name, an endpoint id)."""
    return urllib.parse.quote(text, safe="")


def record(state: Mapping[str, Any], section: str, name: str) -> dict[str, Any] | None:
    """A copy of one record of a state snapshot (``datacenters``, ``services``...), or None."""
    value = (state.get(section) or {}).get(name)
    return dict(value) if isinstance(value, Mapping) else None
