"""The upstream of bench/load.py: the project's simulator in a process of its own, timing every answer.

It records, per request, when the request arrived, when its first token and its last token were written to
the socket (time.monotonic(), which is system-wide on Linux, so the client process can compare). The bench
subtracts the upstream's own time to first token, and its own slippage under load, from what clients see.

Protocol on stdin/stdout, one JSON object a line: prints {"port": ...} when listening; answers the line
"timings" with {tag: [request_at, first_token_at, last_token_at, arrived_at]} (and forgets them); exits on
"quit". `request_at` is when the request was parsed and recorded, `arrived_at` when its first bytes reached
this process (earlier in a burst, when requests wait for this process to parse them).
A request's tag is the last user message of its prompt (the bench puts a unique one in every turn).
"""

from __future__ import annotations

import argparse
import asyncio
import heapq
import itertools
import json
import math
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from conversations.testing.upstream import (
    Reply,
    UpstreamSimulator,
    _chunk_frame,
    _ClientGone,
    _Completion,
    _SseWriter,
    title_from_prompt,
)

# The token clock's resolution: tokens due within this much of each other are written in one pass.
TICK = 0.001


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
    """The turn a request answers (its last user message), or None for a title request (--new-chats)."""
    if title_from_prompt(body) is not None:
        return None
    messages = body.get("messages") if isinstance(body, dict) else None
    for message in reversed(messages or []):
        if isinstance(message, dict) and message.get("role") == "user":
            content = message.get("content")
            if isinstance(content, list):  # text parts
                content = " ".join(p.get("text", "") for p in content if isinstance(p, dict))
            return content if isinstance(content, str) else None
    return None


class _Events:
    """An answer's token events (what the test simulator writes for each delta, UpstreamSimulator._stream),
    each rendered when the clock writes it. Rendering all 200 when the request arrived took about 1 ms of
    this process per request, and in a burst the next request waited for it: at N=200 the simulator's parse
    wait reached 50-80 ms at p95, counted as the server's added TTFT (bench/README.md, "Session 17")."""

    __slots__ = ("completion", "deltas")

    def __init__(self, completion: _Completion, deltas: list[tuple[str, str]]) -> None:
        self.completion = completion
        self.deltas = deltas

    def __len__(self) -> int:
        return len(self.deltas)

    def __getitem__(self, index: int) -> bytes:
        name, token = self.deltas[index]
        return _chunk_frame(f"data: {self.completion.delta_json({name: token})}\n\n".encode())


class _Play:
    """One answer's token events being written by the clock."""

    __slots__ = ("conn", "done", "events", "every", "index", "times")

    def __init__(self, conn, events: _Events, every: float, done: asyncio.Future) -> None:
        self.conn = conn
        self.events = events
        self.every = every
        self.index = 0
        self.times: list[float] = []
        self.done = done


