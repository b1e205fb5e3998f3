"""The Chat Completions provider: `chat.completions.create(stream=True)` as the model contract.

Tool-call arguments arrive as fragments keyed by the call's `index`, possibly interleaved
between calls; they are joined here, and each call is handed on whole once the stream ends.
Whether the joined text is valid JSON is the loop's business, not this module's.

A stream is a complete answer only when the model said so: a `finish_reason` on the choice, and
the usage chunk when usage was asked for. Anything else (the stream ends early, an event cannot
be read, the answer hit its length limit) raises a `ModelError`, and the calls it was building
are never handed on.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Unpack

import openai
from openai.types.chat import (
    ChatCompletionAssistantMessageParam,
    ChatCompletionChunk,
    ChatCompletionFunctionToolParam,
    ChatCompletionMessageFunctionToolCallParam,
    ChatCompletionMessageParam,
)
from openai.types.chat.chat_completion_chunk import ChoiceDeltaToolCall

from bridge.conversation import AssistantTurn, ToolResult, Turn, UserTurn
from bridge.errors import ErrorCode
from bridge.models.base import ModelError, ModelEvent, TextDelta, ToolCallEvent, UsageEvent
from bridge.models.openai_common import (
    OpenAIModelBase,
    ProviderOptions,
    as_text,
    bad_response,
    model_error,
    truncated,
)
from bridge.toolspec import ToolSpec

__all__ = ["OpenAIChatModel", "chat_messages", "chat_tools"]


def chat_tools(tools: Sequence[ToolSpec]) -> list[ChatCompletionFunctionToolParam]:
    """Tools in the Chat Completions format, with the parameters exactly as registered."""
    return [
        {
            "type": "function",
            "function": {
                "name": tool.name,
                "description": tool.description,
                "parameters": dict(tool.parameters),
            },
        }
        for tool in tools
    ]


def chat_messages(
    conversation: Sequence[Turn], instructions: str | None = None
) -> list[ChatCompletionMessageParam]:
    """The conversation as messages: an assistant message carries its tool calls, and each
    result is a `tool` message naming the call it answers."""
    messages: list[ChatCompletionMessageParam] = []
    if instructions:
        messages.append({"role": "system", "content": instructions})
    for turn in conversation:
        if isinstance(turn, UserTurn):
            messages.append({"role": "user", "content": turn.content})
        elif isinstance(turn, AssistantTurn):
            assistant: ChatCompletionAssistantMessageParam = {"role": "assistant"}
            # A message with tool calls may have no text, and OpenAI wants null then, not "".
            assistant["content"] = turn.content or (None if turn.tool_calls else "")
            if turn.tool_calls:
                calls: list[ChatCompletionMessageFunctionToolCallParam] = [
                    {
                        "id": call.id,
                        "type": "function",
                        "function": {"name": call.name, "arguments": call.arguments},
                    }
                    for call in turn.tool_calls
                ]
                assistant["tool_calls"] = calls
            messages.append(assistant)
        elif isinstance(turn, ToolResult):
            messages.append(
                {"role": "tool", "tool_call_id": turn.call_id, "content": turn.model_text}
            )
    return messages


@dataclass(slots=True)
class _PartialCall:
    id: str = ""
    name: str = ""
    arguments: str = ""


class OpenAIChatModel(OpenAIModelBase):
    """A model behind `/v1/chat/completions` (OpenAI, Azure, vLLM, Ollama, llama.cpp, ...)."""

    api = "chat"

    def __init__(
        self, model: str, *, include_usage: bool = True, **options: Unpack[ProviderOptions]
    ) -> None:
        super().__init__(model, **options)
        self._include_usage = include_usage
        # Some compatible servers ignore `include_usage`; a missing usage chunk only means a
        # cut stream once this server has shown that it sends one. (The `[DONE]` line, the
        # other sign of a whole stream, is swallowed by the client library.)
        self._server_sends_usage = False

    def stream(
        self, conversation: Sequence[Turn], tools: Sequence[ToolSpec]
    ) -> AsyncIterator[ModelEvent]:
        return self._stream(chat_messages(conversation, self._instructions), chat_tools(tools))

    async def _stream(
        self,
        messages: list[ChatCompletionMessageParam],
        tools: list[ChatCompletionFunctionToolParam],
    ) -> AsyncIterator[ModelEvent]:
        secrets = (self._client.api_key,)
        try:
            response = await self._client.chat.completions.create(
                model=self.name,
                messages=messages,
                tools=tools if tools else openai.omit,
                stream=True,
                stream_options={"include_usage": True} if self._include_usage else openai.omit,
            )
        except openai.OpenAIError as exc:
            raise model_error(exc, secrets=secrets) from exc
        calls: dict[int, _PartialCall] = {}
        finish: str | None = None
        usage_seen = False
        try:
            async for chunk in response:
                for event in _events(chunk, calls):
                    usage_seen = usage_seen or isinstance(event, UsageEvent)
                    yield event
                finish = _finish_reason(chunk) or finish
        except ModelError:
            raise
        except openai.OpenAIError as exc:
            raise model_error(exc, secrets=secrets, started=True) from exc
        except Exception as exc:  # the parser's own errors: see `bad_response`
            raise bad_response(exc, secrets) from exc
        finally:
            # Runs on normal end, on error and when the loop closes this generator because
            # the run was stopped: the HTTP response must not outlive the step.
            await response.close()
        if finish is None:
            raise truncated("its finish_reason")
        if finish in _INCOMPLETE:
            raise ModelError(
                f"the model stopped before the end of its answer: {_INCOMPLETE[finish]}",
                code=ErrorCode.MODEL_INCOMPLETE,
            )
        if usage_seen:
            self._server_sends_usage = True
        elif self._include_usage and self._server_sends_usage:
            raise truncated("its usage chunk")
        try:
            finished = [
                ToolCallEvent(
                    as_text(call.id, "a call's id"),
                    as_text(call.name, "a call's name"),
                    as_text(call.arguments, "a call's arguments"),
                )
                for call in (calls[index] for index in sorted(calls))
            ]
        except TypeError as exc:
            raise bad_response(exc, secrets) from exc
        for call_event in finished:
            yield call_event


_INCOMPLETE = {
    "length": "it reached its output token limit",
    "content_filter": "its content filter stopped it",
}


def _finish_reason(chunk: ChatCompletionChunk) -> str | None:
    for choice in chunk.choices:
        if choice.index == 0:
            reason = getattr(choice, "finish_reason", None)
            return reason if isinstance(reason, str) and reason else None
    return None


def _slot(fragment: ChoiceDeltaToolCall, calls: dict[int, _PartialCall]) -> int:
    """The call a fragment belongs to: its `index`, as the API defines it. Some compatible
    servers leave `index` out; then a fragment with a new id starts a call and one without
    continues the last call."""
    index = getattr(fragment, "index", None)
    if isinstance(index, int):
        return index
    if fragment.id:
        known = [slot for slot, call in calls.items() if call.id == fragment.id]
        return known[0] if known else max(calls, default=-1) + 1
    return max(calls, default=0)


def _events(chunk: ChatCompletionChunk, calls: dict[int, _PartialCall]) -> list[ModelEvent]:
    events: list[ModelEvent] = []
    if chunk.usage is not None:
        events.append(
            UsageEvent(
                prompt_tokens=chunk.usage.prompt_tokens,
                completion_tokens=chunk.usage.completion_tokens,
                total_tokens=chunk.usage.total_tokens,
            )
        )
    for choice in chunk.choices:
        if choice.index != 0:
            continue
        delta = choice.delta
        for text in (as_text(delta.content, "content"), as_text(delta.refusal, "refusal")):
            if text:
                events.append(TextDelta(text))
        for fragment in delta.tool_calls or ():
            call = calls.setdefault(_slot(fragment, calls), _PartialCall())
            if fragment.id:
                call.id = fragment.id
            if fragment.function is not None:
                if fragment.function.name:
                    # Some servers repeat the name on every fragment; it is never split.
                    call.name = fragment.function.name
                if fragment.function.arguments:
                    call.arguments += fragment.function.arguments
    return events
