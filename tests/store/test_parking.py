"""Parking on a real Redis: an owner whose client left marks the session parked, and a claimer
then takes the lease without asking, with the record, in the step that checks the client
(`ARRIVE`); the owner is told afterwards and every later write of its is refused. Unparking
fails once a claimer came first, and the hub then claims the session back like any other.
The access rule `ARRIVE` applies in Lua is `Access.admits`, case for case."""

from __future__ import annotations

import asyncio
import json
import secrets
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager, suppress
from typing import Any

import pytest
import websockets

from bridge import BridgeSettings, create_app
from bridge.conversation import ToolResult, UserTurn
from bridge.protocol import ResumeRequest
from bridge.redis_store import Arrival, RedisStore
from bridge.server.auth import ANONYMOUS
from bridge.server.cluster import Cluster
from bridge.server.cluster_hub import ClusterHub
from bridge.session import Session
from bridge.testing import RunningServer, ScriptedModel, call, serve_app
from bridge.testing.redis_server import RedisServer
from tests.core.test_record_parts import Driver
from tests.store.test_cluster import TOOL, recv, until
from tests.store.test_record_in_redis import _touch

BOUND_S = 15
# A poll gives up before the test's own bound, so its failure says what was waited for.
POLL_S = 5
SID = "s-park"
TTL_S = 60.0
LEASE_S = 60.0
OWNER = "alice"
STRANGER = "mallory"


# Store level ----------------------------------------------------------------------------------


def stored_driver(owner: str | None = OWNER, touch: str | None = "call") -> Driver:
    driver = Driver()
    driver.session.owner = owner
    if touch is not None:
        _touch(driver, touch)
    return driver


async def write(store: RedisStore, session: Session, writer: str = "a") -> str:
    """A write as the hub makes one: the changes since the mark, the mark moved on if saved."""
    changes = session.changes()
    done = await store.save(SID, changes, TTL_S, writer=writer, lease_s=LEASE_S)
    if done == "saved":
        session.stored = changes.mark
    return done


async def stored(store: RedisStore, *, touch: str | None = "call", writer: str = "a") -> Session:
    """A session of `OWNER` stored (whole) by `writer`, which holds the lease after it."""
    session = stored_driver(touch=touch).session
    assert await write(store, session, writer) == "saved"
    assert await store.get(SID) == session.dump()
    if writer:
        assert await store.owner(SID) == writer
    return session


async def arrive(
    store: RedisStore,
    claimer: str,
    session: Session,
    *,
    principal: str = OWNER,
    token: str | None = "",
    running: bool = False,
) -> Arrival:
    """`claimer` claims for a client of `principal`; `token` "" means the session's own."""
    return await store.arrive(
        SID,
        claimer,
        LEASE_S,
        principal=principal,
        token=session.resume_token if token == "" else token,
        ask=f"handover {claimer} {SID}",
        running=running,
    )


async def parked_mark(store: RedisStore) -> bytes | str | None:
    """The worker that parked the session, as Redis holds it (None: not parked)."""
    mark: bytes | str | None = await store.client.hget(store.record_key(SID), "parked")
    return mark


async def raw(store: RedisStore) -> tuple[Any, ...]:
    """Every key of the session as Redis holds it, the owner included."""
    client, keys = store.client, store.keys_of(SID)
    lists = [await client.lrange(key, 0, -1) for key in keys[2:]]
    return await client.get(keys[0]), await client.hgetall(keys[1]), lists


@asynccontextmanager
async def heard(store: RedisStore, worker: str) -> AsyncIterator[asyncio.Queue[str]]:
    """The messages sent to `worker`'s channel from now on, as they arrive."""
    queue: asyncio.Queue[str] = asyncio.Queue()
    subscribed = asyncio.Event()

    async def listen() -> None:
        async for message in store.listen(worker, subscribed.set):
            queue.put_nowait(message)

    task = asyncio.create_task(listen())
    try:
        async with asyncio.timeout(POLL_S):
            await subscribed.wait()
        yield queue
    finally:
        task.cancel()
        with suppress(asyncio.CancelledError):
            await task


