"""Soak: 200 runs per API through the bridge on uvicorn and the real `openai` client, with a
fault on about one model stream in five. Every run must end `done` or with a documented
`model_*` code, never `internal_error`, and a run's final text must be exactly what the model's
last complete attempt said (or, when the retries ran out, what its last attempt streamed).

Each run's script is planned ahead, with the outcome the retry rule predicts for it, so the
test checks every run against its own prediction rather than against totals.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter
from dataclasses import dataclass, field

import pytest

from bridge.testing import Fail, OpenAIServer, Reply, tool_call
from bridge.testing.openai_wire import ScriptItem
from bridge_client import BridgeClient
from tests.conftest import StartBridge
from tests.openai.openai_support import APIS, BOUND_S, provider, sent_calls
from tests.openai.stream_faults import (
    DOCUMENTED_MODEL_CODES,
    QUICK_RETRY,
    assistant_texts,
    error_codes,
    final_text,
    retries,
)

RUNS = 200
RUNS_PER_SESSION = 25
FAULT_RATE = 0.2
SEED = 15
FAULT_CODES = {
    "drop": "model_connection",
    "truncate": "model_truncated",
    "malformed": "model_bad_response",
    "unavailable": "model_unavailable",
    "incomplete": "model_incomplete",
}
BROKEN = {"drop", "truncate", "malformed"}


@dataclass
class Plan:
    script: list[ScriptItem] = field(default_factory=list)
    reason: str = "done"
    code: str | None = None
    text: str = ""
    faults: int = 0
    retries: int = 0
    # What the last attempt of a failed step streamed: it stays in the conversation.
    partial: str = ""


def plan_step(rng: random.Random, plan: Plan, run: int, step: int, with_call: bool) -> bool:
    """Append one step's attempts; False when the step, and so the run, fails."""
    retries_done = 0
    attempt = 0
    while True:
        attempt += 1
        tag = f"ok-{run}-{step}"
        if rng.random() >= FAULT_RATE:
            pieces = [f"{tag} ", f"says {rng.randint(0, 999)}. "]
            calls = [tool_call("lookup", {"q": tag}, fragment_chars=4)] if with_call else []
            plan.script.append(Reply(pieces, calls=calls))
            plan.text += "".join(pieces)
            return True
        plan.faults += 1
        fault = rng.choice(["drop", "drop", "truncate", "malformed", "unavailable", "incomplete"])
        void = f"void-{run}-{step}-{attempt}"
        pieces = [f"{void} ", "never kept. "]
        calls = [tool_call("lookup", {"q": void}, fragment_chars=4)] if with_call else []
        content_events = len(pieces) + sum(len(c.fragments()) for c in calls)
        cut = rng.choice([None, *range(content_events + 1)]) if fault in BROKEN else None
        if fault == "unavailable":
            plan.script.append(Fail.unavailable(retry_after_s=0.001))
            streamed = ""
        else:
            plan.script.append(Reply(pieces, calls=calls, end=fault, cut_after=cut))  # type: ignore[arg-type]
            streamed = "".join(pieces if cut is None else pieces[:cut])
        # The rule of bridge.models.retry: a broken stream is made again; a server that cannot
        # start an answer only once the step is already being made again.
        broken = fault in BROKEN
        transient = broken or fault == "unavailable"
        if (broken or (transient and retries_done > 0)) and retries_done < QUICK_RETRY.retries:
            retries_done += 1
            plan.retries += 1
            continue
        plan.reason, plan.code = "error", FAULT_CODES[fault]
        plan.text += streamed
        plan.partial = streamed
        return False


def plan_run(rng: random.Random, run: int) -> Plan:
    plan = Plan()
    if rng.random() < 0.3:
        if plan_step(rng, plan, run, 1, with_call=True):
            plan_step(rng, plan, run, 2, with_call=False)
    else:
        plan_step(rng, plan, run, 1, with_call=False)
    return plan


def soak_client(url: str, looked_up: list[str]) -> BridgeClient:
    client = BridgeClient(url)

    @client.tool
    def lookup(q: str) -> str:
        """Look something up."""
        looked_up.append(q)
        return "found"

    return client


@pytest.mark.parametrize("api", APIS)
async def test_soak_with_a_fault_on_one_stream_in_five(api: str, start_bridge: StartBridge) -> None:
    rng = random.Random(f"{SEED}-{api}")
    plans = [plan_run(rng, n) for n in range(RUNS)]
    llm = OpenAIServer()
    looked_up: list[str] = []
    outcomes: Counter[str] = Counter()
    mismatches: list[str] = []
    started = time.perf_counter()
    async with llm:
        # No retries inside the client library: each script item is then exactly one request,
        # which keeps the prediction simple; its own retries are tested elsewhere.
        model = provider(api, llm, step_retry=QUICK_RETRY, max_retries=0)
        async with start_bridge(model=model) as server:
            # Several sessions, so that every request does not carry hundreds of earlier turns.
            for first in range(0, RUNS, RUNS_PER_SESSION):
                url = server.ws_url(f"soak-{api}-{first}")
                async with soak_client(url, looked_up) as client:
                    for n in range(first, min(first + RUNS_PER_SESSION, RUNS)):
                        plan = plans[n]
                        llm.add(*plan.script)
                        async with asyncio.timeout(BOUND_S):
                            result = await client.run(f"question {n}")
                        codes = error_codes(result.events)
                        code = codes[0] if codes else None
                        outcomes[code or result.reason] += 1
                        got = (result.reason, code, final_text(result.events), result.text)
                        if got != (plan.reason, plan.code, plan.text, plan.text):
                            mismatches.append(f"run {n}: expected {plan}, got {got}")
                        if len(retries(result.events)) != plan.retries:
                            mismatches.append(f"run {n}: {len(retries(result.events))} retries")
    elapsed = time.perf_counter() - started

    streams = sum(len(p.script) for p in plans)
    faults = sum(p.faults for p in plans)
    print(
        f"\nsoak {api}: {RUNS} runs, {streams} model requests, {faults} faults "
        f"({faults / streams:.0%}), {sum(p.retries for p in plans)} step retries, "
        f"outcomes {dict(outcomes)}, {elapsed:.1f} s"
    )
    assert not mismatches, "\n".join(mismatches[:10])
    assert outcomes["internal_error"] == 0
    assert set(outcomes) - {"done"} <= DOCUMENTED_MODEL_CODES
    assert len(llm.requests) == streams, "every request took exactly its planned answer"
    assert 0.1 < faults / streams < 0.3
    # No failed attempt's call ever ran, and no request to the model carried voided text:
    # only what a failed run's last attempt streamed stays, as documented.
    assert all(q.startswith("ok-") for q in looked_up)
    kept_on_failure = {p.partial for p in plans if p.reason == "error"}
    for request in llm.requests:
        assert all("void-" not in args for _id, _name, args in sent_calls(request))
        voided = {t for t in assistant_texts(request.body, api) if "void-" in t}
        assert voided <= kept_on_failure
