"""The CLI's errors: each is one ``error: ...`` line on stderr and exit status 1.

::

    CliError                 a failure the CLI reports (exit 1)
     ├── ApiError            the server answered with an HTTP error status
     └── UnreachableError    the server could not be reached at all

Usage errors (exit 2) are click's own ``UsageError``/``BadParameter``.
"""

from __future__ import annotations

import json
import sys
from typing import IO, Any

import click

_CONFLICT_HINT = "the registry changed meanwhile; run the command again"
# A 401 with and without a token are different mistakes, so they get different fixes.
_TOKEN_REFUSED = "the token was refused: check --token or HTTPDNS_ADMIN_TOKEN"
_TOKEN_MISSING = "no token given: use --token or HTTPDNS_ADMIN_TOKEN"


class CliError(click.ClickException):
    """A failure reported as one ``error: ...`` line on stderr, exit status 1."""

    exit_code = 1

    def show(self, file: IO[Any] | None = None) -> None:
        """Print ``error: MESSAGE`` on stderr (click calls this before exiting)."""
        click.echo(f"error: {self.format_message()}", file=file or sys.stderr)


class ApiError(CliError):
    """The server answered with an HTTP error status."""

    def __init__(self, status: int, code: str, detail: str, *, token_given: bool = False) -> None:
        self.status = status
        self.code = code
        self.detail = detail
        super().__init__(format_api_error(status, code, detail, token_given=token_given))


class UnreachableError(CliError):
    """The server could not be reached at all."""


def format_api_error(status: int, code: str, detail: str, *, token_given: bool = False) -> str:
    """The one-line message for an HTTP error, with a hint for 401 and a revision conflict.

    ``token_given`` tells a refused token (401 although the request carried one) from a
    missing one.
    """
    message = f"{code}: {detail}" if detail else code
    hint = None
    if status == 401:
        hint = _TOKEN_REFUSED if token_given else _TOKEN_MISSING
    elif code == "conflict":
        hint = _CONFLICT_HINT
    elif code == "would_empty":
        message = message.replace(", or force it", ", or --force")
    elif code == "no_endpoints":
        message = message.replace("or allow_empty", "or --allow-empty")
    return f"{message} ({hint})" if hint else message


def api_error(status: int, reason: str, body: bytes, *, token_given: bool = False) -> ApiError:
    """Build the error for an HTTP error response, JSON ``{"error","detail"}`` or not."""
    try:
        data = json.loads(body)
    except ValueError:
        data = None
    if isinstance(data, dict) and isinstance(data.get("error"), str):
        detail = str(data.get("detail") or "")
        return ApiError(status, data["error"], detail, token_given=token_given)
    if isinstance(data, dict) and isinstance(data.get("code"), str):  # Aliyun-style errors
        detail = str(data.get("message") or "")
        return ApiError(status, data["code"], detail, token_given=token_given)
    text = body.decode("utf-8", "replace").strip().splitlines()
    detail = text[0][:200] if text and not text[0].startswith("<") else reason  # not HTML
    return ApiError(status, f"http {status}", detail, token_given=token_given)
