"""Authentication: who the client is, decided from the handshake before the socket is accepted.

An auth hook returns the client's `Principal` (an id and optional claims) or None to refuse. A
session belongs to the principal that created it; no other principal ever attaches to it.
"""

from __future__ import annotations

import hmac
import re
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from starlette.requests import HTTPConnection

__all__ = ["ANONYMOUS", "AuthHook", "Principal", "TokenAuth", "allow_all", "as_principal", "redact"]


@dataclass(frozen=True, slots=True)
class Principal:
    """Who a client is: the id sessions are bound to, and whatever the hook learned besides."""

    id: str
    claims: Mapping[str, Any] = field(default_factory=dict)


# Every client of a server without authentication is this one principal: its sessions are
# still guarded by their resume tokens.
ANONYMOUS = Principal("anonymous")

# Decides from the handshake (headers, query string) who the client is, or None to refuse.
# A hook written for earlier versions may still answer True or False.
AuthHook = Callable[[HTTPConnection], Awaitable[Principal | bool | None]]


def as_principal(answer: Principal | bool | None) -> Principal | None:
    if isinstance(answer, Principal):
        return answer
    return ANONYMOUS if answer is True else None


_SECRET_QUERY = re.compile(r"((?:^|[?&])(?:token|access_token|api_key|key)=)[^&\s\"]*", re.I)


async def allow_all(connection: HTTPConnection) -> Principal:
    return ANONYMOUS


class TokenAuth:
    """A shared bearer token, from `Authorization: Bearer` or `?token=` (browsers cannot set
    headers on a WebSocket)."""

    def __init__(self, token: str, principal: Principal = Principal("token")) -> None:
        self._token = token.encode()
        self._principal = principal

    async def __call__(self, connection: HTTPConnection) -> Principal | None:
        header = connection.headers.get("authorization", "")
        offered = header[7:] if header.lower().startswith("bearer ") else None
        if offered is None:
            offered = connection.query_params.get("token")
        if offered is not None and hmac.compare_digest(offered.encode(), self._token):
            return self._principal
        return None


def redact(text: str) -> str:
    """Hide secrets carried in query strings before text reaches a log."""
    return _SECRET_QUERY.sub(r"\1[redacted]", text)
