"""The bridge as in server_bridge.py, for B10/B11 on a Redis (BRIDGE_REDIS_URL, BRIDGE_CLUSTER
from the environment), with a model that keeps no state of its own.

The benchmark model counts the calls left in its instance, which stays in the worker it was
made in; a session that moves to another worker meets a fresh one. This model reads the count
from the conversation, which moves with the session: `calls N` makes N sequential echo calls
(one per step), counted by the results since the user's message, then answers.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence

import server_bridge
from common import ECHO_ARGS_JSON, TOOL_NAME

from bridge.conversation import ToolResult, Turn, UserTurn
from bridge.models.base import ModelEvent, TextDelta, ToolCallEvent
from bridge.toolspec import ToolSpec


class ConversationCalls:
    name = "bench-conversation"

    def stream(
        self, conversation: Sequence[Turn], tools: Sequence[ToolSpec]
    ) -> AsyncIterator[ModelEvent]:
        wanted = done = 0
        for turn in reversed(conversation):
            if isinstance(turn, UserTurn):
                command, _, arg = turn.content.partition(" ")
                wanted = int(arg) if command == "calls" and arg.isdigit() else 0
                break
            if isinstance(turn, ToolResult):
                done += 1
        if done < wanted:
            return _one(ToolCallEvent("", TOOL_NAME, ECHO_ARGS_JSON))
        return _one(TextDelta("done"))


async def _one(event: ModelEvent) -> AsyncIterator[ModelEvent]:
    yield event


if __name__ == "__main__":
    # Everything else as server_bridge.py sets it up (limits lifted, GC, uvicorn options);
    # only the model it builds for each session differs.
    server_bridge.BenchModel = ConversationCalls  # type: ignore[misc,assignment]
    server_bridge.main()
