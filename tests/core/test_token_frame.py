"""The token frame is written directly for speed; it must be what the wire model would give."""

from __future__ import annotations

from hypothesis import example, given
from hypothesis import strategies as st

from bridge.outbound import token_frame
from bridge.protocol import TokenMessage
from bridge.wire import dump_server_message


@given(st.integers(1, 2**53), st.text(max_size=20), st.text(max_size=200))
@example(7, "run_x", "a lone \ud83d surrogate and \u2028 a line separator")
def test_the_written_token_frame_is_the_models_frame(seq: int, run_id: str, content: str) -> None:
    assert token_frame(seq, run_id, content) == dump_server_message(
        TokenMessage(seq=seq, run_id=run_id, content=content)
    )
