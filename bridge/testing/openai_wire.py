"""The script of an OpenAI-compatible test server, and the exact bytes it puts on the wire.

A script is a list of items, one per request: a `Reply` (text pieces and tool calls, streamed
in the real Chat Completions or Responses format), or a `Fail` (an HTTP error status with an
OpenAI-shaped error body). Everything here is pure data; the HTTP side is `openai_server`.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

__all__ = [
    "Fail",
    "Frame",
    "Reply",
    "ScriptItem",
    "ScriptedCall",
    "TokenUsage",
    "chat_completion",
    "chat_stream_frames",
    "responses_object",
    "responses_stream_frames",
    "tool_call",
]

Ending = Literal["complete", "stall", "drop", "truncate", "malformed", "incomplete"]
# An event no JSON parser accepts: the object is cut off in the middle of a string.
UNDECODABLE_EVENT = b'data: {"id": "chatcmpl-x", "choices": [{"delta": {"content": "ha\n\n'


@dataclass(frozen=True, slots=True)
class TokenUsage:
    prompt_tokens: int
    completion_tokens: int

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


@dataclass(frozen=True, slots=True)
class ScriptedCall:
    """A tool call; `arguments` is sent verbatim, so it may be broken JSON on purpose."""

    name: str
    arguments: str
    id: str = ""
    fragment_chars: int = 3

    def fragments(self) -> list[str]:
        size = max(1, self.fragment_chars)
        return [self.arguments[i : i + size] for i in range(0, len(self.arguments), size)] or [""]


def tool_call(
    name: str,
    arguments: Mapping[str, Any] | str | None = None,
    *,
    id: str = "",
    fragment_chars: int = 3,
) -> ScriptedCall:
    """A scripted call; a mapping is encoded as JSON, a string is sent as it is."""
    raw = arguments if isinstance(arguments, str) else json.dumps(dict(arguments or {}))
    return ScriptedCall(name, raw, id, fragment_chars)


@dataclass(frozen=True)
class Reply:
    """One model turn.

    `text` pieces are streamed one per event (a plain string is one piece), then each call's
    arguments in fragments of `fragment_chars`. `interleave_calls` mixes the fragments of
    parallel calls in Chat Completions, which only their `index` tells apart.

    `end` decides how the response ends: "complete" finishes it properly (finish reason,
    usage, `[DONE]` or `response.completed`), "stall" stops sending and waits for the client
    to hang up, "drop" cuts the TCP connection, "truncate" ends the HTTP response cleanly
    without the events that finish the answer, "malformed" sends `bad_event` (undecodable by
    default) and then the finishing events as if nothing had happened, and "incomplete" ends
    the answer the way a token limit does (`finish_reason: "length"`, `response.incomplete`).
    `cut_after` applies that ending after so many content events (text pieces and argument
    fragments) instead of after all of them; `keep_closing` lets a "truncate" through that
    many finishing events first (1 in Chat Completions: the `finish_reason` chunk, without the
    usage chunk and `[DONE]`).
    `hold_after` pauses after so many content events until `release` is set, so a test can
    watch the first tokens arrive while the response is still open.
    """

    text: Sequence[str] | str = ()
    calls: Sequence[ScriptedCall] = ()
    usage: TokenUsage | tuple[int, int] | None = None
    end: Ending = "complete"
    cut_after: int | None = None
    hold_after: int | None = None
    release: asyncio.Event | None = None
    interleave_calls: bool = False
    bad_event: bytes = UNDECODABLE_EVENT
    keep_closing: int = 0

    @property
    def pieces(self) -> list[str]:
        return [self.text] if isinstance(self.text, str) else list(self.text)

    def token_usage(self) -> TokenUsage:
        if isinstance(self.usage, TokenUsage):
            return self.usage
        if self.usage is not None:
            return TokenUsage(*self.usage)
        produced = len(self.pieces) + sum(len(c.fragments()) for c in self.calls)
        return TokenUsage(prompt_tokens=10, completion_tokens=produced)


@dataclass(frozen=True)
class Fail:
    """An HTTP error answer, with the body shape OpenAI uses."""

    status: int
    message: str = "scripted failure"
    type: str = "server_error"
    code: str | None = None
    headers: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def rate_limited(cls, retry_after_s: float = 0.01) -> Fail:
        # OpenAI's client reads `retry-after-ms` before `retry-after`; both are sent, as the
        # real service does, so other clients find the one they know.
        return cls(
            429,
            "Rate limit reached; please try again later.",
            type="requests",
            code="rate_limit_exceeded",
            headers={
                "retry-after-ms": str(int(retry_after_s * 1000)),
                "retry-after": str(max(0, round(retry_after_s))),
            },
        )

    @classmethod
    def unavailable(cls, retry_after_s: float = 0.01) -> Fail:
        return cls(
            503,
            "The server is overloaded; please try again later.",
            headers={
                "retry-after-ms": str(int(retry_after_s * 1000)),
                "retry-after": str(max(0, round(retry_after_s))),
            },
        )

    def body(self) -> dict[str, Any]:
        return {
            "error": {"message": self.message, "type": self.type, "param": None, "code": self.code}
        }


ScriptItem = Reply | Fail


@dataclass(frozen=True, slots=True)
class Frame:
    """One SSE event; `content` frames carry text or argument fragments, `closing` frames
    finish the response (an ending other than "complete" is applied before them)."""

    data: bytes
    kind: Literal["meta", "content", "closing"]


def _call_ids(reply: Reply, prefix: str, serial: int) -> list[str]:
    return [c.id or f"{prefix}_{serial}_{i}" for i, c in enumerate(reply.calls)]


def _sse(data: Any, event: str | None = None) -> bytes:
    head = f"event: {event}\n" if event else ""
    return f"{head}data: {json.dumps(data, separators=(',', ':'))}\n\n".encode()


# Chat Completions --------------------------------------------------------------------------------


def _call_events(reply: Reply, ids: list[str]) -> list[dict[str, Any]]:
    """Tool-call deltas: the head of each call (id, name), then its argument fragments."""
    per_call: list[list[dict[str, Any]]] = []
    for index, (call, call_id) in enumerate(zip(reply.calls, ids, strict=True)):
        head = {
            "index": index,
            "id": call_id,
            "type": "function",
            "function": {"name": call.name, "arguments": ""},
        }
        rest = [{"index": index, "function": {"arguments": f}} for f in call.fragments()]
        per_call.append([head, *rest])
    if not reply.interleave_calls:
        return [event for events in per_call for event in events]
    mixed: list[dict[str, Any]] = []
    for position in range(max((len(e) for e in per_call), default=0)):
        mixed.extend(events[position] for events in per_call if position < len(events))
    return mixed


def chat_stream_frames(reply: Reply, model: str, serial: int, include_usage: bool) -> list[Frame]:
    """SSE frames of a streamed chat completion."""
    created = int(time.time())
    ids = _call_ids(reply, "call", serial)

    def chunk(delta: dict[str, Any], finish: str | None = None) -> bytes:
        body: dict[str, Any] = {
            "id": f"chatcmpl-{serial}",
            "object": "chat.completion.chunk",
            "created": created,
            "model": model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}],
        }
        if include_usage:
            body["usage"] = None
        return _sse(body)

    frames = [Frame(chunk({"role": "assistant", "content": ""}), "meta")]
    frames += [Frame(chunk({"content": piece}), "content") for piece in reply.pieces]
    for delta in _call_events(reply, ids):
        is_head = "id" in delta
        frames.append(Frame(chunk({"tool_calls": [delta]}), "meta" if is_head else "content"))
    if reply.end == "incomplete":
        finish = "length"
    else:
        finish = "tool_calls" if reply.calls else "stop"
    frames.append(Frame(chunk({}, finish), "closing"))
    if include_usage:
        usage = reply.token_usage()
        frames.append(
            Frame(
                _sse(
                    {
                        "id": f"chatcmpl-{serial}",
                        "object": "chat.completion.chunk",
                        "created": created,
                        "model": model,
                        "choices": [],
                        "usage": _chat_usage(usage),
                    }
                ),
                "closing",
            )
        )
    frames.append(Frame(b"data: [DONE]\n\n", "closing"))
    return frames


def _chat_usage(usage: TokenUsage) -> dict[str, int]:
    return {
        "prompt_tokens": usage.prompt_tokens,
        "completion_tokens": usage.completion_tokens,
        "total_tokens": usage.total_tokens,
    }


def chat_completion(reply: Reply, model: str, serial: int) -> dict[str, Any]:
    """The body of a non-streamed chat completion."""
    ids = _call_ids(reply, "call", serial)
    message: dict[str, Any] = {"role": "assistant", "content": "".join(reply.pieces) or None}
    if reply.calls:
        message["tool_calls"] = [
            {"id": i, "type": "function", "function": {"name": c.name, "arguments": c.arguments}}
            for c, i in zip(reply.calls, ids, strict=True)
        ]
    return {
        "id": f"chatcmpl-{serial}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": message,
                "finish_reason": "tool_calls" if reply.calls else "stop",
                "logprobs": None,
            }
        ],
        "usage": _chat_usage(reply.token_usage()),
    }


# Responses ---------------------------------------------------------------------------------------


def _responses_output(reply: Reply, serial: int) -> list[dict[str, Any]]:
    output: list[dict[str, Any]] = []
    if reply.pieces:
        output.append(
            {
                "id": f"msg_{serial}",
                "type": "message",
                "role": "assistant",
                "status": "completed",
                "content": [
                    {"type": "output_text", "text": "".join(reply.pieces), "annotations": []}
                ],
            }
        )
    for index, (call, call_id) in enumerate(
        zip(reply.calls, _call_ids(reply, "call", serial), strict=True)
    ):
        output.append(
            {
                "id": f"fc_{serial}_{index}",
                "type": "function_call",
                "status": "completed",
                "call_id": call_id,
                "name": call.name,
                "arguments": call.arguments,
            }
        )
    return output


def responses_object(
    reply: Reply, model: str, serial: int, *, status: str = "completed"
) -> dict[str, Any]:
    """A Response object; in progress it has no output and no usage yet."""
    done = status == "completed"
    usage = reply.token_usage()
    return {
        "id": f"resp_{serial}",
        "object": "response",
        "created_at": int(time.time()),
        "status": status,
        "model": model,
        "output": _responses_output(reply, serial) if done else [],
        "parallel_tool_calls": True,
        "tool_choice": "auto",
        "tools": [],
        "error": None,
        "incomplete_details": None,
        "usage": {
            "input_tokens": usage.prompt_tokens,
            "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0},
            "output_tokens": usage.completion_tokens,
            "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": usage.total_tokens,
        }
        if done
        else None,
    }


def responses_stream_frames(reply: Reply, model: str, serial: int) -> list[Frame]:
    """Typed SSE events of a streamed response, numbered in the order they are sent."""
    events: list[tuple[bool, dict[str, Any]]] = []

    def event(kind: str, *, content: bool = False, **fields: Any) -> None:
        events.append((content, {"type": kind, **fields}))

    in_progress = responses_object(reply, model, serial, status="in_progress")
    event("response.created", response=in_progress)
    event("response.in_progress", response=in_progress)
    final_items = _responses_output(reply, serial)
    output_index = 0
    if reply.pieces:
        message = final_items[0]
        item_id = message["id"]
        part = {"type": "output_text", "text": "", "annotations": []}
        where = {"item_id": item_id, "output_index": 0, "content_index": 0}
        opened = {**message, "status": "in_progress", "content": []}
        event("response.output_item.added", output_index=0, item=opened)
        event("response.content_part.added", **where, part=part)
        for piece in reply.pieces:
            event("response.output_text.delta", content=True, **where, delta=piece, logprobs=[])
        text = "".join(reply.pieces)
        event("response.output_text.done", **where, text=text, logprobs=[])
        event("response.content_part.done", **where, part={**part, "text": text})
        event("response.output_item.done", output_index=0, item=message)
        output_index = 1
    for offset, (call, item) in enumerate(
        zip(reply.calls, final_items[output_index:], strict=True)
    ):
        index = output_index + offset
        opened = {**item, "status": "in_progress", "arguments": ""}
        event("response.output_item.added", output_index=index, item=opened)
        for fragment in call.fragments():
            event(
                "response.function_call_arguments.delta",
                content=True,
                item_id=item["id"],
                output_index=index,
                delta=fragment,
            )
        event(
            "response.function_call_arguments.done",
            item_id=item["id"],
            output_index=index,
            name=call.name,
            arguments=call.arguments,
        )
        event("response.output_item.done", output_index=index, item=item)
    frames = [
        Frame(_sse({**body, "sequence_number": n}, body["type"]), "content" if content else "meta")
        for n, (content, body) in enumerate(events, start=1)
    ]
    if reply.end == "incomplete":
        final = responses_object(reply, model, serial, status="incomplete")
        final["incomplete_details"] = {"reason": "max_output_tokens"}
        kind = "response.incomplete"
    else:
        final, kind = responses_object(reply, model, serial), "response.completed"
    closing = {"type": kind, "sequence_number": len(events) + 1, "response": final}
    frames.append(Frame(_sse(closing, kind), "closing"))
    return frames
