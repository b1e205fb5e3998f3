"""Who may connect (issue 11): origins, CORS, tickets, server-made ids, the health and stats
routes, security headers. The policy and the ticket book alone first, then through uvicorn with
raw clients that set `Origin` and credentials as an attacker would."""

from __future__ import annotations

import logging
import re
from pathlib import Path

import pytest

from bridge import BridgeSettings, create_app
from bridge.server.auth import ANONYMOUS, Principal
from bridge.server.cli import exposure_warning
from bridge.server.origins import OriginPolicy
from bridge.server.tickets import LocalTickets, TicketBook
from bridge.testing import serve_app
from tests.conftest import StartBridge
from tests.security.access_support import (
    close_code,
    hello,
    http,
    open_ws,
    recv,
    recv_until,
    refused_with,
    send,
)
from tests.security.wire import captured_logs

TOKEN = "t0ken-for-access-tests-5b1e"
BEARER = {"Authorization": f"Bearer {TOKEN}"}

# The policy, without I/O ---------------------------------------------------------------------


def test_a_loopback_server_takes_loopback_pages_on_any_port_and_nothing_else() -> None:
    policy = OriginPolicy.build(None, bind_host="127.0.0.1")
    host = "127.0.0.1:8000"
    for origin in (
        "http://localhost:5173",
        "http://127.0.0.1:8000",
        "https://127.0.0.1",
        "http://[::1]:3000",
        "HTTP://LOCALHOST:1",
    ):
        assert policy.allows(origin, host), origin
    for origin in (
        "https://evil.example",
        "http://127.0.0.2:8000",  # loopback too, but not in the default list
        "null",
        "http://localhost.evil.example",
        "http://localhost:8000/path",
        "http://user@localhost:8000",
        "",
        "file://",
    ):
        assert not policy.allows(origin, host), origin
    # No Origin: a program, not a page; the auth rules decide.
    assert policy.allows(None, host)


def test_dns_rebinding_is_not_taken_for_the_servers_own_origin() -> None:
    loopback = OriginPolicy.build(None, bind_host="127.0.0.1")
    assert not loopback.allows("http://evil.example:8000", "evil.example:8000")
    exposed = OriginPolicy.build(None, bind_host="0.0.0.0")
    # A server reached by its public name serves its own pages under that name.
    assert exposed.allows("https://bridge.example", "bridge.example")
    assert exposed.allows("https://bridge.example", "bridge.example:443")
    assert not exposed.allows("https://bridge.example", "other.example")
    assert not exposed.allows("http://bridge.example:8001", "bridge.example:8000")
    # ...and loopback pages are not a default once the server is exposed.
    assert not exposed.allows("http://localhost:5173", "bridge.example")


def test_an_explicit_list_replaces_the_loopback_default() -> None:
    policy = OriginPolicy.build(
        ["https://app.example", "http://127.0.0.2:*", "null"], bind_host="127.0.0.1"
    )
    assert policy.allows("https://app.example", "127.0.0.1:8000")
    assert policy.allows("https://app.example:443", "127.0.0.1:8000")
    assert not policy.allows("https://app.example:8443", "127.0.0.1:8000")
    assert policy.allows("http://127.0.0.2:4321", "127.0.0.1:8000")
    assert policy.allows("null", "127.0.0.1:8000")
    assert not policy.allows("http://localhost:5173", "127.0.0.1:8000")
    # The bridge's own pages keep working.
    assert policy.allows("http://127.0.0.1:8000", "127.0.0.1:8000")
    cors = policy.cors_options()
    assert cors["allow_origins"] == ["https://app.example", "null"]
    assert re.fullmatch(cors["allow_origin_regex"], "http://127.0.0.2:4321")
    assert not re.fullmatch(cors["allow_origin_regex"], "http://127.0.0.20:4321")
    star = OriginPolicy.build(["*"], bind_host="127.0.0.1")
    assert star.allows("https://anything.example", None)
    assert not star.allows("null", None)
    with pytest.raises(ValueError, match="not an origin"):
        OriginPolicy.build(["app.example"], bind_host="127.0.0.1")


def test_allowed_origins_are_read_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BRIDGE_ALLOWED_ORIGINS", "https://a.example, http://localhost:*")
    assert BridgeSettings().allowed_origins == ["https://a.example", "http://localhost:*"]
    monkeypatch.setenv("BRIDGE_ALLOWED_ORIGINS", '["null"]')
    assert BridgeSettings().allowed_origins == ["null"]
    monkeypatch.delenv("BRIDGE_ALLOWED_ORIGINS")
    assert BridgeSettings().allowed_origins is None
    assert BridgeSettings().ticket_ttl_s == 30.0
    assert BridgeSettings().log_frames is False


