"""Model selection: `--model`, `--base-url`, `--api`, OPENAI_API_KEY, OPENAI_BASE_URL and
BRIDGE_MODEL, from the selection function up to a real `agent-bridge serve` process."""

from __future__ import annotations

import asyncio

import pytest

from bridge.models.choose import DEFAULT_OPENAI_MODEL, choose_model, describe_model
from bridge.models.offline import OfflineModel
from bridge.models.openai_chat import OpenAIChatModel
from bridge.models.openai_responses import OpenAIResponsesModel
from bridge.testing import OpenAIServer, Reply
from bridge_client import BridgeClient
from tests.openai.openai_support import API_KEY, BOUND_S, sent_user_texts
from tests.server.test_cli_and_examples import serve

NO_OPENAI_ENV = {"OPENAI_API_KEY": "", "OPENAI_BASE_URL": "", "BRIDGE_MODEL": ""}


def test_no_key_and_no_base_url_is_the_offline_model() -> None:
    assert isinstance(choose_model(environ={}), OfflineModel)
    assert isinstance(choose_model(model="gpt-4o", environ=NO_OPENAI_ENV), OfflineModel)
    assert "not an LLM" in describe_model(choose_model(environ={}))


def test_a_key_selects_openai_chat_by_default() -> None:
    model = choose_model(environ={"OPENAI_API_KEY": API_KEY})
    assert isinstance(model, OpenAIChatModel)
    assert model.name == DEFAULT_OPENAI_MODEL
    assert model.base_url == "https://api.openai.com/v1/"
    banner = describe_model(model)
    assert "Chat Completions at https://api.openai.com/v1/" in banner
    assert API_KEY not in banner and API_KEY not in repr(model)


def test_a_base_url_alone_is_enough_for_a_keyless_local_server() -> None:
    model = choose_model(
        model="llama3.2", api="responses", environ={"OPENAI_BASE_URL": "http://127.0.0.1:9/v1"}
    )
    assert isinstance(model, OpenAIResponsesModel)
    assert model.name == "llama3.2" and model.base_url == "http://127.0.0.1:9/v1/"
    assert describe_model(model) == "llama3.2 (Responses API at http://127.0.0.1:9/v1/)"


def test_the_base_url_argument_wins_over_the_environment() -> None:
    model = choose_model(
        base_url="http://127.0.0.1:9/v1", environ={"OPENAI_BASE_URL": "http://127.0.0.2:9/v1"}
    )
    assert isinstance(model, OpenAIChatModel) and model.base_url == "http://127.0.0.1:9/v1/"


def test_model_offline_forces_the_offline_model() -> None:
    assert isinstance(
        choose_model(model="offline", environ={"OPENAI_API_KEY": API_KEY}), OfflineModel
    )


@pytest.mark.parametrize("api", ["chat", "responses"])
async def test_serve_with_flags_talks_to_the_given_endpoint(api: str) -> None:
    async with OpenAIServer(Reply(["Served ", "by ", "the ", "endpoint."])) as llm:
        env = {**NO_OPENAI_ENV, "OPENAI_API_KEY": API_KEY}
        args = ("--no-demo", "--model", "local-model", "--base-url", llm.base_url, "--api", api)
        async with serve(*args, env=env) as (port, lines):
            banner = "".join(lines)
            kind = "Chat Completions" if api == "chat" else "Responses API"
            assert f"model: local-model ({kind} at {llm.base_url}/)" in banner
            client = BridgeClient(f"ws://127.0.0.1:{port}/ws/agent/cli-{api}")
            async with asyncio.timeout(BOUND_S), client:
                result = await client.run("hello")
    assert API_KEY not in banner
    assert result.reason == "done" and result.text == "Served by the endpoint."
    [request] = llm.requests
    assert request.api == api and request.body["model"] == "local-model"
    assert request.headers["authorization"] == f"Bearer {API_KEY}"
    assert sent_user_texts(request) == ["hello"]


async def test_serve_reads_the_endpoint_and_model_from_the_environment() -> None:
    async with OpenAIServer(Reply("From the environment.")) as llm:
        env = {
            **NO_OPENAI_ENV,
            "OPENAI_BASE_URL": llm.base_url,
            "BRIDGE_MODEL": "env-model",
            "BRIDGE_MODEL_API": "responses",
        }
        async with serve("--no-demo", env=env) as (port, lines):
            assert f"model: env-model (Responses API at {llm.base_url}/)" in "".join(lines)
            client = BridgeClient(f"ws://127.0.0.1:{port}/ws/agent/cli-env")
            async with asyncio.timeout(BOUND_S), client:
                result = await client.run("hi")
    assert result.text == "From the environment."
    [request] = llm.requests
    assert request.api == "responses" and request.body["model"] == "env-model"
    # No key was configured: a placeholder goes out, so a keyless local server is happy.
    assert request.headers["authorization"] == "Bearer no-key-needed"
