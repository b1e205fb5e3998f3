"""Who may attach to a session: decided from a few fields, which a store can read without
loading the whole session (a worker checks a client before asking another worker to let the
session go)."""

from __future__ import annotations

import hmac
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from bridge.protocol import ResumeRequest

__all__ = ["Access", "same_token"]


@dataclass(frozen=True, slots=True)
class Access:
    """What decides who may attach to a session, readable without loading the session."""

    owner: str | None
    resume_token: str
    # Nothing has happened in the session beyond its hello: no message, no run, no call.
    untouched: bool

    @classmethod
    def of_head(cls, head: Mapping[str, Any], turns: int) -> Access:
        """From a stored head (see `bridge.record`) and the number of stored turns."""
        untouched = (
            not turns
            and head["run"] is None
            and not head["queue"]
            and not head["calls"]["pending"]
            and not head["approvals"]["open"]
        )
        return cls(head["owner"], head["resume_token"], untouched)

    def admits(self, principal: str, resume: ResumeRequest | None) -> bool:
        """Only the owner, with the resume token; or the owner without it while the session is
        untouched (a client cut before its `ready` never learnt the token)."""
        if self.owner not in (None, principal):
            return False
        if resume is None:
            return self.untouched
        return same_token(resume.token, self.resume_token)


def same_token(given: str, token: str) -> bool:
    return hmac.compare_digest(given.encode(), token.encode())
