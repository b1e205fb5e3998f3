"""What both OpenAI providers share: the client, and one mapping from its errors to ours.

The error mapping is the single place deciding which `error` code a user sees for a failed
model call, and it never lets the API key through: the text of a provider's error is scrubbed
of the key (servers do echo it back, partly masked or not) before it reaches a message.
"""

from __future__ import annotations

import logging
import os
import re
import time
from typing import TypedDict

import openai

from bridge.errors import ErrorCode, ModelError
from bridge.models.retry import StepRetryPolicy, parse_retry_after

__all__ = [
    "DEFAULT_TIMEOUT_S",
    "KEYLESS_PLACEHOLDER",
    "OpenAIModelBase",
    "as_text",
    "bad_response",
    "make_client",
    "model_error",
    "scrub",
    "truncated",
]

log = logging.getLogger(__name__)

DEFAULT_TIMEOUT_S = 120.0
# Local servers (Ollama, vLLM, llama.cpp) take no key, but the client refuses to start without
# one; this value says what it is to whoever reads the server's logs.
KEYLESS_PLACEHOLDER = "no-key-needed"

_KEY_LIKE = re.compile(r"\b(?:sk|rk|pk|sess)-[A-Za-z0-9_\-*]{8,}")
_MAX_DETAIL_CHARS = 300


def make_client(
    *,
    api_key: str | None = None,
    base_url: str | None = None,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    max_retries: int = 2,
) -> openai.AsyncOpenAI:
    """A client for OpenAI or any compatible server; retries (429 with its retry-after, 5xx,
    connection errors before the answer starts) are the client library's, counted by
    `max_retries`."""
    return openai.AsyncOpenAI(
        api_key=api_key or os.environ.get("OPENAI_API_KEY") or KEYLESS_PLACEHOLDER,
        base_url=base_url,
        timeout=timeout_s,
        max_retries=max_retries,
    )


def scrub(text: str, secrets: tuple[str, ...] = ()) -> str:
    for secret in secrets:
        if secret and secret != KEYLESS_PLACEHOLDER:
            text = text.replace(secret, "[redacted]")
    return _KEY_LIKE.sub("[redacted]", text)


def _provider_detail(exc: openai.APIError, secrets: tuple[str, ...]) -> str:
    body = exc.body
    message: object = None
    if isinstance(body, dict):
        inner = body.get("error", body)
        message = inner.get("message") if isinstance(inner, dict) else inner
    elif isinstance(body, str):
        message = body
    if not isinstance(message, str) or not message.strip():
        message = exc.message
    detail = scrub(" ".join(message.split()), secrets)
    return detail if len(detail) <= _MAX_DETAIL_CHARS else detail[:_MAX_DETAIL_CHARS] + "…"


_STATUS_CODES: dict[int, tuple[ErrorCode, str]] = {
    400: (ErrorCode.MODEL_BAD_REQUEST, "the model server rejected the request"),
    401: (ErrorCode.MODEL_AUTH, "the model server rejected the API key"),
    403: (ErrorCode.MODEL_PERMISSION, "the API key may not use this model or endpoint"),
    404: (ErrorCode.MODEL_BAD_REQUEST, "the model or endpoint does not exist"),
    413: (ErrorCode.MODEL_BAD_REQUEST, "the request is too large for the model server"),
    422: (ErrorCode.MODEL_BAD_REQUEST, "the model server rejected the request"),
    429: (ErrorCode.MODEL_RATE_LIMITED, "the model server is rate limiting (retries used up)"),
}


# What the client library itself retries before the bridge sees the failure: a new request could
# succeed later, so a step that is already being made again keeps trying within its budget.
_TRANSIENT_STATUSES = frozenset({408, 409, 429})


