"""Baseline: a bare FastAPI/uvicorn WebSocket endpoint, as a user writes it without the bridge.

It speaks just enough of the bridge's message shapes for the same load generator to drive it:
`hello` gets `ready` (the tools are kept, as any server would keep them), `message "tokens N"`
is a plain send loop of N tokens, `message "ttft"` sends one token, and each run ends with
`complete`. Uvicorn runs with its defaults, so permessage-deflate is negotiated when offered.
"""

from __future__ import annotations

import json
from typing import Any

from common import option, serve_uvicorn
from fastapi import FastAPI, WebSocket, WebSocketDisconnect

app = FastAPI()
_sessions: dict[str, list[Any]] = {}
# With `--openai BASE_URL` every message goes to that model and its tokens are forwarded.
_model: Any = None


async def _forward(
    websocket: WebSocket, run_id: str, content: str, tools: list[dict[str, Any]]
) -> None:
    # The client's tools go to the model, as in any agent that lets the model call them.
    functions = [
        {
            "type": "function",
            "function": {
                "name": t["name"],
                "description": t.get("description", ""),
                "parameters": t.get("parameters", {"type": "object", "properties": {}}),
            },
        }
        for t in tools
    ]
    stream = await _model.chat.completions.create(
        model="bench",
        messages=[{"role": "user", "content": content}],
        tools=functions,
        stream=True,
    )
    async for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content:
            await websocket.send_text(
                json.dumps(
                    {"type": "token", "run_id": run_id, "content": chunk.choices[0].delta.content}
                )
            )
    await websocket.send_text(json.dumps({"type": "complete", "run_id": run_id, "reason": "done"}))


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
                if _model is not None:
                    tools = _sessions.get(session_id, [])
                    await _forward(websocket, run_id, str(data.get("content", "")), tools)
                    continue
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
    url = option("--openai", "")
    if url:
        from openai import AsyncOpenAI

        _model = AsyncOpenAI(api_key="bench", base_url=url)
    serve_uvicorn(app, deflate=True)
