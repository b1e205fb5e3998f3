"""Two principals through the JWT example (examples/jwt_auth.py, real PyJWT) and real uvicorn:
sessions are bound to their owner, replacing needs the resume token, and bare sockets, wrong
tokens and tickets of the other user get nothing."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from websockets.asyncio.client import ClientConnection

from bridge import BridgeSettings, create_app
from bridge.testing import RunningServer, serve_app
from examples.jwt_auth import JWTAuth, make_token
from tests.security.access_support import (
    WAIT_S,
    close_code,
    hello,
    http,
    open_ws,
    recv,
    recv_until,
    refused_with,
    send,
)

KEY = "a-test-signing-key-of-at-least-32-bytes!"
ALICE = {"Authorization": f"Bearer {make_token(KEY, 'alice')}"}
BOB = {"Authorization": f"Bearer {make_token(KEY, 'bob')}"}


@pytest.fixture
async def server() -> AsyncIterator[RunningServer]:
    settings = BridgeSettings(hello_timeout_s=0.5)
    async with serve_app(create_app(settings, authenticate=JWTAuth(KEY))) as running:
        yield running


async def still_alive(ws: ClientConnection, nonce: str) -> None:
    await send(ws, {"type": "ping", "nonce": nonce})
    # Frames of her session may come first; the pong to this ping must come, in bounded time.
    async with asyncio.timeout(WAIT_S):
        while True:
            frame = await recv(ws)
            if frame["type"] == "pong" and frame.get("nonce") == nonce:
                return


async def test_bob_cannot_attach_replace_or_read_alices_session(server: RunningServer) -> None:
    alice = await open_ws(f"ws://127.0.0.1:{server.port}/ws/agent", headers=ALICE)
    ready = await hello(alice)
    session_id, resume_token = ready["session_id"], ready["resume_token"]
    await send(alice, {"type": "message", "content": "my private words"})
    while (await recv(alice))["type"] != "complete":
        pass
    url = server.ws_url(session_id)
    # With her id; with a made-up token; with her real resume token (stolen): always 4403,
    # and the only frame bob gets is the refusal.
    for resume in (None, {"token": "guess", "last_seq": 0}, {"token": resume_token, "last_seq": 0}):
        bob = await open_ws(url, headers=BOB)
        await send(bob, {"type": "hello", "protocol": 1, "tools": [], "resume": resume})
        code, frames = await close_code(bob)
        assert code == 4403
        assert [(f["type"], f.get("code")) for f in frames] == [("error", "resume_denied")]
        assert "private" not in str(frames)
        await still_alive(alice, f"after-{len(str(resume))}")
    # A ticket is bob's, whoever uses it: it does not make him alice.
    ticket = (await http(f"{server.http_url}/ws-ticket", "POST", BOB)).json()["ticket"]
    thief = await open_ws(f"{url}?ticket={ticket}")
    await send(
        thief,
        {
            "type": "hello",
            "protocol": 1,
            "tools": [],
            "resume": {"token": resume_token, "last_seq": 0},
        },
    )
    assert (await close_code(thief))[0] == 4403
    await still_alive(alice, "after-ticket")
    await alice.close()


async def test_alice_in_a_second_tab_replaces_her_first_with_the_resume_token(
    server: RunningServer,
) -> None:
    first = await open_ws(f"ws://127.0.0.1:{server.port}/ws/agent", headers=ALICE)
    ready = await hello(first)
    url = server.ws_url(ready["session_id"])
    await send(first, {"type": "message", "content": "something happens in the session"})
    await recv_until(first, "complete")
    # Without the token her own second tab is refused like anyone else, the first untouched.
    assert (await refused_with_hello(url, ALICE)) == 4403
    await still_alive(first, "kept")
    # The second tab comes in through a ticket bought with her cookie: the JWT never in a URL.
    cookie = {"Cookie": f"bridge_jwt={ALICE['Authorization'][7:]}"}
    ticket = (await http(f"{server.http_url}/ws-ticket", "POST", cookie)).json()["ticket"]
    second = await open_ws(f"{url}?ticket={ticket}")
    resumed = await hello(second, resume={"token": ready["resume_token"], "last_seq": 0})
    assert resumed["type"] == "ready" and resumed["resumed"] is not None
    assert (await close_code(first))[0] == 4409
    await still_alive(second, "second")
    await second.close()


async def refused_with_hello(url: str, headers: dict[str, str]) -> int | None:
    ws = await open_ws(url, headers=headers)
    await send(ws, {"type": "hello", "protocol": 1, "tools": []})
    return (await close_code(ws))[0]


async def test_a_bare_socket_never_disturbs_a_live_session(server: RunningServer) -> None:
    alice = await open_ws(f"ws://127.0.0.1:{server.port}/ws/agent", headers=ALICE)
    ready = await hello(alice)
    url = server.ws_url(ready["session_id"])
    # Sockets that never say hello, as alice herself and as bob: closed at the hello deadline.
    bare = [await open_ws(url, headers=h) for h in (ALICE, BOB, ALICE)]
    codes = await asyncio.gather(*(close_code(ws) for ws in bare))
    assert [code for code, _ in codes] == [1008, 1008, 1008]
    assert all(frames == [] for _, frames in codes)
    await still_alive(alice, "untouched")
    await alice.close()


async def test_a_wrong_token_never_attaches(server: RunningServer) -> None:
    alice = await open_ws(f"ws://127.0.0.1:{server.port}/ws/agent", headers=ALICE)
    ready = await hello(alice)
    url = server.ws_url(ready["session_id"])
    forged = make_token("another-key-of-at-least-32-bytes-long!!", "alice")
    expired = make_token(KEY, "alice", ttl_s=-60)
    wrong_audience = make_token(KEY, "alice", aud="someone-else")
    for token in (forged, expired, wrong_audience, "not-a-jwt", ""):
        headers = {"Authorization": f"Bearer {token}"}
        assert await refused_with(url, headers=headers) == 4401, token
        asked = await http(f"{server.http_url}/ws-ticket", "POST", headers)
        assert asked.status == 401
    assert await refused_with(url) == 4401  # no credentials at all
    await still_alive(alice, "untouched")
    await alice.close()