def model_error(
    exc: openai.OpenAIError, *, secrets: tuple[str, ...] = (), started: bool = False
) -> ModelError:
    """The `ModelError` for anything the OpenAI client raised; `started` says the answer's
    stream was already open, so a drop or a stall broke it half way."""
    if isinstance(exc, openai.APITimeoutError):
        return ModelError(
            "the model server went quiet for longer than the timeout"
            if started
            else "the model server did not answer in time",
            code=ErrorCode.MODEL_TIMEOUT,
            broken_stream=started,
            transient=True,
        )
    if isinstance(exc, openai.APIConnectionError):
        return ModelError(
            "the connection to the model server was cut in the middle of the answer"
            if started
            else "the connection to the model server failed or was cut",
            code=ErrorCode.MODEL_CONNECTION,
            broken_stream=started,
            transient=True,
        )
    if isinstance(exc, openai.APIStatusError):
        status = exc.status_code
        if status in _STATUS_CODES:
            code, summary = _STATUS_CODES[status]
        elif status >= 500:
            code, summary = ErrorCode.MODEL_UNAVAILABLE, "the model server failed (retries used up)"
        else:
            code, summary = ErrorCode.MODEL_ERROR, "the model server refused the request"
        return ModelError(
            f"{summary} (HTTP {status}): {_provider_detail(exc, secrets)}",
            code=code,
            transient=status in _TRANSIENT_STATUSES or status >= 500,
            retry_after_s=parse_retry_after(exc.response.headers, time.time()),
        )
    if isinstance(exc, openai.APIError):
        detail = _provider_detail(exc, secrets)
        return ModelError(f"the model reported an error: {detail}", code=ErrorCode.MODEL_ERROR)
    return ModelError(
        f"the model client failed: {scrub(str(exc), secrets)}", code=ErrorCode.MODEL_ERROR
    )


def bad_response(exc: Exception, secrets: tuple[str, ...] = ()) -> ModelError:
    """An event that could not be decoded or did not have the shape of its API.

    The client library raises whatever its parser raised (a `JSONDecodeError` for an
    undecodable event, attribute or type errors for odd shapes); none of that is a bug of the
    bridge, and the next attempt is likely to be well formed.
    """
    log.warning("the model server sent an event that could not be read: %r", exc)
    detail = scrub(" ".join(str(exc).split()), secrets)[:_MAX_DETAIL_CHARS]
    return ModelError(
        f"the model server sent an event that could not be read ({type(exc).__name__}: {detail})",
        code=ErrorCode.MODEL_BAD_RESPONSE,
        broken_stream=True,
    )


def as_text(value: object, what: str) -> str:
    """A text field of an event. The client library does not check types, and a number or an
    object where text belongs must fail here, as a bad response, not later inside the bridge."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    raise TypeError(f"{what} is {type(value).__name__}, not text")


def truncated(missing: str) -> ModelError:
    """A stream that ended cleanly but without the event saying the answer was whole."""
    return ModelError(
        f"the model server ended the stream before {missing}: the answer was cut short",
        code=ErrorCode.MODEL_TRUNCATED,
        broken_stream=True,
    )


class ProviderOptions(TypedDict, total=False):
    """What both providers take besides the model name; a provider adds its own on top."""

    client: openai.AsyncOpenAI | None
    api_key: str | None
    base_url: str | None
    timeout_s: float
    max_retries: int
    instructions: str | None
    step_retry: StepRetryPolicy | None


class OpenAIModelBase:
    """The configuration both providers take; subclasses add `api` and `stream`."""

    api = ""

    def __init__(
        self,
        model: str,
        *,
        client: openai.AsyncOpenAI | None = None,
        api_key: str | None = None,
        base_url: str | None = None,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        max_retries: int = 2,
        instructions: str | None = None,
        step_retry: StepRetryPolicy | None = None,
    ) -> None:
        self.name = model
        # None: the loop's own policy (BRIDGE_MODEL_STEP_RETRIES) applies.
        self.step_retry = step_retry
        self._client = client or make_client(
            api_key=api_key, base_url=base_url, timeout_s=timeout_s, max_retries=max_retries
        )
        self._instructions = instructions

    @property
    def base_url(self) -> str:
        return str(self._client.base_url)

    def __repr__(self) -> str:
        # Never the client itself: its repr could carry the key.
        return f"{type(self).__name__}(model={self.name!r}, base_url={self.base_url!r})"
