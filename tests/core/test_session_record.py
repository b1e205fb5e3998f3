"""The session as one record: exact dump/load round trip, resume decisions, snapshot content.

No event loop: the session is plain data and decisions.
"""

from __future__ import annotations

import json
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bridge.calls import CallState, TerminalStatus
from bridge.conversation import (
    AssistantTurn,
    ToolCall,
    ToolResult,
    Turn,
    UserTurn,
    make_result,
)
from bridge.limits import SessionLimits
from bridge.protocol import (
    ResumeRequest,
    RunStartedMessage,
    ServerPongMessage,
    ToolRequestMessage,
    ToolResultMessage,
)
from bridge.session import ResumePlan, Session


class Clock:
    """A wall clock the test moves by hand."""

    def __init__(self, now: float = 1_700_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


# Strategies -----------------------------------------------------------------------------------

# Only what UTF-8 can carry: no client could send a lone surrogate.
texts = st.text(alphabet=st.characters(codec="utf-8"), max_size=20)
names = st.from_regex(r"[A-Za-z][A-Za-z0-9_-]{0,12}", fullmatch=True)
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**53), 2**53)
    | st.floats(allow_nan=False, allow_infinity=False)
    | texts,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(texts, inner, max_size=3),
    max_leaves=8,
)
json_objects = st.dictionaries(texts, json_values, max_size=3)


@st.composite
def tool_definitions(draw: st.DrawFn, name: str) -> dict[str, Any]:
    definition: dict[str, Any] = {
        "name": name,
        "description": draw(texts),
        "parameters": draw(
            st.sampled_from(
                [
                    {"type": "object"},
                    {"type": "object", "properties": {"x": {"type": "integer"}}},
                    {
                        "type": "object",
                        "properties": {"q": {"type": "string", "maxLength": 9}},
                        "required": ["q"],
                    },
                ]
            )
        ),
    }
    if draw(st.booleans()):
        definition["timeout_ms"] = draw(st.integers(1, 300_000))
    if draw(st.booleans()):
        definition["output_schema"] = {"type": "object"}
    for hint in ("interactive", "idempotent", "untrusted_content"):
        if draw(st.booleans()):
            definition[hint] = True
    # read_only and destructive contradict each other: at most one of them.
    effect = draw(st.sampled_from([None, "read_only", "destructive"]))
    if effect is not None:
        definition[effect] = True
    return definition


@st.composite
def turns(draw: st.DrawFn) -> list[Turn]:
    out: list[Turn] = []
    for index in range(draw(st.integers(0, 4))):
        run_id = draw(st.sampled_from(["", f"run_x_{index}"]))
        out.append(UserTurn(draw(texts), run_id))
        calls = tuple(
            ToolCall(
                f"model_{index}_{n}",
                draw(names),
                draw(st.one_of(json_objects.map(json.dumps), texts)),
                draw(st.sampled_from(["", f"call_w_{index}_{n}"])),
            )
            for n in range(draw(st.integers(0, 3)))
        )
        out.append(AssistantTurn(draw(texts), calls, run_id))
        for tool_call in calls:
            status = draw(st.sampled_from(list(TerminalStatus)))
            if status is TerminalStatus.OK:
                data = draw(json_values)
                untrusted = draw(st.booleans())
                out.append(make_result(tool_call, status, data=data, untrusted=untrusted))
            else:
                detail = draw(st.none() | texts)
                out.append(make_result(tool_call, status, detail=detail))
    return out


