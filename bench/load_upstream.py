"""The upstream of bench/load.py: the project's simulator in a process of its own, timing every answer.

It records, per request, when the request arrived, when its first token and its last token were written to
the socket (time.monotonic(), which is system-wide on Linux, so the client process can compare). The bench
subtracts the upstream's own time to first token, and its own slippage under load, from what clients see.

Protocol on stdin/stdout, one JSON object a line: prints {"port": ...} when listening; answers the line
"timings" with {tag: [request_at, first_token_at, last_token_at]} (and forgets them); exits on "quit".
A request's tag is the last user message of its prompt (the bench puts a unique one in every turn).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from conversations.testing.upstream import Reply, UpstreamSimulator


def bench_text(tokens: int) -> str:
    """`tokens` word-ish tokens (the simulator streams one per delta), some of them multi-byte."""
    words = []
    for i in range(tokens):
        if i % 10 == 3:
            words.append(" 世界")
        elif i % 10 == 7:
            words.append(f" wörd{i}")
        elif i % 25 == 24:
            words.append(" 🙂")
        else:
            words.append(f" word{i}")
    return "".join(words)


def _tag(body) -> str | None:
    messages = body.get("messages") if isinstance(body, dict) else None
    for message in reversed(messages or []):
        if isinstance(message, dict) and message.get("role") == "user":
            content = message.get("content")
            if isinstance(content, list):  # text parts
                content = " ".join(p.get("text", "") for p in content if isinstance(p, dict))
            return content if isinstance(content, str) else None
    return None


class TimedSimulator(UpstreamSimulator):
    """Wraps the connection's write during a streamed answer to time its token events."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.timings: dict[str, list[float]] = {}

    async def _stream(self, conn, request, recorded, reply):  # one write per SSE event (no split_writes)
        times: list[float] = []
        write = conn.write

        async def timed_write(data: bytes) -> None:
            await write(data)
            times.append(time.monotonic())

        conn.write = timed_write
        try:
            return await super()._stream(conn, request, recorded, reply)
        finally:
            conn.write = write
            deltas = len(reply.deltas())
            tag = _tag(recorded.json)
            # Writes: response head, role chunk, one per delta, then finish, usage, [DONE], terminator.
            if tag is not None and len(times) >= 2 + deltas:
                self.timings[tag] = [recorded.at, times[2], times[1 + deltas]]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tokens", type=int, default=200)
    parser.add_argument("--ttft", type=float, default=0.2)
    parser.add_argument("--token-delay", type=float, default=0.01)
    args = parser.parse_args()
    reply = Reply(text=bench_text(args.tokens), ttft=args.ttft, token_delay=args.token_delay)
    sim = TimedSimulator(default=reply)
    sim.start()
    print(json.dumps({"port": sim.port, "base_url": sim.base_url}), flush=True)
    for line in sys.stdin:
        command = line.strip()
        if command == "timings":
            with sim._lock:
                timings, sim.timings = sim.timings, {}
                sim._requests.clear()  # the recorded bodies would otherwise pile up
            print(json.dumps(timings), flush=True)
        elif command == "quit":
            break
    sim.stop()


if __name__ == "__main__":
    main()
