"""An auth hook that reads a JWT (PyJWT), so each user is their own principal.

    python examples/jwt_auth.py

The hook takes the token from `Authorization: Bearer` or from a cookie, checks its signature,
expiry and audience, and returns `Principal(sub, claims)`. A session belongs to the principal
that created it: another user is refused (`4403`) even with the session's id. Browsers get a
WebSocket ticket with the same hook (`POST /ws-ticket` with the cookie or the bearer header),
then connect with `?ticket=`, so the JWT itself never appears in a URL.

This example signs with a shared secret (HS256) to stay self-contained; an identity provider's
tokens are checked the same way with its public key (RS256/ES256, `jwt.PyJWKClient`).
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import jwt
from starlette.requests import HTTPConnection

from bridge import BridgeSettings, create_app
from bridge.server.auth import Principal
from bridge.testing import serve_app

__all__ = ["JWTAuth", "make_token"]

AUDIENCE = "agent-bridge"


class JWTAuth:
    """`create_app(authenticate=JWTAuth(key))`: the principal is the token's `sub`."""

    def __init__(
        self,
        key: str | bytes,
        *,
        algorithms: tuple[str, ...] = ("HS256",),
        audience: str = AUDIENCE,
        cookie: str = "bridge_jwt",
    ) -> None:
        self._key = key
        self._algorithms = list(algorithms)
        self._audience = audience
        self._cookie = cookie

    async def __call__(self, connection: HTTPConnection) -> Principal | None:
        header = connection.headers.get("authorization", "")
        token = header[7:].strip() if header.lower().startswith("bearer ") else None
        if token is None:
            token = connection.cookies.get(self._cookie)
        if not token:
            return None
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                self._key,
                algorithms=self._algorithms,
                audience=self._audience,
                options={"require": ["sub", "exp"]},
            )
        except jwt.InvalidTokenError:
            # Bad signature, expired, wrong audience, malformed: all the same to the client.
            return None
        subject = claims.get("sub")
        if not isinstance(subject, str) or not subject:
            return None
        return Principal(subject, claims)


def make_token(key: str | bytes, subject: str, *, ttl_s: float = 3600, **claims: Any) -> str:
    """A token as an identity provider would issue it (for the demo and the tests)."""
    now = int(time.time())
    payload = {"sub": subject, "aud": AUDIENCE, "iat": now, "exp": now + int(ttl_s), **claims}
    return jwt.encode(payload, key, algorithm="HS256")


async def main() -> None:
    import json
    import urllib.request

    key = "change-me-to-a-long-random-secret-of-32-bytes"
    app = create_app(BridgeSettings(), authenticate=JWTAuth(key))
    async with serve_app(app) as server:
        request = urllib.request.Request(
            f"{server.http_url}/ws-ticket",
            method="POST",
            headers={"Authorization": f"Bearer {make_token(key, 'alice')}"},
        )

        def fetch() -> Any:
            with urllib.request.urlopen(request, timeout=5) as response:
                return json.load(response)

        ticket = await asyncio.to_thread(fetch)
        print(f"ticket for alice, good for {ticket['expires_in']} s, once")
        print(f"connect to {server.http_url.replace('http', 'ws', 1)}/ws/agent?ticket=...")


if __name__ == "__main__":
    asyncio.run(main())