@st.composite
def sessions(draw: st.DrawFn) -> tuple[Session, Clock, SessionLimits]:
    clock = Clock(draw(st.floats(1e9, 2e9)))
    limits = SessionLimits(
        max_queued_messages=4,
        replay_max_messages=draw(st.integers(1, 12)),
        replay_max_bytes=draw(st.integers(100, 4000)),
    )
    session = Session(draw(names), clock=clock, limits=limits)
    tool_names = draw(st.lists(names, unique=True, max_size=4))
    report = session.greet([draw(tool_definitions(name)) for name in tool_names])
    assert report.accepted == tool_names
    session.conversation.turns = draw(turns())

    # Calls: some pending, some finished in each way a call can finish.
    for _ in range(draw(st.integers(0, 5))):
        call_id = session.calls.new_id()
        pending = session.calls.open(
            call_id,
            name=draw(names),
            run_id=draw(st.sampled_from(["run_a", "run_b"])),
            timeout_s=draw(st.floats(0.001, 600)),
            interactive=draw(st.booleans()),
            arguments=draw(json_objects),
        )
        pending.request_seq = draw(st.integers(0, 50))
        if draw(st.booleans()):
            session.calls.progress(call_id, draw(st.none() | texts))
        ending = draw(st.sampled_from(["pending", "answer", "cancel"]))
        if ending == "answer":
            session.calls.answer(call_id)
        elif ending == "cancel":
            session.calls.cancel(call_id)
    if draw(st.booleans()):
        clock.now += draw(st.floats(0, 1000))
        session.calls.expire()

    # Approval requests: some open, some decided; tools approved for the session.
    for _ in range(draw(st.integers(0, 3))):
        asked = session.approvals.open(
            session.calls.new_id(),
            run_id="run_a",
            name=draw(names),
            arguments=draw(json_objects),
            reason=draw(texts),
            timeout_s=draw(st.floats(0.001, 600)),
        )
        asked.request_seq = draw(st.integers(0, 50))
        if draw(st.booleans()):
            session.approvals.close(asked.id)
    session.approvals.approved_tools = set(draw(st.lists(names, max_size=2)))

    # A run in progress, and messages queued behind it.
    if draw(st.booleans()):
        run = session.submit(draw(texts))
        assert run is not None
        run.steps = draw(st.integers(0, 8))
        run.stop_reason = draw(st.sampled_from(["stopped", "disconnected"]))
        run.partial = draw(st.lists(texts, max_size=3))
        run.tainted = draw(st.booleans())
        for name in draw(st.lists(names, max_size=3)):
            run.spend_call(64)
            run.record_outcome(name, failed=draw(st.booleans()))
        for _ in range(draw(st.integers(0, 4))):
            session.submit(draw(texts))

    # Outbound traffic, with a reader coming and going so tokens coalesce only sometimes.
    log = session.outbound
    for op in draw(st.lists(st.integers(0, 6), max_size=25)):
        if op == 0:
            log.push(ServerPongMessage(nonce=draw(texts)))
        elif op in (1, 2):
            log.push_token(draw(st.sampled_from(["run_a", "run_b"])), draw(texts))
        elif op == 3:
            log.push(
                ToolResultMessage(
                    id="c", run_id="run_a", name="t", status="ok", result=draw(json_values)
                )
            )
        elif op == 4:
            if log.cursor is None:
                log.attach(log.first_seq - 1 if draw(st.booleans()) else None)
            else:
                log.detach()
        elif op == 5:
            log.take()
        else:
            log.reader_busy = not log.reader_busy
    return session, clock, limits


# Round trip -----------------------------------------------------------------------------------


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(sessions())
def test_dump_load_dump_round_trips_exactly(case: tuple[Session, Clock, SessionLimits]) -> None:
    session, clock, limits = case
    record = session.dump()
    text = json.dumps(record, sort_keys=True)
    # What a store holds is JSON text: the record must survive it unchanged.
    assert json.loads(text) == record
    loaded = Session.load(json.loads(text), clock=clock, limits=limits)
    assert json.dumps(loaded.dump(), sort_keys=True) == text
    assert json.dumps(session.dump(), sort_keys=True) == text

    # The loaded session behaves as the original would from here on.
    assert [t.to_wire() for t in loaded.tools()] == [t.to_wire() for t in session.tools()]
    assert loaded.conversation.turns == session.conversation.turns
    assert [c.id for c in loaded.calls.pending()] == [c.id for c in session.calls.pending()]
    assert loaded.calls.next_deadline() == session.calls.next_deadline()
    assert loaded.calls.new_id() == session.calls.new_id()
    assert loaded.run_id == session.run_id and list(loaded.queue) == list(session.queue)
    assert loaded.last_seq == session.last_seq
    assert loaded.outbound.first_seq == session.outbound.first_seq
    assert loaded.resume_token == session.resume_token
    for call in session.calls.pending():
        assert loaded.calls.classify(call.id) == session.calls.classify(call.id)
    if session.run is None:
        assert loaded.submit("next") is not None and session.submit("next") is not None
        assert loaded.run_id == session.run_id