async def next_message(queue: asyncio.Queue[str]) -> str:
    async with asyncio.timeout(POLL_S):
        return await queue.get()


async def test_a_parked_session_is_taken_unasked_with_its_record_and_its_owner_fenced(
    redis_store: RedisStore,
) -> None:
    store = redis_store
    session = await stored(store)
    async with heard(store, "a") as messages:
        # Not parked: the holder is asked, and nothing moves.
        asked = await arrive(store, "b", session)
        assert (asked.how, asked.holder, asked.record) == ("asked", "a", None)
        assert await next_message(messages) == f"handover b {SID}"
        assert await store.owner(SID) == "a"

        assert await store.park(SID, "a")
        assert await parked_mark(store) == b"a"
        taken = await arrive(store, "b", session)
        assert (taken.how, taken.holder, taken.granted) == ("unparked", "a", True)
        assert taken.record == session.dump()
        # The parked holder is not woken: the next message it hears is one sent after.
        await store.tell("a", "after")
        assert await next_message(messages) == "after"
        assert await store.owner(SID) == "b"
        # The claim cleared the mark: it was "a"'s, and "a" holds nothing now.
        assert await parked_mark(store) is None

    # The former holder, back with a client of its own, finds the session elsewhere: "b" did
    # not park it, so "b" is asked. Nor can "a" write over what the claimer goes on from.
    back = await arrive(store, "a", session, running=True)
    assert (back.how, back.holder, back.record) == ("asked", "b", None)
    assert await store.owner(SID) == "b"
    before = await raw(store)
    session.conversation.add(UserTurn("after the claim"))
    assert await write(store, session, "a") == "not owner"
    assert await raw(store) == before
    session.stored = None
    assert await write(store, session, "a") == "not owner"
    assert await raw(store) == before


async def test_the_holder_back_with_a_client_clears_the_mark_without_reading_the_record(
    redis_store: RedisStore,
) -> None:
    store = redis_store
    session = await stored(store)
    assert await store.park(SID, "a")
    back = await arrive(store, "a", session, running=True)
    assert (back.how, back.holder, back.record, back.since) == ("renewed", "", None, {})
    assert await parked_mark(store) is None
    async with heard(store, "a") as messages:
        arrival = await arrive(store, "b", session)
        assert (arrival.how, arrival.holder) == ("asked", "a")
        assert await next_message(messages) == f"handover b {SID}"
    assert await store.owner(SID) == "a"


async def test_only_the_holder_parks_and_only_a_stored_session(redis_store: RedisStore) -> None:
    store = redis_store
    # A lease and no record: nothing a claimer could go on from.
    assert await store.acquire(SID, "a", LEASE_S)
    assert not await store.park(SID, "a")
    assert not await store.client.exists(store.record_key(SID))
    session = await stored(store)
    assert not await store.park(SID, "b")
    assert await parked_mark(store) is None
    # Nor with no lease at all.
    await store.release(SID, "a")
    assert not await store.park(SID, "a")
    assert await parked_mark(store) is None
    assert await store.acquire(SID, "a", LEASE_S)
    async with heard(store, "a") as messages:
        arrival = await arrive(store, "b", session)
        assert (arrival.how, arrival.holder) == ("asked", "a")
        assert await next_message(messages) == f"handover b {SID}"


@pytest.mark.parametrize("how", ["put", "whole save"])
async def test_a_whole_write_clears_the_parked_mark(redis_store: RedisStore, how: str) -> None:
    store = redis_store
    session = await stored(store)
    assert await store.park(SID, "a")
    session.conversation.add(UserTurn("more"))
    if how == "put":
        await store.put(SID, session.dump(), TTL_S)
    else:
        session.stored = None
        assert session.changes().whole
        assert await write(store, session, "a") == "saved"
    assert await store.get(SID) == session.dump()
    assert await parked_mark(store) is None
    async with heard(store, "a") as messages:
        arrival = await arrive(store, "b", session)
        assert (arrival.how, arrival.holder) == ("asked", "a")
        assert await next_message(messages) == f"handover b {SID}"
    assert await store.owner(SID) == "a"