def test_serve_warns_when_exposed_without_a_token() -> None:
    assert exposure_warning(BridgeSettings(host="127.0.0.1")) is None
    assert exposure_warning(BridgeSettings(host="0.0.0.0", token="x")) is None
    warning = exposure_warning(BridgeSettings(host="0.0.0.0"))
    assert warning is not None and "BRIDGE_TOKEN" in warning


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_ticket_is_good_once_for_its_principal_and_expires() -> None:
    clock = Clock()
    book = TicketBook(ttl_s=30, clock=clock)
    alice = Principal("alice")
    ticket = book.issue(alice)
    assert ticket is not None and len(ticket) >= 40
    assert book.redeem(ticket) == alice
    assert book.redeem(ticket) is None  # used
    late = book.issue(alice)
    assert late is not None
    clock.now += 30
    assert book.redeem(late) is None  # expired
    assert book.redeem("made-up") is None
    assert len(book) == 0


def test_the_ticket_book_is_bounded() -> None:
    clock = Clock()
    book = TicketBook(ttl_s=30, max_tickets=4, per_principal=2, clock=clock)
    a1, a2, a3 = (book.issue(ANONYMOUS) for _ in range(3))
    assert a1 is not None and a2 is not None and a3 is not None
    # A principal asking for a third retires its first.
    assert book.redeem(a1) is None and len(book) == 2
    b1, b2 = book.issue(Principal("b")), book.issue(Principal("c"))
    assert b1 is not None and b2 is not None and len(book) == 4
    assert book.issue(Principal("d")) is None  # full
    clock.now += 31
    assert book.issue(Principal("d")) is not None  # expired ones make room
    assert len(book) == 1


# Through uvicorn --------------------------------------------------------------------------------


async def test_origins_allowed_refused_null_and_absent(start_bridge: StartBridge) -> None:
    async with start_bridge(hello_timeout_s=5) as server:
        url = server.ws_url("origins")
        own = f"http://127.0.0.1:{server.port}"
        with captured_logs() as logs:
            assert await refused_with(url, origin="https://evil.example") == 4403
            assert await refused_with(url, origin="null") == 4403
            assert await refused_with(url, origin="http://127.0.0.2:9999") == 4403
        refusals = [r.getMessage() for r in logs.records if "refused a WebSocket" in r.getMessage()]
        assert len(refusals) == 3 and "https://evil.example" in refusals[0]
        for n, origin in enumerate((own, "http://localhost:5173", None)):
            ws = await open_ws(server.ws_url(f"allowed-{n}"), origin=origin)
            assert (await hello(ws))["type"] == "ready", origin
            await ws.close()


async def test_null_is_refused_unless_listed(start_bridge: StartBridge) -> None:
    async with start_bridge(allowed_origins=["null"]) as server:
        ws = await open_ws(server.ws_url("sandboxed"), origin="null")
        assert (await hello(ws))["type"] == "ready"
        await ws.close()
        # Listing origins replaces the loopback default.
        assert await refused_with(server.ws_url("x"), origin="http://localhost:5173") == 4403


async def test_an_origin_refusal_comes_before_authentication(start_bridge: StartBridge) -> None:
    async with start_bridge(token=TOKEN) as server:
        url = server.ws_url("both")
        assert await refused_with(url, origin="https://evil.example", headers=BEARER) == 4403
        assert await refused_with(url, origin="http://localhost:1") == 4401
        ws = await open_ws(url, origin="http://localhost:1", headers=BEARER)
        assert (await hello(ws))["type"] == "ready"
        await ws.close()


async def test_cors_on_the_sdk_for_allowed_origins_only(tmp_path: Path) -> None:
    (tmp_path / "index.js").write_text("export const sdk = 1;\n")
    settings = BridgeSettings(allowed_origins=["http://127.0.0.2:4321", "http://localhost:*"])
    app = create_app(settings, static_mounts={"/sdk": tmp_path})
    async with serve_app(app) as server:
        sdk = f"{server.http_url}/sdk/index.js"
        for origin in ("http://127.0.0.2:4321", "http://localhost:5173"):
            allowed = await http(sdk, headers={"Origin": origin})
            assert allowed.status == 200
            assert allowed.headers["access-control-allow-origin"] == origin
            assert allowed.headers["access-control-allow-credentials"] == "true"
        other = await http(sdk, headers={"Origin": "https://evil.example"})
        assert other.status == 200 and "access-control-allow-origin" not in other.headers
        # A preflight (a ticket fetched with a bearer header) the same way.
        preflight = {
            "Origin": "http://127.0.0.2:4321",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization",
        }
        answer = await http(f"{server.http_url}/ws-ticket", "OPTIONS", preflight)
        assert answer.status == 200
        assert answer.headers["access-control-allow-origin"] == "http://127.0.0.2:4321"
        refused = await http(
            f"{server.http_url}/ws-ticket", "OPTIONS", {**preflight, "Origin": "https://e.example"}
        )
        assert refused.status == 400


