"""Mount the bridge into an existing FastAPI app, with a server-side tool next to client tools.

Run it: `python examples/embed_fastapi.py`. It starts the app on a free loopback port, checks
the app's own route and /healthz, then has a client ask for an addition the server tool does.
"""

from __future__ import annotations

import asyncio
import json
import urllib.request

from fastapi import FastAPI

from bridge import Bridge, ServerTools
from bridge.testing import serve_app
from bridge_client import BridgeClient

tools = ServerTools()


@tools.tool(read_only=True)
def add_numbers(a: int, b: int) -> int:
    """Add two numbers."""
    return a + b


app = FastAPI(title="my existing app")
bridge = Bridge(server_tools=tools)
app.include_router(bridge.router, prefix="")


@app.get("/hello")
async def hello() -> dict[str, str]:
    return {"hello": "world"}


def get_json(url: str) -> object:
    with urllib.request.urlopen(url, timeout=5) as response:
        return json.load(response)


async def main() -> None:
    async with serve_app(app) as server:
        mine = await asyncio.to_thread(get_json, f"{server.http_url}/hello")
        health = await asyncio.to_thread(get_json, f"{server.http_url}/healthz")
        print(f"own route: {mine}")
        async with BridgeClient(server.ws_url("embedded")) as client:
            print(f"server tools: {client.ready['server_tools']}")
            result = await client.run("add numbers 2 and 40")
        print(f"health: {health}")
        print(f"answer: {result.text}")


if __name__ == "__main__":
    asyncio.run(main())
