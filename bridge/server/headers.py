"""Security headers on the pages the bridge serves (the demo, the SDK files).

The demo page runs tools that read the page and the clipboard, so nothing but the page's own
scripts may run in it, no other site may frame it (clickjacking the confirm dialog), its URL
leaves with no request, and a file is never read as another type than the one it is served as.
"""

from __future__ import annotations

import re

from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["SecurityHeaders", "content_security_policy"]

# A Host header that can go into a header value as it is; anything else is left out of the CSP.
_HOST = re.compile(r"\[[0-9A-Fa-f:.]+\](?::\d{1,5})?|[A-Za-z0-9.-]{1,253}(?::\d{1,5})?")

_FIXED = [
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-content-type-options", b"nosniff"),
]


def content_security_policy(host: str | None) -> str:
    """Own scripts, styles and images; the WebSocket to the page's own host; no framing.

    `'self'` covers ws:/wss: to the same host in current browsers; the explicit sources keep
    older ones working too."""
    sockets = f" ws://{host} wss://{host}" if host and _HOST.fullmatch(host) else ""
    return "; ".join(
        [
            "default-src 'self'",
            "script-src 'self'",
            "style-src 'self'",
            "img-src 'self' data:",
            f"connect-src 'self'{sockets}",
            "object-src 'none'",
            "base-uri 'none'",
            "form-action 'self'",
            "frame-ancestors 'none'",
        ]
    )


class SecurityHeaders:
    """ASGI wrapper adding the headers to every HTTP response of the app it wraps."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        host = next(
            (v.decode("latin-1") for k, v in scope.get("headers", ()) if k == b"host"), None
        )
        policy = content_security_policy(host).encode("latin-1")

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", ()))
                present = {k.lower() for k, _ in headers}
                extra = [(b"content-security-policy", policy), *_FIXED]
                headers.extend((k, v) for k, v in extra if k not in present)
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, with_headers)
