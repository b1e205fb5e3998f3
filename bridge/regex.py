"""Regular expressions from clients, run in time linear in the text (RE2).

A `pattern` in a client's schema is run on every argument and result the schema checks; with a
backtracking engine `^(a+)+$` takes seconds on 25 characters, on the event loop. RE2 has no
backreferences and no lookaround, which is what makes it linear: a pattern that needs them is
refused at registration with RE2's own reason. This module is the only one that imports the
engine, so `jsonschema`'s keywords and `fastschema`'s accept-check match exactly alike.
"""

from __future__ import annotations

import functools
import re
from typing import Any

import re2  # type: ignore[import-untyped]

__all__ = ["PatternError", "compile_pattern", "search"]

# The compiled program's memory cap; RE2 refuses a pattern that needs more rather than growing.
_MAX_MEM = 8 << 20
_CACHE_SIZE = 512

_options = re2.Options()
# RE2 otherwise prints every refused pattern to stderr: a client could flood the log with them.
_options.log_errors = False
_options.never_capture = True
_options.max_mem = _MAX_MEM

# json.loads keeps lone surrogates from `\ud83d` escapes; RE2 works on UTF-8, which cannot carry
# them, so they become U+FFFD first, the same replacement the protocol applies to client text.
_SURROGATE = re.compile("[\ud800-\udfff]")


class PatternError(ValueError):
    """RE2 cannot run this pattern; the message says why, in RE2's words."""


@functools.lru_cache(maxsize=_CACHE_SIZE)
def compile_pattern(source: str) -> Any:
    """The compiled pattern, or `PatternError` (backreferences, lookaround, too large, ...)."""
    try:
        return re2.compile(_SURROGATE.sub("\ufffd", source), _options)
    except re2.error as exc:
        reason = exc.args[0] if exc.args else exc
        if isinstance(reason, bytes):
            reason = reason.decode("utf-8", "replace")
        raise PatternError(str(reason)) from None


def search(source: str, text: str) -> bool:
    """True when `source` matches somewhere in `text` (JSON Schema's `pattern` is unanchored)."""
    pattern = compile_pattern(source)
    try:
        return pattern.search(text) is not None
    except UnicodeEncodeError:
        return pattern.search(_SURROGATE.sub("\ufffd", text)) is not None
