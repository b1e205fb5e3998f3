"""Baseline: a bare FastAPI/uvicorn WebSocket endpoint, as a user writes it without the bridge.

It speaks just enough of the bridge's message shapes for the same load generator to drive it:
`hello` gets `ready` (the tools are kept, as any server would keep them), `message "tokens N"`
is a plain send loop of N tokens, `message "ttft"` sends one token, and each run ends with
`complete`. Uvicorn runs with its defaults, so permessage-deflate is negotiated when offered.
"""

from __future__ import annotations

import json
from typing import Any

from common import serve_uvicorn
from fastapi import FastAPI, WebSocket, WebSocketDisconnect

app = FastAPI()
_sessions: dict[str, list[Any]] = {}


@app.websocket("/ws/{session_id}")
async def endpoint(websocket: WebSocket, session_id: str) -> None:
    await websocket.accept()
    run = 0
    try:
        while True:
            data = json.loads(await websocket.receive_text())
            kind = data.get("type")
            if kind == "hello":
                _sessions[session_id] = data.get("tools", [])
                await websocket.send_text(json.dumps({"type": "ready", "session_id": session_id}))
            elif kind == "message":
                run += 1
                run_id = f"run_{run}"
                command, _, arg = str(data.get("content", "")).partition(" ")
                count = int(arg) if arg.isdigit() else 1
                for _ in range(count if command == "tokens" else 1):
                    await websocket.send_text(
                        json.dumps({"type": "token", "run_id": run_id, "content": "tok "})
                    )
                await websocket.send_text(
                    json.dumps({"type": "complete", "run_id": run_id, "reason": "done"})
                )
            elif kind == "ping":
                await websocket.send_text(json.dumps({"type": "pong"}))
    except WebSocketDisconnect:
        pass
    finally:
        _sessions.pop(session_id, None)


if __name__ == "__main__":
    serve_uvicorn(app, deflate=True)
