"""Authentication hook: decided from the handshake, before the socket is accepted."""

from __future__ import annotations

import hmac
import re
from collections.abc import Awaitable, Callable

from starlette.requests import HTTPConnection

__all__ = ["AuthHook", "TokenAuth", "allow_all", "redact"]

# Decides from the handshake (headers, query string) whether a client may connect.
AuthHook = Callable[[HTTPConnection], Awaitable[bool]]

_SECRET_QUERY = re.compile(r"((?:^|[?&])(?:token|access_token|api_key|key)=)[^&\s\"]*", re.I)


async def allow_all(connection: HTTPConnection) -> bool:
    return True


class TokenAuth:
    """A shared bearer token, from `Authorization: Bearer` or `?token=` (browsers cannot set
    headers on a WebSocket)."""

    def __init__(self, token: str) -> None:
        self._token = token.encode()

    async def __call__(self, connection: HTTPConnection) -> bool:
        header = connection.headers.get("authorization", "")
        offered = header[7:] if header.lower().startswith("bearer ") else None
        if offered is None:
            offered = connection.query_params.get("token")
        return offered is not None and hmac.compare_digest(offered.encode(), self._token)


def redact(text: str) -> str:
    """Hide secrets carried in query strings before text reaches a log."""
    return _SECRET_QUERY.sub(r"\1[redacted]", text)
