"""A Python program exposing a local function to the agent, against a bridge it starts itself.

Run it: `python examples/python_client.py`. It serves the bridge (offline model) on a free
loopback port, connects, registers `count_words`, and asks a question that makes the agent call it.
"""

from __future__ import annotations

import asyncio

from bridge import create_app
from bridge.testing import serve_app
from bridge_client import BridgeClient


async def main() -> None:
    async with serve_app(create_app()) as server:
        client = BridgeClient(server.ws_url("example"))

        @client.tool
        def count_words(text: str) -> dict[str, int]:
            """Count the words in a text."""
            return {"words": len(text.split())}

        async with client:
            result = await client.run('Please count the words in "the quick brown fox"')
        for event in result.events:
            if event["type"] == "tool_request":
                print(f"tool_request: {event['name']} {event['arguments']}")
            if event["type"] == "tool_result":
                print(f"tool_result: {event['status']} {event.get('result')}")
        print(f"answer: {result.text}")
        print(f"reason: {result.reason}")


if __name__ == "__main__":
    asyncio.run(main())
