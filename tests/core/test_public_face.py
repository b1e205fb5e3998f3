"""The package's face: the core imports no web framework or provider, and `bridge` exports
exactly what it promises."""

from __future__ import annotations

import subprocess
import sys

import bridge

HEAVY = ("fastapi", "starlette", "uvicorn", "openai")
PROMISED = {
    "PROTOCOL_VERSION",
    "Bridge",
    "BridgeError",
    "BridgeSettings",
    "CloseCode",
    "ErrorCode",
    "MemoryStore",
    "Model",
    "ModelError",
    "ModelEvent",
    "ServerTools",
    "SessionStore",
    "TerminalStatus",
    "TextDelta",
    "ToolCallEvent",
    "UsageEvent",
    "create_app",
}


def test_the_core_loads_no_web_framework_and_no_provider() -> None:
    # A fresh interpreter: this test process has loaded everything already.
    code = (
        "import sys\n"
        "import bridge.protocol, bridge.calls, bridge.session, bridge.toolspec, bridge.outbound\n"
        f"print(','.join(m for m in {HEAVY!r} if m in sys.modules))\n"
    )
    loaded = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    ).stdout.strip()
    assert loaded == ""


def test_the_top_level_exports_exactly_what_it_promises() -> None:
    assert set(bridge.__all__) == PROMISED
    for name in bridge.__all__:
        assert getattr(bridge, name) is not None, name


def test_an_unknown_name_is_an_attribute_error() -> None:
    try:
        bridge.NoSuchThing  # type: ignore[attr-defined]  # noqa: B018
    except AttributeError as exc:
        assert "NoSuchThing" in str(exc)
    else:
        raise AssertionError("expected AttributeError")
