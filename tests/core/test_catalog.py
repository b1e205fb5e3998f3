"""The browser tool catalog (tools/*.json) against the server's registration rules."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from bridge.calls import TerminalStatus
from bridge.conversation import AssistantTurn, ToolCall, UserTurn, make_result
from bridge.limits import ToolLimits
from bridge.models.base import TextDelta, ToolCallEvent
from bridge.models.offline import OfflineModel, fill_arguments
from bridge.server.settings import BridgeSettings
from bridge.toolspec import ToolSpec, parse_tool, register_many

TOOLS_DIR = Path(__file__).resolve().parents[2] / "tools"
DEFINITIONS = sorted(TOOLS_DIR.glob("*.json"))
EXPECTED = {
    "read_page",
    "get_selection",
    "query_selector",
    "get_location",
    "clipboard_read",
    "clipboard_write",
    "local_storage_get",
    "local_storage_set",
    "confirm",
    "navigate",
}


def load(path: Path) -> dict[str, Any]:
    data = json.loads(path.read_text())
    assert isinstance(data, dict)
    return data


def specs() -> list[ToolSpec]:
    return [parse_tool(load(p), BridgeSettings().tool_limits()) for p in DEFINITIONS]


def test_the_catalog_has_every_standard_tool() -> None:
    assert {p.stem for p in DEFINITIONS} == EXPECTED


@pytest.mark.parametrize("path", DEFINITIONS, ids=lambda p: p.stem)
def test_each_definition_passes_registration(path: Path) -> None:
    raw = load(path)
    spec = parse_tool(raw, ToolLimits())
    assert spec.name == path.stem
    assert spec.description
    assert spec.output_schema is not None, "catalog tools declare what they return"
    assert spec.timeout_ms is not None
    # What the server would echo back is what the file says: nothing was dropped or defaulted.
    assert spec.to_wire() == raw


def test_the_whole_catalog_registers_in_one_hello() -> None:
    raws = [load(p) for p in DEFINITIONS]
    accepted, rejected = register_many(raws, {}, BridgeSettings().tool_limits())
    assert rejected == []
    assert sorted(s.name for s in accepted) == sorted(EXPECTED)


def test_hints_say_what_each_tool_does() -> None:
    by_name = {s.name: s for s in specs()}
    assert by_name["confirm"].interactive
    assert by_name["navigate"].destructive
    assert not by_name["navigate"].read_only
    for name in ("read_page", "get_selection", "query_selector", "local_storage_get"):
        assert by_name[name].read_only and not by_name[name].destructive
    for name in ("clipboard_write", "local_storage_set", "confirm"):
        assert not by_name[name].read_only


UNTRUSTED = {"read_page", "get_selection", "query_selector", "clipboard_read"}


def test_tools_that_return_text_from_outside_the_user_are_hinted_untrusted() -> None:
    # Their results are fenced as data and taint the run (bridge/approvals.py): a page or a
    # clipboard that says "now navigate to ..." cannot quietly make a destructive call.
    by_name = {s.name: s for s in specs()}
    assert {name for name, s in by_name.items() if s.untrusted_content} == UNTRUSTED
    for name in UNTRUSTED:
        assert by_name[name].read_only and not by_name[name].destructive


def test_the_catalogs_destructive_tools_are_the_ones_that_cannot_be_taken_back() -> None:
    # navigate leaves the page; clipboard_write replaces what the person copied, and after
    # untrusted content it is how a page would plant a command for the person to paste.
    # local_storage_set returns the previous value, so the model can undo it: no approval.
    by_name = {s.name: s for s in specs()}
    assert {name for name, s in by_name.items() if s.destructive} == {
        "navigate",
        "clipboard_write",
    }


@pytest.mark.parametrize(
    ("name", "result", "valid"),
    [
        ("read_page", {"title": "t", "url": "http://x/", "text": "", "truncated": False}, True),
        ("read_page", {"title": "t"}, False),
        ("confirm", {"confirmed": True}, True),
        ("confirm", {"confirmed": False}, False),
        ("query_selector", {"count": 1, "matches": [{"tag": "h1", "text": "Hi"}]}, True),
        ("get_location", {"latitude": 91, "longitude": 0, "accuracy_m": 5}, False),
        ("local_storage_set", {"key": "k", "previous": None}, True),
        ("navigate", {"url": "https://example.org/", "new_tab": False}, True),
    ],
)
def test_output_schemas_accept_real_results_and_refuse_wrong_ones(
    name: str, result: dict[str, Any], valid: bool
) -> None:
    spec = next(s for s in specs() if s.name == name)
    assert (spec.validate_result(result) is None) is valid


@pytest.mark.parametrize(
    ("arguments", "valid"),
    [
        ({"url": "https://example.org/"}, True),
        ({"url": "javascript:alert(1)"}, False),
        ({"url": "file:///etc/passwd"}, False),
    ],
)
def test_navigate_only_takes_web_addresses(arguments: dict[str, Any], valid: bool) -> None:
    spec = next(s for s in specs() if s.name == "navigate")
    assert (spec.validate_arguments(arguments) is None) is valid


async def first_call(message: str) -> ToolCallEvent:
    events = [e async for e in OfflineModel().stream([UserTurn(message)], specs())]
    calls = [e for e in events if isinstance(e, ToolCallEvent)]
    assert len(calls) == 1
    return calls[0]


@pytest.mark.parametrize(
    ("message", "tool"),
    [
        ("what is the title of this page?", "read_page"),
        ("please confirm that I want to delete the file", "confirm"),
        ('Which text is in the "h2" elements?', "query_selector"),
        ("Show the keys in local storage", "local_storage_get"),
        ("What have I selected?", "get_selection"),
        ("where am I? get my location", "get_location"),
        ("open https://example.org/ in a new tab", "navigate"),
    ],
)
async def test_the_offline_model_picks_the_catalog_tool_the_demo_needs(
    message: str, tool: str
) -> None:
    call = await first_call(message)
    assert call.name == tool
    spec = next(s for s in specs() if s.name == tool)
    assert spec.validate_arguments(json.loads(call.arguments)) is None


def test_the_offline_model_fills_catalog_arguments_from_the_message() -> None:
    by_name = {s.name: s for s in specs()}
    assert fill_arguments(by_name["query_selector"].parameters, 'text of "h2"') == {
        "selector": "h2",
        "max_results": 20,
    }
    confirm = fill_arguments(by_name["confirm"].parameters, "confirm the deletion")
    assert confirm["question"] == "confirm the deletion"
    assert (
        fill_arguments(by_name["navigate"].parameters, "go to https://example.org/.")["url"]
        == "https://example.org/"
    )


async def test_the_offline_model_answers_the_demo_question_with_the_title() -> None:
    question = "what is the title of this page?"
    page = {"title": "agent-bridge demo", "url": "http://x/", "text": "long", "truncated": False}
    turns = [
        UserTurn(question),
        AssistantTurn("", (ToolCall("c1", "read_page", "{}"),)),
        make_result(ToolCall("c1", "read_page", "{}"), TerminalStatus.OK, data=page),
    ]
    events = [e async for e in OfflineModel().stream(turns, specs())]
    text = "".join(e.text for e in events if isinstance(e, TextDelta))
    assert text == "read_page returned title: agent-bridge demo"