async def test_a_write_of_changes_keeps_the_mark_and_the_claimer_gets_it(
    redis_store: RedisStore,
) -> None:
    """The parked owner still runs the session (a deadline may pass): what it stores after
    parking is in the record the claimer takes."""
    store = redis_store
    session = await stored(store)
    assert await store.park(SID, "a")
    session.conversation.add(UserTurn("after parking"))
    assert not session.changes().whole
    assert await write(store, session, "a") == "saved"
    assert await parked_mark(store) == b"a"
    arrival = await arrive(store, "b", session)
    assert (arrival.how, arrival.holder) == ("unparked", "a")
    assert arrival.record == session.dump()
    assert arrival.record["conversation"][-1]["content"] == "after parking"


async def test_the_holders_own_claim_clears_the_mark(redis_store: RedisStore) -> None:
    store = redis_store
    session = await stored(store)
    assert await store.park(SID, "a")
    again = await arrive(store, "a", session)
    assert (again.how, again.record) == ("renewed", session.dump())
    assert await parked_mark(store) is None
    asked = await arrive(store, "b", session)
    assert (asked.how, asked.holder) == ("asked", "a")


@pytest.mark.parametrize(
    ("principal", "token"),
    [(STRANGER, ""), (OWNER, "not the token"), (OWNER, None)],
    ids=["another principal", "a wrong token", "no token on a touched session"],
)
async def test_a_refused_arrival_changes_nothing(
    redis_store: RedisStore, principal: str, token: str | None
) -> None:
    store = redis_store
    session = await stored(store, touch="call")
    assert await store.park(SID, "a")
    before = await raw(store)
    async with heard(store, "a") as messages:
        refused = await arrive(store, "b", session, principal=principal, token=token)
        assert (refused.how, refused.holder, refused.record) == ("refused", "", None)
        assert not refused.granted
        assert await raw(store) == before
        assert await store.owner(SID) == "a" and await parked_mark(store) == b"a"
        # The right client's claim still finds the session parked; "a" heard nothing of
        # either (the next message it hears is one sent after them).
        arrival = await arrive(store, "b", session)
        assert (arrival.how, arrival.holder) == ("unparked", "a")
        assert arrival.record == session.dump()
        await store.tell("a", "after")
        assert await next_message(messages) == "after"
    assert await store.owner(SID) == "b"


# The access rule in Lua is Access.admits --------------------------------------------------------

STATES = ["untouched", "turn", "run", "call", "approval", "frames only"]
CLIENTS = {
    "owner with the token": (OWNER, ""),
    "owner without a token": (OWNER, None),
    "owner with a wrong token": (OWNER, "guess"),
    "another principal with the token": (STRANGER, ""),
    "another principal without a token": (STRANGER, None),
}


@pytest.mark.parametrize("client", list(CLIENTS))
@pytest.mark.parametrize("owner", [OWNER, None], ids=["owned", "ownerless"])
@pytest.mark.parametrize("state", STATES)
async def test_arrive_refuses_exactly_the_clients_access_refuses(
    redis_store: RedisStore, state: str, owner: str | None, client: str
) -> None:
    store = redis_store
    driver = stored_driver(owner=owner, touch=None if state == "untouched" else state)
    session = driver.session
    # Stored unfenced: no lease is held, so an admitted claim takes it.
    assert await write(store, session, writer="") == "saved"
    assert await store.owner(SID) is None
    principal, token = CLIENTS[client]
    given = session.resume_token if token == "" else token
    resume = None if given is None else ResumeRequest(token=given, last_seq=0)
    admitted = session.access().admits(principal, resume)
    for claimer in ("b", "c"):
        arrival = await arrive(store, claimer, session, principal=principal, token=token)
        assert (arrival.how != "refused") == admitted, (arrival.how, admitted)
        if admitted:
            assert (arrival.how, arrival.record) == ("taken", session.dump())
            assert await store.owner(SID) == claimer
            await store.release(SID, claimer)
        assert await store.owner(SID) is None