def test_round_trip_keeps_every_terminal_status_and_call_state() -> None:
    clock = Clock()
    session = Session("s", clock=clock)
    calls = [ToolCall(f"m{n}", "t", "{}", f"w{n}") for n in range(len(TerminalStatus))]
    session.conversation.add(AssistantTurn("", tuple(calls)))
    for tool_call, status in zip(calls, TerminalStatus, strict=True):
        session.conversation.add(make_result(tool_call, status, data={"n": 1}, detail="why"))
    for ending in ("answer", "cancel", "expire", None):
        call_id = session.calls.new_id()
        session.calls.open(call_id, name="t", run_id="r", timeout_s=1.0)
        if ending == "answer":
            session.calls.answer(call_id)
        elif ending == "cancel":
            session.calls.cancel(call_id)
        elif ending == "expire":
            clock.now += 2
            session.calls.expire()
    loaded = Session.load(json.loads(json.dumps(session.dump())), clock=clock)
    statuses = [t.status for t in loaded.conversation if isinstance(t, ToolResult)]
    assert statuses == list(TerminalStatus)
    finished = loaded.dump()["calls"]["finished"]
    assert [state for _, state in finished] == [
        CallState.ANSWERED,
        CallState.CANCELLED,
        CallState.TIMED_OUT,
    ]
    assert len(loaded.calls) == 1


# Resume decisions -----------------------------------------------------------------------------


def session_with_traffic(frames: int, window: int = 100) -> Session:
    session = Session("s", clock=Clock(), limits=SessionLimits(replay_max_messages=window))
    for n in range(frames):
        session.outbound.push(ServerPongMessage(nonce=str(n)))
    return session


def test_resume_replays_when_the_window_covers_the_gap() -> None:
    session = session_with_traffic(10)
    token = session.resume_token
    assert session.resume_plan(ResumeRequest(token=token, last_seq=3)) is ResumePlan.REPLAY
    assert session.resume_plan(ResumeRequest(token=token, last_seq=10)) is ResumePlan.REPLAY


def test_resume_gets_a_snapshot_after_a_gap_or_from_zero() -> None:
    session = session_with_traffic(10, window=4)  # seqs 7..10 are kept
    token = session.resume_token
    assert session.resume_plan(ResumeRequest(token=token, last_seq=6)) is ResumePlan.REPLAY
    assert session.resume_plan(ResumeRequest(token=token, last_seq=5)) is ResumePlan.SNAPSHOT
    assert session.resume_plan(ResumeRequest(token=token, last_seq=0)) is ResumePlan.SNAPSHOT
    # A seq this session never sent (a client of another incarnation): the state, not a replay.
    assert session.resume_plan(ResumeRequest(token=token, last_seq=11)) is ResumePlan.SNAPSHOT


def test_resume_from_zero_on_a_fresh_session_is_a_snapshot() -> None:
    session = session_with_traffic(0)
    request = ResumeRequest(token=session.resume_token, last_seq=0)
    assert session.resume_plan(request) is ResumePlan.SNAPSHOT


def test_a_wrong_token_is_denied_whatever_the_window_holds() -> None:
    session = session_with_traffic(10)
    for last_seq in (0, 5, 10, 99):
        for token in ("", "x", session.resume_token[:-1], session.resume_token + "x"):
            request = ResumeRequest(token=token, last_seq=last_seq)
            assert session.resume_plan(request) is ResumePlan.DENIED


def test_tokens_are_per_session_and_unguessable() -> None:
    tokens = {Session(f"s{n}", clock=Clock()).resume_token for n in range(50)}
    assert len(tokens) == 50 and all(len(t) >= 32 for t in tokens)


# Snapshot -------------------------------------------------------------------------------------


