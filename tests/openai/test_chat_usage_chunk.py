"""Chat Completions' usage chunk: once a server has shown it sends one, a stream cut before it is
truncated."""

from __future__ import annotations

import asyncio

import pytest

from bridge.conversation import UserTurn
from bridge.errors import ErrorCode
from bridge.models.base import ModelError, TextDelta
from bridge.testing import OpenAIServer, Reply
from tests.openai.openai_support import BOUND_S, provider
from tests.openai.stream_faults import anext_all


async def test_a_chat_stream_cut_before_its_usage_chunk_is_truncated() -> None:
    # The usage chunk is Chat Completions' own; the Responses API has no such thing.
    api = "chat"
    whole = Reply(["Counted."], usage=(5, 1))
    cut_after_finish = Reply(["Counted."], end="truncate", keep_closing=1)
    async with OpenAIServer(cut_after_finish, whole, cut_after_finish) as llm:
        model = provider(api, llm)
        async with asyncio.timeout(BOUND_S):
            # Before this server has shown that it sends usage, a finish_reason is enough.
            first = await anext_all(model.stream([UserTurn("count")], []))
            assert first == [TextDelta("Counted.")]
            await anext_all(model.stream([UserTurn("count")], []))
            with pytest.raises(ModelError) as cut:
                await anext_all(model.stream([UserTurn("count")], []))
    assert cut.value.code is ErrorCode.MODEL_TRUNCATED and cut.value.broken_stream