def test_the_access_cases_cover_both_answers() -> None:
    """The parametrized rule above is no tautology: some cases admit, some refuse, per state."""
    for state in STATES:
        session = stored_driver(touch=None if state == "untouched" else state).session
        answers = set()
        for principal, token in CLIENTS.values():
            given = session.resume_token if token == "" else token
            resume = None if given is None else ResumeRequest(token=given, last_seq=0)
            answers.add(session.access().admits(principal, resume))
        assert answers == {True, False}, state
    untouched = {"untouched", "frames only"}
    for state in STATES:
        session = stored_driver(touch=None if state == "untouched" else state).session
        assert session.access().untouched == (state in untouched), state


# Hub level: two workers ---------------------------------------------------------------------


@asynccontextmanager
async def workers(
    redis_server: RedisServer, model: ScriptedModel, count: int = 2
) -> AsyncIterator[list[tuple[RunningServer, ClusterHub, Cluster]]]:
    """Workers of one cluster in this process, each with its hub and its cluster."""
    config = BridgeSettings(
        redis_url=redis_server.url, cluster=f"t{secrets.token_hex(4)}", owner_lease_s=1.0
    )
    async with AsyncExitStack() as stack:
        found = []
        for _ in range(count):
            app = create_app(config, model=model)
            server = await stack.enter_async_context(serve_app(app))
            stack.push_async_callback(app.state.bridge.aclose)
            hub = app.state.bridge.hub
            assert isinstance(hub, ClusterHub)
            found.append((server, hub, hub._cluster))
        yield found


async def polled(condition: Callable[[], bool], what: str) -> None:
    """Wait, bounded, for a worker's own state to change: nothing signals it, so poll."""
    try:
        async with asyncio.timeout(POLL_S):
            while True:
                if condition():
                    return
                await asyncio.sleep(0.01)
    except TimeoutError:
        pytest.fail(f"not within {POLL_S} s: {what}")


def hello(token: str | None = None, last_seq: int = 0) -> str:
    frame: dict[str, Any] = {"type": "hello", "protocol": 1, "tools": [TOOL]}
    if token is not None:
        frame["resume"] = {"token": token, "last_seq": last_seq}
    return json.dumps(frame)


async def left_with_a_pending_call(server: RunningServer, sid: str) -> tuple[str, dict[str, Any]]:
    """A client says "go", gets a tool request, and closes its socket without answering."""
    async with websockets.connect(server.ws_url(sid)) as ws:
        await ws.send(hello())
        ready = await recv(ws)
        assert ready["type"] == "ready"
        await ws.send(json.dumps({"type": "message", "content": "go"}))
        request = (await until(ws, "tool_request"))[-1]
    return ready["resume_token"], request


async def answered(
    server: RunningServer, sid: str, token: str, request: dict[str, Any], ran: list[str]
) -> list[dict[str, Any]]:
    """The client comes back with its resume and answers the call (its handler runs once)."""
    async with websockets.connect(server.ws_url(sid)) as ws:
        await ws.send(hello(token, request["seq"]))
        ready = await recv(ws)
        assert ready["type"] == "ready", ready
        assert ready["resumed"]["pending_calls"] == [request["id"]]
        ran.append(request["arguments"]["q"])
        await ws.send(json.dumps({"type": "tool_response", "id": request["id"], "result": "x"}))
        return await until(ws, "complete")


def assert_one_result(model: ScriptedModel, rest: list[dict[str, Any]], call_id: str) -> None:
    assert rest[-1]["reason"] == "done"
    assert "".join(f["content"] for f in rest if f["type"] == "token") == "Found it."
    results = [(f["id"], f["status"]) for f in rest if f["type"] == "tool_result"]
    assert results == [(call_id, "ok")]
    # Two steps, the first not made again; the second saw the call with exactly one result.
    assert len(model.requests) == 2
    assert [t.call_id for t in model.requests[-1] if isinstance(t, ToolResult)] == ["scripted_1"]