class _TokenClock:
    """Writes the due token of every streaming answer from one timer, a pass every TICK at most.

    The test simulator sleeps before each token: a timer, a future and a step of the answer's task per token,
    more than half of its CPU at 20,000 tokens a second, on the 2 cores the server under test needs
    (bench/README.md, "Session 14"). Here the same events, one write each, leave on the same schedule (the
    first `ttft` after the role chunk, then each `token_delay` after the one before was written), at most TICK
    late. After the write, not on a fixed grid: like the sleeps they replace (and a real provider's jitter),
    late tokens push the rest back. An exact grid lined an answer's last token up with the server's frame
    clock, and completion lag at N=1 fell from about 100 ms to 10 for no change of the server's."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.heap: list[tuple[float, int, _Play]] = []
        self.order = itertools.count()
        self.timer: asyncio.TimerHandle | None = None
        self.timer_at = math.inf

    async def play(self, conn, events: _Events, first: float, every: float) -> list[float]:
        """Write `events` (the first after `first` seconds, then every `every`); their write times."""
        play = _Play(conn, events, every, self.loop.create_future())
        self._push(self.loop.time() + first, play)
        await play.done
        return play.times

    def _push(self, due: float, play: _Play) -> None:
        heapq.heappush(self.heap, (due, next(self.order), play))
        when = max(due, self.loop.time() + TICK) if due < self.timer_at else None
        if when is not None:
            if self.timer is not None:
                self.timer.cancel()
            self.timer_at = when
            self.timer = self.loop.call_at(when, self._tick)

    def _tick(self) -> None:
        self.timer, self.timer_at = None, math.inf
        now = self.loop.time()
        heap = self.heap
        while heap and heap[0][0] <= now:
            _, _, play = heapq.heappop(heap)
            conn = play.conn
            if play.done.done():
                continue
            if conn.gone.is_set() or conn.writer.is_closing():
                play.done.set_exception(_ClientGone())
                continue
            conn.writer.write(play.events[play.index])
            play.times.append(time.monotonic())
            play.index += 1
            if play.index == len(play.events):
                play.done.set_result(None)
            else:
                heapq.heappush(heap, (now + play.every, next(self.order), play))
        if heap:
            self.timer_at = max(heap[0][0], now + TICK)
            self.timer = self.loop.call_at(self.timer_at, self._tick)


def _plain(reply: Reply) -> bool:
    """A reply the token clock can play: content tokens only, no fault, one write per event, LF endings."""
    return not (
        reply.fault or reply.keepalive or reply.crlf or reply.split_writes or reply.obfuscation
        or reply.reasoning or reply.refusal is not None or reply.raw_sse is not None or reply.raw_body is not None
    )  # fmt: skip


class TimedSimulator(UpstreamSimulator):
    """Times each answer's first and last token events, and writes plain answers' tokens from one clock."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.timings: dict[str, list[float]] = {}
        self._clock: _TokenClock | None = None

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        # When a request's first bytes reached this process (the loop handed them to the connection's reader),
        # as well as when it was parsed and recorded (`recorded.at`): in a burst this process parses requests
        # one after another, and the time a request waits for that is the upstream's, not the server's.
        feed = reader.feed_data

        def feed_data(data: bytes) -> None:
            if data and reader._bench_arrived is None:
                reader._bench_arrived = time.monotonic()
            feed(data)

        reader._bench_arrived = None
        reader.feed_data = feed_data
        await super()._handle(reader, writer)

    @staticmethod
    def _arrived(conn, recorded) -> float:
        """When the request being answered arrived (then forgotten: the next one on the connection comes only
        after this response, httpx does not pipeline)."""
        arrived = getattr(conn.reader, "_bench_arrived", None)
        conn.reader._bench_arrived = None
        return min(arrived, recorded.at) if arrived is not None else recorded.at

    async def _stream(self, conn, request, recorded, reply):
        if not _plain(reply):
            return await self._timed_stream(conn, request, recorded, reply)
        if self._clock is None:
            self._clock = _TokenClock(asyncio.get_running_loop())
        arrived = self._arrived(conn, recorded)
        completion = _Completion(recorded, reply)
        sse = _SseWriter(conn, reply)
        events = _Events(completion, reply.deltas())
        times: list[float] = []
        try:
            await conn.write(self._stream_head(completion, request, reply))
            await sse.data(completion.delta_chunk({"role": "assistant", "content": ""}))
            if events:
                times = await self._clock.play(conn, events, reply.ttft, reply.token_delay)
            else:
                await conn.pause(reply.ttft)
            await sse.data(completion.delta_chunk({}, reply.finish_reason))
            if completion.include_usage:
                await sse.data(completion.chunk([], usage=completion.usage))
            await sse.data("[DONE]")
            await sse.end()
        except _ClientGone:
            self._record_disconnect(recorded.index, len(times))
            raise
        tag = _tag(recorded.json)
        if tag is not None and times:
            self.timings[tag] = [recorded.at, times[0], times[-1], arrived]
        return request.keep_alive

    async def _timed_stream(
        self, conn, request, recorded, reply
    ):  # one write per SSE event (no split_writes)
        times: list[float] = []
        write = conn.write
        arrived = self._arrived(conn, recorded)

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
                self.timings[tag] = [recorded.at, times[2], times[1 + deltas], arrived]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tokens", type=int, default=200)
    parser.add_argument("--ttft", type=float, default=0.2)
    parser.add_argument("--token-delay", type=float, default=0.01)
    args = parser.parse_args()
    reply = Reply(text=bench_text(args.tokens), ttft=args.ttft, token_delay=args.token_delay)
    sim = TimedSimulator(default=reply)
    sim.title_replies = True  # a new conversation's title request gets a few words, as from a title model
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