async def test_security_headers_on_served_pages(tmp_path: Path) -> None:
    (tmp_path / "index.html").write_text("<!doctype html><title>page</title>")
    (tmp_path / "index.js").write_text("export {};\n")
    app = create_app(BridgeSettings(), static_dir=tmp_path, static_mounts={"/sdk": tmp_path})
    async with serve_app(app) as server:
        for path in ("/", "/index.html", "/sdk/index.js"):
            page = await http(server.http_url + path)
            assert page.status == 200, path
            csp = page.headers["content-security-policy"]
            assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp
            assert f"ws://127.0.0.1:{server.port}" in csp
            assert page.headers["x-frame-options"] == "DENY"
            assert page.headers["referrer-policy"] == "no-referrer"
            assert page.headers["x-content-type-options"] == "nosniff"


async def test_healthz_says_only_ok_and_counts_need_the_token(start_bridge: StartBridge) -> None:
    async with start_bridge(token=TOKEN) as server:
        ws = await open_ws(server.ws_url("counted"), headers=BEARER)
        await hello(ws)
        for headers in ({}, BEARER):
            health = await http(f"{server.http_url}/healthz", headers=headers)
            assert health.status == 200 and health.json() == {"status": "ok"}
        assert (await http(f"{server.http_url}/stats")).status == 401
        wrong = {"Authorization": "Bearer nope"}
        assert (await http(f"{server.http_url}/stats", headers=wrong)).status == 401
        stats = await http(f"{server.http_url}/stats", headers=BEARER)
        assert stats.status == 200
        assert stats.json() == {"status": "ok", "sessions": 1, "connected": 1, "held": 0}
        await ws.close()
    # Without authentication there is no token to ask for: this machine sees the counts.
    async with start_bridge() as server:
        assert (await http(f"{server.http_url}/stats")).json()["sessions"] == 0


async def test_server_made_session_ids(start_bridge: StartBridge) -> None:
    async with start_bridge() as server:
        base = f"ws://127.0.0.1:{server.port}/ws/agent"
        ids = []
        for _ in range(2):
            ws = await open_ws(base)
            ready = await hello(ws)
            assert re.fullmatch(r"s-[A-Za-z0-9_-]{32}", ready["session_id"]), ready
            ids.append((ready["session_id"], ready["resume_token"]))
            await ws.close()
        assert ids[0][0] != ids[1][0]
        # The id then names the session for a resume, with its token.
        session_id, token = ids[0]
        ws = await open_ws(f"{base}/{session_id}")
        ready = await hello(ws, resume={"token": token, "last_seq": 0})
        assert ready["session_id"] == session_id and ready["resumed"] is not None
        await send(ws, {"type": "message", "content": "something happens in it"})
        await recv_until(ws, "complete")
        await ws.close()
        # A client-chosen name is still a name, but only a name: no token, no entry.
        ws = await open_ws(f"{base}/{session_id}")
        await send(ws, {"type": "hello", "protocol": 1, "tools": []})
        code, frames = await close_code(ws)
        assert code == 4403 and [f["type"] for f in frames] == ["error"]


async def test_a_ticket_works_once_and_expires(start_bridge: StartBridge) -> None:
    async with start_bridge(token=TOKEN) as server:
        bridge = server.server.config.app.state.bridge
        clock = Clock()
        bridge.tickets = LocalTickets(TicketBook(ttl_s=bridge.settings.ticket_ttl_s, clock=clock))
        endpoint = f"{server.http_url}/ws-ticket"
        assert (await http(endpoint, "POST")).status == 401
        refused = await http(endpoint, "POST", {**BEARER, "Origin": "https://evil.example"})
        assert refused.status == 403
        issued = await http(endpoint, "POST", BEARER)
        assert issued.status == 200 and issued.headers["cache-control"] == "no-store"
        body = issued.json()
        assert set(body) == {"ticket", "expires_in"} and body["expires_in"] == 30
        url = server.ws_url("ticketed") + f"?ticket={body['ticket']}"
        ws = await open_ws(url, origin="http://localhost:5173")
        assert (await hello(ws))["type"] == "ready"
        await ws.close()
        assert await refused_with(url) == 4401  # used
        late = (await http(endpoint, "POST", BEARER)).json()["ticket"]
        clock.now += 30
        assert await refused_with(server.ws_url("late") + f"?ticket={late}") == 4401
        # A bad ticket is refused even next to a good token: the ticket alone decides.
        assert await refused_with(server.ws_url("x") + "?ticket=forged", headers=BEARER) == 4401


async def test_a_refused_handshake_is_logged_once_without_secrets(
    start_bridge: StartBridge,
) -> None:
    async with start_bridge(token=TOKEN) as server:
        with captured_logs() as logs:
            url = server.ws_url("log") + f"?token={TOKEN}"
            assert await refused_with(url, origin="https://evil.example") == 4403
            # The next frame on a fresh connection proves the refusal was logged by now.
            ws = await open_ws(server.ws_url("after"), headers=BEARER)
            await send(ws, {"type": "ping", "nonce": "n"})
            assert (await recv(ws))["type"] == "pong"
            await ws.close()
        lines = [r.getMessage() for r in logs.records if r.levelno >= logging.WARNING]
        assert len([line for line in lines if "origin" in line]) == 1
        assert all(TOKEN not in r.getMessage() for r in logs.records)
