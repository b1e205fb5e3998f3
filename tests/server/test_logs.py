"""Secrets in query strings never reach a log line."""

from __future__ import annotations

import logging

import pytest

from bridge.server.auth import redact
from bridge.server.logs import install_redaction


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("/ws/agent/s1?token=abc123", "/ws/agent/s1?token=[redacted]"),
        ("/ws/agent/s1?x=1&token=abc&y=2", "/ws/agent/s1?x=1&token=[redacted]&y=2"),
        (
            "GET /?api_key=k-9&access_token=t HTTP/1.1",
            "GET /?api_key=[redacted]&access_token=[redacted] HTTP/1.1",
        ),
        ("/ws/agent/s1?tokens=ok", "/ws/agent/s1?tokens=ok"),
    ],
)
def test_redact(line: str, expected: str) -> None:
    assert redact(line) == expected


def test_uvicorn_request_lines_are_redacted(caplog: pytest.LogCaptureFixture) -> None:
    install_redaction()
    install_redaction()  # idempotent
    logger = logging.getLogger("uvicorn.error")
    assert sum(type(f).__name__ == "RedactSecrets" for f in logger.filters) == 1
    with caplog.at_level(logging.INFO, logger="uvicorn.error"):
        logger.info('%s - "WebSocket %s" [accepted]', "127.0.0.1:5", "/ws/agent/a?token=hunter2")
    assert "hunter2" not in caplog.text and "token=[redacted]" in caplog.text
