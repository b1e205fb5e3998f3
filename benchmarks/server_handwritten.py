"""Baseline: the tool-call pattern a reader of the FastAPI WebSocket agent tutorials writes.

The server sends `{"type": "tool_request", "id": ...}` and awaits a per-id `asyncio.Future`
with `wait_for`; the reader loop resolves it when the `tool_response` arrives. No schema
validation, no sequence numbers, no result messages: the bridge's real competitor.
`message "calls N"` makes N sequential calls (the arguments arrive as JSON text, as a model
produces them) and ends with `complete`; `stop` cancels the calls.
"""

from __future__ import annotations

import asyncio
import itertools
import json
from typing import Any

from common import ECHO_ARGS_JSON, TOOL_NAME, serve_uvicorn
from fastapi import FastAPI, WebSocket, WebSocketDisconnect

app = FastAPI()
_ids = itertools.count(1)


@app.websocket("/ws/{session_id}")
async def endpoint(websocket: WebSocket, session_id: str) -> None:
    await websocket.accept()
    pending: dict[str, asyncio.Future[Any]] = {}
    tools: list[Any] = []
    run: asyncio.Task[None] | None = None

    async def call_tool(name: str, raw_arguments: str) -> Any:
        call_id = f"call_{next(_ids)}"
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        pending[call_id] = future
        try:
            await websocket.send_text(
                json.dumps(
                    {
                        "type": "tool_request",
                        "id": call_id,
                        "name": name,
                        "arguments": json.loads(raw_arguments),
                    }
                )
            )
            return await asyncio.wait_for(future, timeout=30)
        finally:
            pending.pop(call_id, None)

    async def agent(run_id: str, count: int) -> None:
        reason = "done"
        try:
            for _ in range(count):
                await call_tool(TOOL_NAME, ECHO_ARGS_JSON)
        except asyncio.CancelledError:
            reason = "stopped"
        except TimeoutError:
            reason = "error"
        await websocket.send_text(
            json.dumps({"type": "complete", "run_id": run_id, "reason": reason})
        )

    runs = 0
    try:
        while True:
            data = json.loads(await websocket.receive_text())
            kind = data.get("type")
            if kind == "tool_response":
                future = pending.get(data.get("id"))
                if future is not None and not future.done():
                    future.set_result(data.get("result"))
            elif kind == "message":
                runs += 1
                _, _, arg = str(data.get("content", "")).partition(" ")
                run = asyncio.create_task(agent(f"run_{runs}", int(arg) if arg.isdigit() else 1))
            elif kind == "stop" and run is not None:
                run.cancel()
            elif kind == "hello":
                tools = data.get("tools", [])
                await websocket.send_text(json.dumps({"type": "ready", "tools": len(tools)}))
            elif kind == "ping":
                await websocket.send_text(json.dumps({"type": "pong"}))
    except WebSocketDisconnect:
        pass
    finally:
        if run is not None:
            run.cancel()


if __name__ == "__main__":
    serve_uvicorn(app, deflate=True)
