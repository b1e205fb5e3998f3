"""Which model `agent-bridge serve` runs: a real one when there is somewhere to send requests,
the offline model otherwise, and a one-line account of the choice for the banner.

The API key is only ever read from the environment (`OPENAI_API_KEY`), never from the command
line, where other users of the machine could read it in the process list.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Literal

from bridge.models.base import Model
from bridge.models.offline import OfflineModel

__all__ = ["DEFAULT_OPENAI_MODEL", "ModelApi", "choose_model", "describe_model"]

ModelApi = Literal["chat", "responses"]
DEFAULT_OPENAI_MODEL = "gpt-4o-mini"
_API_NAMES = {"chat": "Chat Completions", "responses": "Responses API"}


def choose_model(
    *,
    model: str | None = None,
    base_url: str | None = None,
    api: ModelApi = "chat",
    environ: Mapping[str, str] | None = None,
) -> Model:
    """The offline model when there is neither a key nor a base URL (or `model` is "offline");
    otherwise an OpenAI-compatible provider. Empty values count as unset."""
    env = os.environ if environ is None else environ
    api_key = env.get("OPENAI_API_KEY") or None
    base_url = base_url or env.get("OPENAI_BASE_URL") or None
    if model == "offline" or (api_key is None and base_url is None):
        return OfflineModel()
    name = model or DEFAULT_OPENAI_MODEL
    # Imported here so that running offline never loads the openai package.
    if api == "responses":
        from bridge.models.openai_responses import OpenAIResponsesModel

        return OpenAIResponsesModel(name, api_key=api_key, base_url=base_url)
    from bridge.models.openai_chat import OpenAIChatModel

    return OpenAIChatModel(name, api_key=api_key, base_url=base_url)


def describe_model(model: Model) -> str:
    """For the start-up banner; names the endpoint, never the key."""
    if isinstance(model, OfflineModel):
        return (
            f"{model.name} (deterministic offline model, not an LLM; set OPENAI_API_KEY or "
            "--base-url to use a real model)"
        )
    api = getattr(model, "api", None)
    base_url = getattr(model, "base_url", None)
    if api in _API_NAMES and base_url:
        return f"{model.name} ({_API_NAMES[api]} at {base_url})"
    return model.name
