"""The step retry rule on its own: which failures are made again, and how long to wait."""

from __future__ import annotations

import email.utils

import pytest

from bridge.errors import ErrorCode
from bridge.models.base import ModelError
from bridge.models.retry import DEFAULT_STEP_RETRIES, StepRetryPolicy, parse_retry_after

POLICY = StepRetryPolicy(base_delay_s=0.5, max_delay_s=8.0)


def broken(retry_after_s: float | None = None) -> ModelError:
    return ModelError(
        "cut", code=ErrorCode.MODEL_CONNECTION, broken_stream=True, retry_after_s=retry_after_s
    )


def test_the_default_budget_is_two_retries() -> None:
    assert DEFAULT_STEP_RETRIES == 2 and StepRetryPolicy().retries == 2
    assert POLICY.delay_s(broken(), 0, 0.0) is not None
    assert POLICY.delay_s(broken(), 1, 0.0) is not None
    assert POLICY.delay_s(broken(), 2, 0.0) is None


def test_backoff_doubles_with_jitter_between_half_and_all_of_it() -> None:
    assert POLICY.delay_s(broken(), 0, 0.0) == 0.25
    assert POLICY.delay_s(broken(), 0, 0.999) == pytest.approx(0.5, abs=0.001)
    assert POLICY.delay_s(broken(), 1, 0.0) == 0.5
    long = StepRetryPolicy(retries=10, base_delay_s=0.5, max_delay_s=8.0)
    assert long.delay_s(broken(), 9, 0.999) == pytest.approx(8.0, abs=0.01)


def test_retry_after_wins_when_longer_and_too_long_is_not_waited_for() -> None:
    assert POLICY.delay_s(broken(retry_after_s=3.0), 0, 0.5) == 3.0
    assert POLICY.delay_s(broken(retry_after_s=0.01), 0, 0.0) == 0.25
    assert POLICY.delay_s(broken(retry_after_s=61.0), 0, 0.0) is None


def test_failures_before_the_answer_only_count_once_a_step_is_being_retried() -> None:
    overloaded = ModelError("503", code=ErrorCode.MODEL_UNAVAILABLE, transient=True)
    assert POLICY.delay_s(overloaded, 0, 0.0) is None, "the client library already retried it"
    assert POLICY.delay_s(overloaded, 1, 0.0) is not None


@pytest.mark.parametrize(
    "code", [ErrorCode.MODEL_AUTH, ErrorCode.MODEL_INCOMPLETE, ErrorCode.MODEL_ERROR]
)
def test_lasting_failures_are_never_retried(code: ErrorCode) -> None:
    assert POLICY.delay_s(ModelError("no", code=code), 0, 0.0) is None
    assert POLICY.delay_s(ModelError("no", code=code), 1, 0.0) is None


def test_retry_after_headers() -> None:
    now = 1_700_000_000.0
    assert parse_retry_after({"retry-after-ms": "1500", "retry-after": "9"}, now) == 1.5
    assert parse_retry_after({"retry-after": "2"}, now) == 2.0
    later = email.utils.formatdate(now + 30, usegmt=True)
    assert parse_retry_after({"retry-after": later}, now) == pytest.approx(30.0)
    earlier = email.utils.formatdate(now - 30, usegmt=True)
    assert parse_retry_after({"retry-after": earlier}, now) == 0.0
    assert parse_retry_after({"retry-after": "soon"}, now) is None
    assert parse_retry_after({"retry-after-ms": "x", "retry-after": "-1"}, now) is None
    assert parse_retry_after({}, now) is None
