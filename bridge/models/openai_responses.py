"""The Responses API provider: `responses.create(stream=True)` as the model contract.

Calls arrive as `function_call` output items: opened by `output_item.added` (which carries the
`call_id` and name), filled by `function_call_arguments.delta` events keyed by the item's id,
and settled by `output_item.done`. The whole conversation is sent every time (no
`previous_response_id`), so the bridge's conversation stays the one source of truth.

Only `response.completed` makes a complete answer. `response.incomplete` (a token limit, a
content filter) and `response.failed` each end the step with their own code, and a stream that
ends without any of the three was cut short; in none of these are the calls handed on.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass

import openai
from openai.types.responses import (
    FunctionToolParam,
    ResponseInputParam,
    ResponseStreamEvent,
)

from bridge.conversation import AssistantTurn, ToolResult, Turn, UserTurn
from bridge.errors import ErrorCode
from bridge.models.base import ModelError, ModelEvent, TextDelta, ToolCallEvent, UsageEvent
from bridge.models.openai_common import (
    OpenAIModelBase,
    as_text,
    bad_response,
    model_error,
    scrub,
    truncated,
)
from bridge.toolspec import ToolSpec

__all__ = ["OpenAIResponsesModel", "responses_input", "responses_tools"]


def responses_tools(tools: Sequence[ToolSpec]) -> list[FunctionToolParam]:
    """Tools in the Responses format, with the parameters exactly as registered.

    `strict` is off: strict mode demands schemas the bridge does not impose (every property
    required, no additional properties), and the bridge validates arguments itself.
    """
    return [
        {
            "type": "function",
            "name": tool.name,
            "description": tool.description,
            "parameters": dict(tool.parameters),
            "strict": False,
        }
        for tool in tools
    ]


def responses_input(conversation: Sequence[Turn]) -> ResponseInputParam:
    """The conversation as input items: messages, `function_call` items for the calls the
    model made, and a `function_call_output` for each result, paired by `call_id`."""
    items: ResponseInputParam = []
    for turn in conversation:
        if isinstance(turn, UserTurn):
            items.append({"type": "message", "role": "user", "content": turn.content})
        elif isinstance(turn, AssistantTurn):
            if turn.content:
                items.append({"type": "message", "role": "assistant", "content": turn.content})
            for call in turn.tool_calls:
                items.append(
                    {
                        "type": "function_call",
                        "call_id": call.id,
                        "name": call.name,
                        "arguments": call.arguments,
                    }
                )
        elif isinstance(turn, ToolResult):
            items.append(
                {"type": "function_call_output", "call_id": turn.call_id, "output": turn.model_text}
            )
    return items


@dataclass(slots=True)
class _PartialCall:
    output_index: int
    call_id: str
    name: str
    arguments: str = ""


class OpenAIResponsesModel(OpenAIModelBase):
    """A model behind `/v1/responses` (OpenAI, Azure OpenAI, and servers that implement it)."""

    api = "responses"

    def stream(
        self, conversation: Sequence[Turn], tools: Sequence[ToolSpec]
    ) -> AsyncIterator[ModelEvent]:
        return self._stream(responses_input(conversation), responses_tools(tools))

    async def _stream(
        self, items: ResponseInputParam, tools: list[FunctionToolParam]
    ) -> AsyncIterator[ModelEvent]:
        secrets = (self._client.api_key,)
        try:
            response = await self._client.responses.create(
                model=self.name,
                input=items,
                instructions=self._instructions if self._instructions else openai.omit,
                tools=tools if tools else openai.omit,
                stream=True,
            )
        except openai.OpenAIError as exc:
            raise model_error(exc, secrets=secrets) from exc
        calls: dict[str, _PartialCall] = {}
        completed = False
        try:
            async for event in response:
                for model_event in _events(event, calls, secrets):
                    yield model_event
                completed = completed or event.type == "response.completed"
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
        if not completed:
            raise truncated("response.completed")
        try:
            finished = [
                ToolCallEvent(
                    as_text(call.call_id, "a call's id"),
                    as_text(call.name, "a call's name"),
                    as_text(call.arguments, "a call's arguments"),
                )
                for call in sorted(calls.values(), key=lambda c: c.output_index)
            ]
        except TypeError as exc:
            raise bad_response(exc, secrets) from exc
        for call_event in finished:
            yield call_event


_INCOMPLETE = {
    "max_output_tokens": "it reached its output token limit",
    "content_filter": "its content filter stopped it",
}


def _events(
    event: ResponseStreamEvent, calls: dict[str, _PartialCall], secrets: tuple[str, ...]
) -> list[ModelEvent]:
    if event.type in ("response.output_text.delta", "response.refusal.delta"):
        text = as_text(event.delta, "a text delta")
        return [TextDelta(text)] if text else []
    if event.type in ("response.output_item.added", "response.output_item.done"):
        item = event.item
        if item.type == "function_call":
            key = item.id or item.call_id
            call = calls.get(key)
            if call is None:
                call = calls[key] = _PartialCall(event.output_index, item.call_id, item.name)
            if event.type == "response.output_item.done" or item.arguments:
                # The finished item holds the whole argument text; it wins over the deltas.
                call.arguments = item.arguments
        return []
    if event.type == "response.function_call_arguments.delta":
        partial = calls.get(event.item_id)
        if partial is not None:
            partial.arguments += event.delta
        return []
    if event.type == "response.function_call_arguments.done":
        partial = calls.get(event.item_id)
        if partial is not None:
            partial.arguments = event.arguments
        return []
    if event.type == "response.completed":
        usage = event.response.usage
        if usage is None:
            return []
        return [UsageEvent(usage.input_tokens, usage.output_tokens, usage.total_tokens)]
    if event.type == "response.incomplete":
        details = event.response.incomplete_details
        reason = details.reason if details is not None and details.reason else "no reason given"
        raise ModelError(
            f"the model stopped before the end of its answer: {_INCOMPLETE.get(reason, reason)}",
            code=ErrorCode.MODEL_INCOMPLETE,
        )
    if event.type == "response.failed":
        error = event.response.error
        detail = scrub(error.message, secrets) if error is not None else "no reason given"
        raise ModelError(f"the model failed the response: {detail}", code=ErrorCode.MODEL_ERROR)
    if event.type == "error":
        raise ModelError(
            f"the model reported an error: {scrub(event.message, secrets)}",
            code=ErrorCode.MODEL_ERROR,
        )
    return []
