"""Who may attach to a session: decided from a few fields of its record. The Redis store
decides the same inside its claim script (`bridge.redis_scripts.ARRIVE`), so a worker checks a
client before the session moves; a test holds the two to the same answers."""

from __future__ import annotations

import hmac
from dataclasses import dataclass

from bridge.protocol import ResumeRequest

__all__ = ["Access", "same_token"]


@dataclass(frozen=True, slots=True)
class Access:
    """What decides who may attach to a session, readable without loading the session."""

    owner: str | None
    resume_token: str
    # Nothing has happened in the session beyond its hello: no message, no run, no call.
    untouched: bool

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
