"""Many sessions at once on one server."""

from __future__ import annotations

import asyncio

from bridge.testing import ScriptedModel, call
from bridge_client import BridgeClient
from tests.conftest import StartBridge

SESSIONS = 200


async def test_200_concurrent_sessions_each_complete_a_run_with_a_tool_call(
    start_bridge: StartBridge,
) -> None:
    models: dict[str, ScriptedModel] = {}

    def model_for(session_id: str) -> ScriptedModel:
        models[session_id] = ScriptedModel(
            [[call("whoami", {"session": session_id})], [f"you are {session_id}"]]
        )
        return models[session_id]

    async def one(index: int) -> tuple[str, str, list[str]]:
        session_id = f"user-{index}"
        client = BridgeClient(server.ws_url(session_id))

        @client.tool
        async def whoami(session: str) -> str:
            return session

        async with client:
            result = await client.run("who am I?")
        statuses = [e["status"] for e in result.events if e["type"] == "tool_result"]
        return result.reason, result.text, statuses

    # 200 users opening sessions in the same second from one address is a load test, not one
    # honest client: the per-address session rate (60 a minute by default) is raised to let
    # them all in (docs/security.md, "Defaults").
    async with start_bridge(model=model_for, max_new_sessions_per_minute=SESSIONS) as server:
        async with asyncio.timeout(60):
            outcomes = await asyncio.gather(*(one(i) for i in range(SESSIONS)))
    assert len(models) == SESSIONS
    for index, (reason, text, statuses) in enumerate(outcomes):
        assert (reason, text, statuses) == ("done", f"you are user-{index}", ["ok"])
