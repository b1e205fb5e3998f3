"""Every limit is configurable by a `BRIDGE_*` variable, and its default is written once."""

from __future__ import annotations

from dataclasses import fields

import pytest

from bridge.limits import ConnectionLimits, SessionLimits, ToolLimits
from bridge.server.settings import _RENAMED, BridgeSettings


@pytest.mark.parametrize("record", [ToolLimits, SessionLimits, ConnectionLimits])
def test_every_limit_has_a_setting_with_the_same_default(record: type) -> None:
    settings = BridgeSettings()
    built = {
        ToolLimits: settings.tool_limits,
        SessionLimits: settings.session_limits,
        ConnectionLimits: settings.connection_limits,
    }[record]()
    defaults = record()
    for f in fields(record):
        if f.name == "tools":
            continue
        name = _RENAMED.get(f.name, f.name)
        assert name in BridgeSettings.model_fields, f"{record.__name__}.{f.name} has no setting"
        assert getattr(built, f.name) == getattr(defaults, f.name)


def test_an_environment_variable_reaches_the_record(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BRIDGE_SESSION_TTL_S", "5")
    monkeypatch.setenv("BRIDGE_MAX_TOOL_TIMEOUT_MS", "7000")
    monkeypatch.setenv("BRIDGE_RESUME_GRACE_S", "1.5")
    limits = BridgeSettings().session_limits()
    assert (limits.ttl_s, limits.tools.max_timeout_ms, limits.resume_grace_s) == (5, 7000, 1.5)
