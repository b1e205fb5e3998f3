"""Which web origins may open a WebSocket to the bridge, and the CORS rules that follow from it.

Browsers attach `Origin` to every WebSocket handshake and let any page open one, so without this
check every site a user visits could drive a bridge the user can reach (their own machine, their
office network). The policy is data and a decision, with no I/O, so it can be tested alone:

- the server's own origin (the page the bridge itself serves), from the `Host` header;
- `BRIDGE_ALLOWED_ORIGINS` when set: exact origins (`https://app.example`), any port of one host
  (`http://localhost:*`), `null` (sandboxed frames, `data:` pages) and `*` (any origin but
  `null`); when unset and the server binds a loopback address, the loopback origins
  `http(s)://localhost|127.0.0.1|[::1]` on any port;
- no `Origin` at all (a program, not a page): allowed here, the auth rules decide alone.

DNS rebinding: a page on `evil.example`, once that name resolves to 127.0.0.1, sends
`Host: evil.example` and `Origin: http://evil.example`, which looks like the server's own origin.
So a server that binds loopback trusts its own origin only under a loopback host name.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

__all__ = ["LOOPBACK_ORIGINS", "OriginPolicy", "is_loopback_host", "normalize_origin"]

# The default list of a server bound to loopback: local pages on any port.
LOOPBACK_ORIGINS = tuple(
    f"{scheme}://{host}:*"
    for scheme in ("http", "https")
    for host in ("localhost", "127.0.0.1", "[::1]")
)

_DEFAULT_PORTS = {"http": 80, "https": 443, "ws": 80, "wss": 443}
# A serialized origin: scheme, host (a name, IPv4 or bracketed IPv6) and an optional port;
# anything with a path, user info or other noise is not an origin and never matches.
_ORIGIN = re.compile(
    r"(?P<scheme>[a-z][a-z0-9+.-]*)://(?P<host>\[[0-9a-f:.]+\]|[a-z0-9.-]+)(?::(?P<port>\d{1,5}|\*))?"
)
_HOST = re.compile(r"(?P<host>\[[0-9a-f:.]+\]|[a-z0-9.-]+)(?::(?P<port>\d{1,5}))?")


def is_loopback_host(host: str) -> bool:
    """`localhost`, 127.0.0.0/8 or ::1 (brackets allowed)."""
    host = host.strip().lower().rstrip(".")
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def normalize_origin(origin: str) -> tuple[str, str, int] | None:
    """(scheme, host, port) with the scheme's default port filled in; None if not an origin."""
    match = _ORIGIN.fullmatch(origin.strip().lower())
    if match is None or match["port"] == "*":
        return None
    scheme = match["scheme"]
    port = int(match["port"]) if match["port"] else _DEFAULT_PORTS.get(scheme)
    if port is None or port > 65535:
        return None
    return scheme, match["host"], port


@dataclass(frozen=True, slots=True)
class OriginPolicy:
    exact: frozenset[tuple[str, str, int]] = frozenset()
    any_port: frozenset[tuple[str, str]] = frozenset()
    allow_null: bool = False
    allow_any: bool = False
    # Whether `Host` is trusted to name the server's own origin under any name (see the module
    # docstring: not for a server on loopback, where only loopback names are).
    own_origin_any_host: bool = True

    @classmethod
    def build(cls, allowed: Sequence[str] | None, *, bind_host: str) -> OriginPolicy:
        """From `BRIDGE_ALLOWED_ORIGINS` (None: the default) and the address the server binds."""
        loopback = is_loopback_host(bind_host)
        entries = list(allowed) if allowed is not None else (LOOPBACK_ORIGINS if loopback else [])
        exact: set[tuple[str, str, int]] = set()
        any_port: set[tuple[str, str]] = set()
        allow_null = allow_any = False
        for entry in entries:
            text = entry.strip().lower().rstrip("/")
            if text == "null":
                allow_null = True
            elif text == "*":
                allow_any = True
            elif (match := _ORIGIN.fullmatch(text)) is not None and match["port"] == "*":
                any_port.add((match["scheme"], match["host"]))
            elif (parsed := normalize_origin(text)) is not None:
                exact.add(parsed)
            else:
                raise ValueError(f"not an origin: {entry!r} (expected scheme://host[:port|:*])")
        return cls(
            exact=frozenset(exact),
            any_port=frozenset(any_port),
            allow_null=allow_null,
            allow_any=allow_any,
            own_origin_any_host=not loopback,
        )

    def allows(self, origin: str | None, host: str | None) -> bool:
        """May a handshake with this `Origin` (None: absent) and `Host` header go on?"""
        if origin is None:
            return True
        if origin.strip().lower() == "null":
            return self.allow_null
        parsed = normalize_origin(origin)
        if parsed is None:
            return False
        if self.allow_any or parsed in self.exact or parsed[:2] in self.any_port:
            return True
        return self._is_own(parsed, host)

    def _is_own(self, origin: tuple[str, str, int], host: str | None) -> bool:
        if not host:
            return False
        match = _HOST.fullmatch(host.strip().lower())
        if match is None:
            return False
        scheme, origin_host, origin_port = origin
        # A `Host` without a port means the origin scheme's default (a proxy on 443, say).
        port = int(match["port"]) if match["port"] else _DEFAULT_PORTS.get(scheme)
        if match["host"] != origin_host or port != origin_port:
            return False
        return self.own_origin_any_host or is_loopback_host(origin_host)

    def cors_options(self) -> dict[str, Any]:
        """`allow_origins` / `allow_origin_regex` for Starlette's CORSMiddleware.

        The server's own origin needs no CORS; everything else allowed to connect may also load
        the SDK and fetch a ticket."""
        if self.allow_any:
            origins = ["*"]
        else:
            origins = sorted(_serialize(o) for o in self.exact)
            if self.allow_null:
                origins.append("null")
        patterns = [
            rf"{re.escape(scheme)}://{re.escape(host)}(?::\d{{1,5}})?"
            for scheme, host in sorted(self.any_port)
        ]
        regex = f"(?:{'|'.join(patterns)})" if patterns and not self.allow_any else None
        return {"allow_origins": origins, "allow_origin_regex": regex}


def _serialize(origin: tuple[str, str, int]) -> str:
    scheme, host, port = origin
    return (
        f"{scheme}://{host}" if _DEFAULT_PORTS.get(scheme) == port else f"{scheme}://{host}:{port}"
    )