async def test_a_parked_session_moves_without_a_handover(
    redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    model = ScriptedModel([["Looking. ", call("lookup", {"q": "x"})], ["Found it."]])
    sid = "parked-move"
    async with workers(redis_server, model) as ((a, hub_a, cluster_a), (b, hub_b, cluster_b)):
        handed: list[tuple[str, str]] = []
        hand_over = cluster_a._hand_over

        async def counted(session_id: str, claimer: str) -> None:
            handed.append((session_id, claimer))
            await hand_over(session_id, claimer)

        monkeypatch.setattr(cluster_a, "_hand_over", counted)
        async with asyncio.timeout(BOUND_S):
            token, request = await left_with_a_pending_call(a, sid)
            await polled(lambda: sid in cluster_a.parked, "the first worker parked the session")
            assert hub_a.runtime(sid) is not None
            ran: list[str] = []
            rest = await answered(b, sid, token, request, ran)
            # Not told, the first worker finds out at its next lease renewal and lets go.
            await polled(lambda: hub_a.runtime(sid) is None, "the first worker let go")
            assert sid not in cluster_a.owned and sid not in cluster_a.parked
            assert hub_b.runtime(sid) is not None and sid in cluster_b.owned
    assert handed == []
    assert ran == ["x"]
    assert_one_result(model, rest, request["id"])


async def test_a_client_back_on_its_worker_after_a_claim_took_the_parked_session_is_served(
    redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    model = ScriptedModel([["Looking. ", call("lookup", {"q": "x"})], ["Found it."]])
    sid = "park-lost"
    async with workers(redis_server, model, count=1) as [(a, hub_a, cluster_a)]:
        claims: list[tuple[bool, str, dict[str, int]]] = []
        claim = cluster_a.claim

        async def recorded(session_id: str, **how: Any) -> Arrival:
            arrival = await claim(session_id, **how)
            dropped = {name: len(items) for name, (_, items) in arrival.since.items()}
            claims.append((how["running"], arrival.how, dropped))
            return arrival

        monkeypatch.setattr(cluster_a, "claim", recorded)
        async with asyncio.timeout(BOUND_S):
            token, request = await left_with_a_pending_call(a, sid)
            await polled(lambda: sid in cluster_a.parked, "the worker parked the session")
            # Hold the worker's lease renewals: one between the claim's release and the
            # client's return would take the free lease back, and the race would not happen.
            renewing = asyncio.Event()
            renew_round = cluster_a._renew_round

            async def held_round() -> set[str]:
                await renewing.wait()
                return await renew_round()

            monkeypatch.setattr(cluster_a, "_renew_round", held_round)
            # A claimer takes the session behind the worker's back, and lets it go again.
            store = cluster_a.store
            arrival = await store.arrive(
                sid,
                "x",
                LEASE_S,
                principal=ANONYMOUS.id,
                token=token,
                ask=f"handover x {sid}",
            )
            assert (arrival.how, arrival.holder) == ("unparked", cluster_a.worker)
            assert arrival.record is not None
            assert [c["id"] for c in arrival.record["calls"]["pending"]] == [request["id"]]
            await store.release(sid, "x")
            # The worker still believes the session is parked here.
            assert hub_a.runtime(sid) is not None and sid in cluster_a.parked
            ran: list[str] = []
            rest = await answered(a, sid, token, request, ran)
            renewing.set()
            assert hub_a.runtime(sid) is not None and sid in cluster_a.owned
            assert await store.owner(sid) == cluster_a.worker
    # It went the way of the race: after the claim that made the session, the worker claimed
    # the session it thought parked here, found the lease free and took it, reading only what
    # was added since its copy (nothing).
    nothing_new = dict.fromkeys(("turns", "frames", "finished", "decided"), 0)
    assert claims == [(False, "taken", {}), (True, "taken", nothing_new)]
    assert ran == ["x"]
    assert_one_result(model, rest, request["id"])
