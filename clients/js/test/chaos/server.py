"""The real server behind the fault proxy, for test/chaos.test.js.

Prints one JSON line with the proxy's URL, serves until stdin closes, then prints one JSON line
with what the model was given: every tool result of every session's conversation.

    python server.py RUNS CALLS_PER_RUN MEAN_CUT_BYTES SEED
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections import Counter
from typing import Any

from bridge.conversation import ToolResult
from bridge.server.app import create_app
from bridge.server.settings import BridgeSettings
from bridge.testing import FaultProxy, ScriptedModel, call, serve_app


def script(runs: int, calls: int) -> list[list[Any]]:
    steps: list[list[Any]] = []
    for run in range(runs):
        steps.append([f"Run {run} ", *(call("act", {"run": run, "n": n}) for n in range(calls))])
        steps.append(["done ", str(run)])
    return steps


async def main() -> None:
    runs, calls, mean_bytes, seed = (int(arg) for arg in sys.argv[1:5])
    models: dict[str, ScriptedModel] = {}

    def model_for(session_id: str) -> ScriptedModel:
        return models.setdefault(session_id, ScriptedModel(script(runs, calls)))

    app = create_app(BridgeSettings(), model=model_for)
    async with serve_app(app) as server, FaultProxy(server.host, server.port) as proxy:
        proxy.random_cuts(mean_bytes, seed=seed)
        # Besides the random cuts, the two moments that lose results: right after the client
        # answered a request (its answer may or may not have gone through), and just before it
        # would have read the server's tool_result.
        for _ in range(15):
            proxy.cut_on(b'"tool_request"', "down", where="after_reply")
            proxy.cut_on(b'"type":"tool_result"', "down", where="before")
        print(json.dumps({"url": f"ws://{proxy.host}:{proxy.port}"}), flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
        results: dict[str, list[str]] = {}
        requests = 0
        for session_id, model in models.items():
            requests += len(model.requests)
            # The last request holds the whole conversation but the final answer.
            for turn in model.requests[-1] if model.requests else []:
                if isinstance(turn, ToolResult):
                    key = f"{session_id}/{turn.call_id}"
                    results.setdefault(key, []).append(turn.status.value)
        summary = {
            "results": results,
            "model_requests": requests,
            "cuts": proxy.cuts,
            "cut_reasons": dict(Counter(record.reason for record in proxy.cut_log)),
            "accepted": proxy.accepted,
            "sessions": len(models),
        }
        print(json.dumps(summary), flush=True)


asyncio.run(main())
