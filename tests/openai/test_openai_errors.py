"""Model failures through the real `openai` client: each ends the run with a stable `error` code
and `complete{reason: "error"}`, and the session and its conversation carry on."""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

import pytest

from bridge.models.retry import StepRetryPolicy
from bridge.testing import Fail, OpenAIServer, Reply, tool_call
from bridge_client import BridgeClient, RunResult
from tests.conftest import StartBridge
from tests.openai.openai_support import (
    API_KEY,
    APIS,
    BOUND_S,
    assert_every_call_answered,
    provider,
    sent_results,
    sent_user_texts,
)
from tests.openai.stream_faults import QUICK_RETRY as QUICK_STEP_RETRY

pytestmark = pytest.mark.parametrize("api", APIS)

# The client library retries 429, 5xx and connection failures; the tests use one retry and a
# short retry-after so that exhausting them takes milliseconds.
QUICK_RETRY = {"retry-after-ms": "5"}


def run_errors(result: RunResult) -> list[dict[str, Any]]:
    return [e for e in result.events if e["type"] == "error"]


async def failing_run_then_recovery(
    api: str,
    start_bridge: StartBridge,
    failure: list[Fail | Reply],
    **options: Any,
) -> tuple[RunResult, RunResult, OpenAIServer]:
    llm = OpenAIServer(*failure, Reply("Recovered."))
    async with llm, start_bridge(model=provider(api, llm, **options)) as server:
        client = BridgeClient(server.ws_url(f"errors-{api}"))
        async with asyncio.timeout(BOUND_S), client:
            failed = await client.run("first question")
            recovered = await client.run("second question")
    assert recovered.reason == "done" and recovered.text == "Recovered."
    assert not run_errors(recovered)
    # The conversation survived the failure: the next request carries both questions.
    assert sent_user_texts(llm.requests[-1]) == ["first question", "second question"]
    assert_every_call_answered(llm.requests[-1])
    return failed, recovered, llm


@pytest.mark.parametrize(
    ("status", "code"),
    [
        (400, "model_bad_request"),
        (401, "model_auth"),
        (403, "model_permission"),
        (404, "model_bad_request"),
    ],
)
async def test_client_errors_end_the_run_with_their_code(
    api: str, start_bridge: StartBridge, status: int, code: str
) -> None:
    failure = Fail(status, f"refused with key {API_KEY}", type="invalid_request_error")
    failed, _, llm = await failing_run_then_recovery(api, start_bridge, [failure])
    assert failed.reason == "error"
    [error] = run_errors(failed)
    assert error["code"] == code and error["run_id"] == failed.run_id
    assert f"HTTP {status}" in error["message"]
    assert API_KEY not in json.dumps(failed.events)
    assert len(llm.requests) == 2, "4xx other than 429 is not retried"


async def test_rate_limit_then_success_is_retried_by_the_client_library(
    api: str, start_bridge: StartBridge
) -> None:
    llm = OpenAIServer(Fail.rate_limited(retry_after_s=0.01), Reply("Made it."))
    async with llm, start_bridge(model=provider(api, llm)) as server:
        client = BridgeClient(server.ws_url(f"rate-{api}"))
        async with asyncio.timeout(BOUND_S), client:
            result = await client.run("hello")
            again = await client.run("hello again")
    assert result.reason == "done" and result.text == "Made it." and not run_errors(result)
    assert again.reason == "done"
    first, retried = llm.requests[:2]
    assert first.body == retried.body
    assert retried.headers["x-stainless-retry-count"] == "1"


async def test_rate_limit_beyond_the_retries_is_model_rate_limited(
    api: str, start_bridge: StartBridge
) -> None:
    limited = Fail.rate_limited(retry_after_s=0.005)
    failed, _, _ = await failing_run_then_recovery(api, start_bridge, [limited, limited])
    assert failed.reason == "error"
    assert [e["code"] for e in run_errors(failed)] == ["model_rate_limited"]


async def test_server_error_beyond_the_retries_is_model_unavailable(
    api: str, start_bridge: StartBridge
) -> None:
    broken = Fail(500, "The server had an error", headers=QUICK_RETRY)
    failed, _, llm = await failing_run_then_recovery(api, start_bridge, [broken, broken])
    assert failed.reason == "error"
    assert [e["code"] for e in run_errors(failed)] == ["model_unavailable"]
    assert len(llm.requests) == 3


async def test_connection_dropped_mid_stream_every_time_is_model_connection(
    api: str, start_bridge: StartBridge
) -> None:
    cut = Reply(["Half ", "an ", "answer"], end="drop", cut_after=2)
    failed, _, llm = await failing_run_then_recovery(
        api, start_bridge, [cut, cut, cut], step_retry=QUICK_STEP_RETRY
    )
    assert failed.reason == "error"
    assert [e["code"] for e in run_errors(failed)] == ["model_connection"]
    assert [e["attempt"] for e in failed.events if e["type"] == "step_retry"] == [1, 2]
    assert len(llm.requests) == 4, "a broken stream is made again twice, then the run ends"


async def test_stalled_stream_is_model_timeout(api: str, start_bridge: StartBridge) -> None:
    stall = Reply(["Thinking"], end="stall")
    # No step retries here, so that the test waits for one timeout, not three.
    failed, _, _ = await failing_run_then_recovery(
        api, start_bridge, [stall], timeout_s=1.0, step_retry=StepRetryPolicy(retries=0)
    )
    assert failed.reason == "error"
    assert [e["code"] for e in run_errors(failed)] == ["model_timeout"]
    assert failed.text == "Thinking"


async def test_failure_after_a_tool_step_keeps_the_results(
    api: str, start_bridge: StartBridge
) -> None:
    broken = Fail(503, "overloaded", headers=QUICK_RETRY)
    llm = OpenAIServer(
        Reply(calls=[tool_call("note", {"text": "x"}, id="call_note")]),
        broken,
        broken,
        Reply("Noted."),
    )
    async with llm, start_bridge(model=provider(api, llm)) as server:
        client = BridgeClient(server.ws_url(f"late-failure-{api}"))

        @client.tool
        def note(text: str) -> str:
            """Take a note."""
            return "saved"

        async with asyncio.timeout(BOUND_S), client:
            failed = await client.run("take a note")
            recovered = await client.run("did it work?")
    assert failed.reason == "error"
    assert [e["code"] for e in run_errors(failed)] == ["model_unavailable"]
    assert recovered.reason == "done"
    assert sent_results(llm.requests[-1]) == {"call_note": ["saved"]}
    assert_every_call_answered(llm.requests[-1])


async def test_the_api_key_never_reaches_logs_or_messages(
    api: str, start_bridge: StartBridge, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    llm = OpenAIServer(
        Fail(401, f"Incorrect API key provided: {API_KEY}.", type="invalid_request_error"),
        Reply("Fine now."),
    )
    async with llm, start_bridge(model=provider(api, llm)) as server:
        client = BridgeClient(server.ws_url(f"secret-{api}"))
        async with asyncio.timeout(BOUND_S), client:
            failed = await client.run("hi")
            ok = await client.run("hi again")
    assert [e["code"] for e in run_errors(failed)] == ["model_auth"]
    assert "[redacted]" in run_errors(failed)[0]["message"]
    assert ok.reason == "done"
    assert llm.requests[0].headers["authorization"] == f"Bearer {API_KEY}"
    assert API_KEY not in json.dumps(failed.events + ok.events)
    assert caplog.records, "debug logging was captured"
    assert API_KEY not in caplog.text
    assert API_KEY not in repr(provider(api, llm))