def test_snapshot_shows_turns_calls_with_wire_ids_and_statuses_pending_calls_and_the_run() -> None:
    clock = Clock()
    session = Session("s", clock=clock)
    first = session.submit("first question")
    assert first is not None
    session.conversation.add(UserTurn("first question", first.id))
    ok = ToolCall("m1", "lookup", '{"q": "a"}', "call_w_1")
    failed = ToolCall("m2", "lookup", "{not json", "call_w_2")
    unknown = ToolCall("m3", "pay", "{}", "call_w_3")
    legacy = ToolCall("m4", "lookup", "", "")  # a call recorded before wire ids existed
    session.conversation.add(AssistantTurn("Let me look.", (ok, failed, unknown, legacy), first.id))
    session.conversation.add(make_result(ok, TerminalStatus.OK, data={"hits": 2}))
    session.conversation.add(make_result(failed, TerminalStatus.INVALID_ARGUMENTS, detail="bad"))
    session.conversation.add(make_result(unknown, TerminalStatus.OUTCOME_UNKNOWN))
    session.conversation.add(make_result(legacy, TerminalStatus.OK, data="plain"))
    session.conversation.add(AssistantTurn("Two hits.", (), first.id))
    following = session.finish_run()
    assert following is None

    second = session.submit("second question")
    assert second is not None
    session.conversation.add(UserTurn("second question", second.id))
    waiting = ToolCall("m5", "confirm", '{"x": 1}', "call_w_5")
    session.conversation.add(AssistantTurn("Confirm?", (waiting,), second.id))
    session.calls.open("call_w_5", name="confirm", run_id=second.id, timeout_s=30)
    second.partial = ["Thinking", " more"]
    session.outbound.push(RunStartedMessage(run_id=second.id, content="second question"))

    snapshot = json.loads(session.snapshot().model_dump_json(exclude_none=True))
    assert snapshot["type"] == "snapshot" and snapshot["last_seq"] == session.last_seq == 1
    assert snapshot["pending_calls"] == ["call_w_5"]
    assert snapshot["run"] == {"run_id": second.id, "content": "Thinking more"}
    turns_seen = [(t["role"], t["content"], t.get("run_id")) for t in snapshot["turns"]]
    assert turns_seen == [
        ("user", "first question", first.id),
        ("assistant", "Let me look.", first.id),
        ("assistant", "Two hits.", first.id),
        ("user", "second question", second.id),
        ("assistant", "Confirm?", second.id),
    ]
    calls = snapshot["turns"][1]["tool_calls"]
    assert calls[0] == {
        "id": "call_w_1",
        "name": "lookup",
        "arguments": {"q": "a"},
        "status": "ok",
        "result": {"hits": 2},
    }
    assert calls[1]["id"] == "call_w_2" and calls[1]["arguments"] == "{not json"
    assert calls[1]["status"] == "invalid_arguments" and "bad" in calls[1]["error"]
    assert "result" not in calls[1]
    assert calls[2]["status"] == "outcome_unknown" and "may or may not" in calls[2]["error"]
    assert calls[3]["id"] == "m4" and calls[3]["arguments"] == {} and calls[3]["result"] == "plain"
    pending = snapshot["turns"][4]["tool_calls"]
    assert pending == [
        {"id": "call_w_5", "name": "confirm", "arguments": {"x": 1}, "status": "pending"}
    ]


def test_snapshot_of_an_idle_session_has_no_run() -> None:
    session = Session("s", clock=Clock())
    snapshot = session.snapshot()
    assert snapshot.run is None and snapshot.turns == [] and snapshot.pending_calls == []
    assert snapshot.last_seq == 0


def test_a_pending_call_is_redelivered_only_when_its_request_is_not_replayed() -> None:
    session = Session("s", clock=Clock())
    for n in (1, 2):
        session.calls.open(f"c{n}", name="t", run_id="r", timeout_s=30)
        message = ToolRequestMessage(id=f"c{n}", run_id="r", name="t", arguments={}, timeout_ms=1)
        pending = session.calls.get(f"c{n}")
        assert pending is not None
        pending.request_seq = session.outbound.push(message)
    assert [c.id for c in session.calls.not_seen_after(0)] == []
    assert [c.id for c in session.calls.not_seen_after(1)] == ["c1"]
    assert [c.id for c in session.calls.not_seen_after(2)] == ["c1", "c2"]
    assert [c.id for c in session.calls.not_seen_after(None)] == ["c1", "c2"]
