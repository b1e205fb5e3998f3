"""The OpenAI-compatible test server from `bridge.testing`, as a model endpoint for B3.

Every request is answered with the same short streamed reply (the end-of-script reply), in the
real Chat Completions wire format, so both B3 variants talk to a model over real HTTP through
the real `openai` client.
"""

from __future__ import annotations

import asyncio

from bridge.testing.openai_server import OpenAIServer


async def main() -> None:
    async with OpenAIServer() as server:
        print(f"PORT {server.port}", flush=True)
        # Recorded requests are not needed here, and would grow for the whole run.
        while True:
            server.requests.clear()
            await asyncio.sleep(1.0)


if __name__ == "__main__":
    asyncio.run(main())
