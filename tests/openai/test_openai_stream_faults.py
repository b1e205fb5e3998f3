"""Streams that break after they started, through the real `openai` client and the bridge on
uvicorn: a step counts only when the model finished it, a broken one is made again after a
`step_retry`, and nothing of a failed attempt reaches the conversation or a tool."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from bridge.models.retry import StepRetryPolicy
from bridge.testing import Fail, OpenAIServer, Reply, tool_call
from bridge_client import BridgeClient, RunResult
from tests.conftest import StartBridge
from tests.openai.openai_support import (
    APIS,
    BOUND_S,
    assert_every_call_answered,
    provider,
    sent_calls,
    sent_user_texts,
)
from tests.openai.stream_faults import (
    QUICK_RETRY,
    assistant_texts,
    error_codes,
    final_text,
    retries,
)

pytestmark = pytest.mark.parametrize("api", APIS)


async def one_run(
    api: str, start_bridge: StartBridge, llm: OpenAIServer, **options: Any
) -> tuple[RunResult, RunResult]:
    """A run against the script, then a plain follow-up run that shows what the model is sent."""
    llm.add(Reply("Follow-up answer."))
    options.setdefault("step_retry", QUICK_RETRY)
    async with llm, start_bridge(model=provider(api, llm, **options)) as server:
        client = BridgeClient(server.ws_url(f"faults-{api}"))
        async with asyncio.timeout(BOUND_S), client:
            first = await client.run("first question")
            follow_up = await client.run("second question")
    assert follow_up.reason == "done" and follow_up.text == "Follow-up answer."
    assert sent_user_texts(llm.requests[-1]) == ["first question", "second question"]
    assert_every_call_answered(llm.requests[-1])
    return first, follow_up


@pytest.mark.parametrize("cut_after", [0, 2, None])
async def test_a_truncated_stream_is_never_done(
    api: str, start_bridge: StartBridge, cut_after: int | None
) -> None:
    # None: every text event arrived, only the finish is missing. Still not an answer.
    cut = Reply(["One ", "two ", "three."], end="truncate", cut_after=cut_after)
    llm = OpenAIServer(cut, cut, cut)
    failed, _ = await one_run(api, start_bridge, llm)
    assert failed.reason == "error"
    assert error_codes(failed.events) == ["model_truncated"]
    assert [r["attempt"] for r in retries(failed.events)] == [1, 2]
    assert {r["reason"] for r in retries(failed.events)} == {"model_truncated"}
    assert len(llm.requests) == 4


async def test_a_truncated_stream_is_made_again(api: str, start_bridge: StartBridge) -> None:
    llm = OpenAIServer(
        Reply(["Half ", "of it"], end="truncate", cut_after=1), Reply(["The whole ", "answer."])
    )
    result, _ = await one_run(api, start_bridge, llm)
    assert result.reason == "done" and not error_codes(result.events)
    assert final_text(result.events) == "The whole answer."
    assert [r["reason"] for r in retries(result.events)] == ["model_truncated"]
    assert assistant_texts(llm.requests[-1].body, api) == ["The whole answer."]


async def test_a_malformed_event_is_retried_never_an_internal_error(
    api: str, start_bridge: StartBridge
) -> None:
    llm = OpenAIServer(Reply(["Garbled ", "text"], end="malformed", cut_after=1), Reply("Clean."))
    result, _ = await one_run(api, start_bridge, llm)
    assert result.reason == "done" and not error_codes(result.events)
    assert [r["reason"] for r in retries(result.events)] == ["model_bad_response"]
    assert final_text(result.events) == "Clean."


async def test_malformed_events_past_the_retries_end_with_model_bad_response(
    api: str, start_bridge: StartBridge
) -> None:
    # After the bad event the server finishes the answer as if nothing happened: what came
    # after it is lost, so the answer must not be taken for whole.
    bad = Reply(["Garbled ", "text"], end="malformed", cut_after=1)
    llm = OpenAIServer(bad, bad, bad)
    failed, _ = await one_run(api, start_bridge, llm)
    assert failed.reason == "error"
    assert error_codes(failed.events) == ["model_bad_response"]


async def test_an_event_of_the_wrong_shape_is_model_bad_response(
    api: str, start_bridge: StartBridge
) -> None:
    odd = (
        b'data: {"id": "c", "object": "chat.completion.chunk", "created": 0, "model": "m",'
        b' "choices": [{"index": 0, "delta": "not an object"}]}\n\n'
        if api == "chat"
        else b'data: {"type": "response.output_text.delta", "item_id": "m", "output_index": 0,'
        b' "content_index": 0, "delta": 7, "sequence_number": 3}\n\n'
    )
    bad = Reply(["Odd"], end="malformed", cut_after=1, bad_event=odd)
    failed, _ = await one_run(api, start_bridge, OpenAIServer(bad, bad, bad))
    assert error_codes(failed.events) == ["model_bad_response"]


async def test_a_drop_after_the_first_token_is_retried_and_leaves_no_trace(
    api: str, start_bridge: StartBridge
) -> None:
    llm = OpenAIServer(
        Reply(["Voided ", "attempt ", "text"], end="drop", cut_after=1),
        Reply(["Kept ", "answer."]),
    )
    result, _ = await one_run(api, start_bridge, llm)
    assert result.reason == "done" and not error_codes(result.events)
    kinds = [(e["type"], e.get("content")) for e in result.events if e["type"] != "tool_result"]
    # The client saw the voided token, then the marker, and only then the new attempt.
    assert kinds[1:5] == [
        ("token", "Voided "),
        ("step_retry", None),
        ("token", "Kept "),
        ("token", "answer."),
    ]
    [marker] = retries(result.events)
    assert marker["run_id"] == result.run_id
    assert (marker["step"], marker["attempt"], marker["reason"]) == (1, 1, "model_connection")
    assert final_text(result.events) == "Kept answer."
    # The new attempt asked exactly what the failed one did, and the next run's request knows
    # only the kept answer.
    assert llm.requests[1].body == llm.requests[0].body
    assert assistant_texts(llm.requests[-1].body, api) == ["Kept answer."]
    assert "Voided" not in str(llm.requests[-1].body)


async def test_a_half_streamed_tool_call_is_never_dispatched(
    api: str, start_bridge: StartBridge
) -> None:
    llm = OpenAIServer(
        # The call's head and part of its arguments arrive, then the stream drops.
        Reply(
            "Deleting. ",
            calls=[tool_call("delete_files", {"path": "/important"}, id="call_half")],
            end="drop",
            cut_after=3,
        ),
        # Every fragment arrives, but the stream ends without its finish event.
        Reply(
            calls=[tool_call("delete_files", {"path": "/everything"}, id="call_whole")],
            end="truncate",
        ),
        Reply("Looking it up. ", calls=[tool_call("lookup", {"q": "files"}, id="call_ok")]),
        Reply("Nothing was deleted."),
    )
    deleted: list[str] = []
    looked_up: list[str] = []
    llm.add(Reply("Follow-up answer."))
    async with llm, start_bridge(model=provider(api, llm, step_retry=QUICK_RETRY)) as server:
        client = BridgeClient(server.ws_url(f"half-call-{api}"))

        @client.tool
        def delete_files(path: str) -> str:
            """Delete files."""
            deleted.append(path)
            return "deleted"

        @client.tool
        def lookup(q: str) -> str:
            """Look something up."""
            looked_up.append(q)
            return "found"

        async with asyncio.timeout(BOUND_S), client:
            result = await client.run("clean up")
            await client.run("and now?")

    assert deleted == [] and looked_up == ["files"]
    assert result.reason == "done"
    requested = [e["name"] for e in result.events if e["type"] in ("tool_request", "tool_result")]
    assert requested == ["lookup", "lookup"]
    assert [r["reason"] for r in retries(result.events)] == ["model_connection", "model_truncated"]
    assert final_text(result.events) == "Looking it up. Nothing was deleted."
    for request in llm.requests[3:]:
        assert [c[0] for c in sent_calls(request)] == ["call_ok"]
        assert_every_call_answered(request)


async def test_retries_stop_at_the_limit_with_the_steps_code(
    api: str, start_bridge: StartBridge
) -> None:
    llm = OpenAIServer(
        Reply(["First ", "try"], end="drop", cut_after=1),
        Reply(["Second ", "try"], end="drop", cut_after=1),
        Reply(["Third ", "try"], end="drop", cut_after=1),
    )
    failed, _ = await one_run(api, start_bridge, llm)
    assert failed.reason == "error"
    assert error_codes(failed.events) == ["model_connection"]
    assert [(r["step"], r["attempt"]) for r in retries(failed.events)] == [(1, 1), (1, 2)]
    assert len(llm.requests) == 4, "three attempts, then the follow-up run"
    # What the last attempt streamed stays, as with any model failure; the voided ones do not.
    assert final_text(failed.events) == "Third "
    assert assistant_texts(llm.requests[-1].body, api) == ["Third "]


async def test_the_retry_budget_comes_from_the_policy(api: str, start_bridge: StartBridge) -> None:
    cut = Reply(["Gone"], end="drop", cut_after=1)
    no_retry = StepRetryPolicy(retries=0)
    failed, _ = await one_run(api, start_bridge, OpenAIServer(cut), step_retry=no_retry)
    assert error_codes(failed.events) == ["model_connection"] and not retries(failed.events)


async def test_a_stalled_stream_is_retried(api: str, start_bridge: StartBridge) -> None:
    llm = OpenAIServer(Reply(["Thinking"], end="stall"), Reply("Awake."))
    result, _ = await one_run(api, start_bridge, llm, timeout_s=0.5)
    assert result.reason == "done" and final_text(result.events) == "Awake."
    assert [r["reason"] for r in retries(result.events)] == ["model_timeout"]


async def test_an_overloaded_server_during_a_retry_is_waited_for(
    api: str, start_bridge: StartBridge
) -> None:
    # The first attempt broke; the second meets a 503 beyond the client library's own retry,
    # and the loop waits the Retry-After it was given before the third.
    unavailable = Fail.unavailable(retry_after_s=0.02)
    llm = OpenAIServer(
        Reply(["Cut"], end="drop", cut_after=1), unavailable, unavailable, Reply("Back.")
    )
    result, _ = await one_run(api, start_bridge, llm)
    assert result.reason == "done" and final_text(result.events) == "Back."
    assert [r["reason"] for r in retries(result.events)] == [
        "model_connection",
        "model_unavailable",
    ]
    assert len(llm.requests) == 5


async def test_an_overloaded_server_before_any_answer_is_not_retried_by_the_loop(
    api: str, start_bridge: StartBridge
) -> None:
    # The client library already retried it; the loop does not multiply those retries.
    unavailable = Fail.unavailable(retry_after_s=0.001)
    failed, _ = await one_run(api, start_bridge, OpenAIServer(unavailable, unavailable))
    assert error_codes(failed.events) == ["model_unavailable"] and not retries(failed.events)


async def test_an_answer_cut_by_its_token_limit_is_model_incomplete(
    api: str, start_bridge: StartBridge
) -> None:
    llm = OpenAIServer(
        Reply(
            "The list goes on and",
            calls=[tool_call("lookup", {"q": "x"}, id="call_cut")],
            end="incomplete",
        )
    )
    failed, _ = await one_run(api, start_bridge, llm)
    assert failed.reason == "error"
    assert error_codes(failed.events) == ["model_incomplete"]
    assert "token limit" in next(e for e in failed.events if e["type"] == "error")["message"]
    assert not retries(failed.events), "the same request would stop at the same limit"
    assert not [e for e in failed.events if e["type"] == "tool_request"]
    assert final_text(failed.events) == "The list goes on and"
