"""No credential reaches a log, at any level from trace to error.

uvicorn runs with `log_level` from trace (whole ASGI scopes and messages, the `websockets`
library's request headers and frame previews) to error, the bridge's loggers at debug. Clients
bring a token in the `Authorization` header, in the query string, with the key percent-encoded,
a wrong token, a cookie, and a ticket used twice; the server sends a resume token in `ready`.
Everything any handler writes (uvicorn's own on stderr and a capture on every logger) is
searched for each secret.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from bridge import BridgeSettings, create_app
from bridge.server.logs import reset_log_limits
from bridge.testing import serve_app
from tests.security.access_support import close_code, hello, http, open_ws, recv, send

TOKEN = "Tk-9f3b2c71e4a8d5-secret"
WRONG = "Wr-77aa11bb22cc-secret"
COOKIE = "Ck-5d5d5d6e6e6e-secret"
_LOGGERS = ("", "uvicorn", "uvicorn.error", "uvicorn.access", "uvicorn.asgi", "bridge")


@contextmanager
def everything_logged() -> Iterator[io.StringIO]:
    """Every record of the loggers that matter, formatted with its traceback, into one text."""
    text = io.StringIO()
    handler = logging.StreamHandler(text)
    handler.setLevel(1)
    handler.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))
    bridge = logging.getLogger("bridge")
    level = bridge.level
    bridge.setLevel(logging.DEBUG)
    for name in _LOGGERS:
        logging.getLogger(name).addHandler(handler)
    try:
        yield text
    finally:
        for name in _LOGGERS:
            logging.getLogger(name).removeHandler(handler)
        bridge.setLevel(level)


async def exercise(http_url: str, ws_url: str) -> list[str]:
    """Every way a credential travels; returns the secrets the server handed out."""
    handed_out: list[str] = []
    bearer = {"Authorization": f"Bearer {TOKEN}", "Cookie": f"bridge_jwt={COOKIE}"}
    ws = await open_ws(f"{ws_url}/header", headers=bearer)
    ready = await hello(ws)
    handed_out.append(ready["resume_token"])
    await send(ws, {"type": "message", "content": "hello there"})
    while (await recv(ws))["type"] != "complete":
        pass
    await ws.close()
    queries = (f"token={TOKEN}", f"%74oken={TOKEN}", f"x=1&%74%6F%6B%65%6E={TOKEN}")
    for n, query in enumerate(queries):
        ws = await open_ws(f"{ws_url}/query-{n}?{query}")
        handed_out.append((await hello(ws))["resume_token"])
        await ws.close()
    ws = await open_ws(f"{ws_url}/wrong?token={WRONG}")
    assert (await close_code(ws))[0] == 4401
    ticket = (await http(f"{http_url}/ws-ticket", "POST", bearer)).json()["ticket"]
    handed_out.append(ticket)
    ws = await open_ws(f"{ws_url}/ticket?ticket={ticket}")
    await hello(ws)
    await ws.close()
    ws = await open_ws(f"{ws_url}/ticket?ticket={ticket}")
    assert (await close_code(ws))[0] == 4401
    health = await http(f"{http_url}/stats?token={TOKEN}")
    assert health.status == 200
    return handed_out


LEVELS = [(level, False) for level in ("trace", "debug", "info", "warning", "error")]
# Frames are logged at debug and below, so BRIDGE_LOG_FRAMES matters only there.
LEVELS += [("trace", True), ("debug", True)]


IDS = [f"{lv}-frames-{fr}" for lv, fr in LEVELS]


@pytest.mark.parametrize(("level", "frames"), LEVELS, ids=IDS)
async def test_no_secret_in_any_log_at_any_level(
    level: str, frames: bool, capfd: pytest.CaptureFixture[str]
) -> None:
    settings = BridgeSettings(token=TOKEN, log_frames=frames)
    app = create_app(settings)
    # The repeat limiter is process-wide: earlier tests must not have used up the burst of
    # frame lines this one looks for.
    reset_log_limits()
    with everything_logged() as logged:
        async with serve_app(app, log_level=level) as server:
            http_url = server.http_url
            handed_out = await exercise(http_url, http_url.replace("http", "ws", 1) + "/ws/agent")
    out, err = capfd.readouterr()
    text = logged.getvalue() + out + err
    if level == "trace":
        # The capture did see the dangerous lines: scopes, request headers, query strings.
        assert "ASGI [" in text and "query_string" in text
        lowered = text.lower()
        assert "< authorization: [redacted]" in lowered and "< cookie: [redacted]" in lowered
        assert "%74oken=[redacted]" in text
    if level in ("trace", "debug"):
        assert ('> TEXT \'{"type"' in text) is frames
        assert "[redacted]" in text
    for secret in (TOKEN, WRONG, COOKIE, *handed_out):
        assert secret not in text, (level, secret)
        # Nor a long piece of one, cut short by a preview.
        assert secret[:12] not in text, (level, secret)
