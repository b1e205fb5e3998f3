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
from urllib.parse import unquote_plus

from starlette.requests import HTTPConnection

__all__ = [
    "ANONYMOUS",
    "SECRET_KEYS",
    "AuthHook",
    "Principal",
    "TokenAuth",
    "allow_all",
    "as_principal",
    "is_secret_key",
    "redact",
]


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


# Query keys, header names and JSON keys whose values are credentials, compared after
# percent-decoding and lower-casing, with `-` read as `_`: Starlette decodes `?%74oken=` to
# `token`, so the redaction must see the key as the server does.
SECRET_KEYS = frozenset(
    {
        "token",
        "ticket",
        "access_token",
        "id_token",
        "refresh_token",
        "resume_token",
        "session_token",
        "auth_token",
        "bearer",
        "jwt",
        "api_key",
        "apikey",
        "key",
        "secret",
        "client_secret",
        "password",
        "passwd",
        "pwd",
        "auth",
        "authorization",
        "code",
        "sig",
        "signature",
    }
)
# A key=value pair in a query string, wherever the query string sits in a line (a URL, a
# request line, the repr of an ASGI scope's `query_string` bytes).
_QUERY_PAIR = re.compile(
    r"(?P<lead>^|[?&;'\"\s])(?P<key>[^=&;?'\"\s#]{1,64})=(?P<value>[^&;'\"\s#]*)"
)
# Header lines ("authorization: Bearer x", the websockets library's "< Cookie: a=b"), header
# pairs in reprs ((b'cookie', b'a=b')), and bearer credentials wherever they appear.
_SECRET_HEADERS = r"(?:proxy-)?authorization|cookie|set-cookie|x-api-key|x-auth-token"
_HEADER_LINE = re.compile(rf"(?P<name>\b(?:{_SECRET_HEADERS}))(?P<sep>\s*:\s*)[^\r\n]*", re.I)
_HEADER_PAIR = re.compile(
    rf"(?P<name>b?['\"](?:{_SECRET_HEADERS})['\"]\s*,\s*)b?(?P<q>['\"])(?:(?!(?P=q)).)*(?P=q)", re.I
)
_BEARER = re.compile(r"\b(?P<scheme>bearer|basic)(?P<sep>\s+)[^\s'\",;]+", re.I)
# "token": "..." in JSON text (a frame, when frame logging is on).
_JSON_PAIR = re.compile(r'"(?P<key>[^"\\]{1,64})"(?P<sep>\s*:\s*)"(?:[^"\\]|\\.)*"')


def is_secret_key(key: str) -> bool:
    return unquote_plus(key).strip().lower().replace("-", "_") in SECRET_KEYS


def _query_pair(match: re.Match[str]) -> str:
    if not is_secret_key(match["key"]):
        return match[0]
    return f"{match['lead']}{match['key']}=[redacted]"


def _json_pair(match: re.Match[str]) -> str:
    if not is_secret_key(match["key"]):
        return match[0]
    return f'"{match["key"]}"{match["sep"]}"[redacted]"'


def redact(text: str) -> str:
    """Hide credentials before text reaches a log: query values of credential keys (however
    the key is percent-encoded), credential headers, bearer tokens and JSON credential fields."""
    if "=" in text:
        text = _QUERY_PAIR.sub(_query_pair, text)
    text = _HEADER_PAIR.sub(lambda m: f"{m['name']}'[redacted]'", text)
    text = _HEADER_LINE.sub(lambda m: f"{m['name']}{m['sep']}[redacted]", text)
    text = _BEARER.sub(lambda m: f"{m['scheme']}{m['sep']}[redacted]", text)
    if '"' in text:
        text = _JSON_PAIR.sub(_json_pair, text)
    return text
