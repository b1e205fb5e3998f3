"""Sessions of sequential tool calls through a balancer with connections cut at seeded random
points: the workload both balancer tests run, and what it must show afterwards."""

from __future__ import annotations

import itertools
import secrets
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from bridge.redis_store import RedisStore
from bridge.testing import FaultProxy, OpenAIServer, Reply, tool_call
from tests.scaleout.support import WatchingClient, owner_pid, since_last_user, tool_results


@dataclass
class CutRuns:
    sessions: int
    runs: int
    calls: int
    # Handler runs per (run tag, step); per session, the worker that sent each `ready` (it
    # holds the owner lease by then); reconnects over all sessions.
    ran: Counter[tuple[str, int]] = field(default_factory=Counter)
    served: dict[str, list[int]] = field(default_factory=dict)
    reconnects: int = 0

    def decide(self, body: dict[str, Any]) -> Reply:
        """The model: call `tick` `calls` times in a run (one call a step), then say it is
        done. The run's tag is the last word of its message; the call ids follow from the tag
        and the step, so a step made again after a move asks for the same call."""
        text, steps = since_last_user(body.get("messages", []))
        tag = text.split()[-1]
        done = sum(1 for m in steps if m.get("role") == "tool")
        if done < self.calls:
            call = tool_call("tick", {"tag": tag, "n": done}, id=f"call-{tag}-{done}")
            return Reply(text=["step ", f"{done} "], calls=[call])
        return Reply(text=["done ", tag])

    def expected_text(self, tag: str) -> str:
        return "".join(f"step {n} " for n in range(self.calls)) + f"done {tag}"

    async def drive(self, proxy: FaultProxy, store: RedisStore, pids: dict[int, int]) -> None:
        """Every session's runs through the proxy; `pids` numbers the workers by process."""
        for number in range(self.sessions):
            session_id = f"cut-{number}-{secrets.token_hex(4)}"
            order = self.served[session_id] = []

            async def watch(event: dict[str, Any], sid: str = session_id) -> None:
                if event["type"] == "ready":
                    pid = owner_pid(await store.owner(sid))
                    self.served[sid].append(pids[pid] if pid is not None else -1)

            client = WatchingClient(
                proxy.ws_url(session_id), watch, backoff_base_s=0.02, backoff_cap_s=0.2
            )

            @client.tool
            async def tick(tag: str, n: int) -> str:
                """Count a step."""
                self.ran[(tag, n)] += 1
                return f"ticked {tag} {n}"

            # A session's first connection is not cut before its `ready`: a client that never
            # saw one has no resume token, and a hello without one is refused for a session
            # that exists (4403), on one worker as on several.
            proxy.random_cuts(None)
            async with client:
                # Then every connection is cut at a random point in either direction, once
                # every few calls on average (the first few hundred bytes of a connection,
                # handshake and hello, always go through), starting with this one.
                proxy.random_cuts(mean_bytes=2_500, seed=number, min_bytes=300)
                proxy.cut()
                for run in range(self.runs):
                    tag = f"s{number}r{run}"
                    result = await client.run(f"tick {self.calls} times: {tag}")
                    assert result.reason == "done", result
                    assert result.text == self.expected_text(tag), result.events
                self.reconnects += client.reconnects
                await client.bye()
            # A connection cut before its `ready` counts as a reconnect all the same.
            assert 1 < len(order) <= client.reconnects + 1

    def check(self, model: OpenAIServer, cuts: int, *, at_least: int, context: Any = "") -> int:
        """What the runs must show; returns how many reconnects moved the session."""
        # Every handler ran once per call.
        assert len(self.ran) == self.sessions * self.runs * self.calls
        assert set(self.ran.values()) == {1}, [k for k, v in self.ran.items() if v != 1]
        # Every call reached the model with exactly one result: a session's last request holds
        # its whole conversation.
        last: dict[str, dict[str, Any]] = {}
        for request in model.requests:
            text, _ = since_last_user(request.body.get("messages", []))
            last[text.split()[-1].split("r")[0]] = request.body
        assert len(last) == self.sessions
        for body in last.values():
            calls, results = tool_results(body)
            assert len(calls) == len(set(calls)) == self.runs * self.calls
            assert {k: len(v) for k, v in results.items()} == dict.fromkeys(calls, 1)
            assert all("ticked" in v[0] for v in results.values())
        # The cuts happened and the client came back each time; the balancer sent each new
        # connection to the next worker, which took the session over. A connection cut before
        # its `ready` took a turn of the round robin (and the session), so now and then the
        # next `ready` comes from the worker of the one before.
        served = self.served
        pairs = [(a, b) for order in served.values() for a, b in itertools.pairwise(order)]
        moves = sum(1 for a, b in pairs if a != b)
        assert cuts >= at_least and self.reconnects >= at_least, (cuts, self.reconnects)
        assert {n for order in served.values() for n in order} == {0, 1, 2}, (served, context)
        assert moves >= 0.8 * len(pairs), (served, context)
        print(f"\n{cuts} cuts, {self.reconnects} reconnects, {moves} moves of {len(pairs)}")
        return moves
