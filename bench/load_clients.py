"""The websocket clients of bench/load.py, in processes of their own so their CPU isn't the server's.

    load_clients.py turns <plan.json>       N clients, each sends one turn per round, all at once
    load_clients.py sustained <plan.json>   turns at planned instants (a Poisson process), each on an idle socket
    load_clients.py idle <plan.json>        N clients connect and stay idle

bench/load.py starts several of these (`--client-procs`), each with its share of the sockets (and, sustained,
an independent Poisson process at its share of the rate: together they are one at the full rate).

Protocol on stdin/stdout, one JSON object a line: after connecting every socket (and receiving `hello`) it
prints {"ready": N}; it waits for the line "go", runs the rounds (or the arrivals), prints
{"results": [...], "client": {...}}; it waits for "close", closes every socket and exits. Timestamps are
time.monotonic() (system-wide on Linux). "client" is this process's own load while it ran: CPU seconds,
wall seconds, and how late its event loop woke for a 20 ms timer (p50 / p95 / max): if that lateness grows,
the client, not the server, is slow to notice frames, and the bench says so.

Each client applies deltas by offset like the browser does and counts, instead of repairing, every
character that arrives twice (a delta starting before the end of its text) or never (a gap, or a final text
that differs from the expected answer).

Sustained: the plan holds arrival offsets (seconds after "go") and, per socket, the conversations it may use.
At each arrival the turn goes out on the socket idle longest; when none is idle it waits for one and the turn
counts as "late" (its times are still measured from the planned instant, so a slow server is not hidden by
a client that waited).
"""

from __future__ import annotations

import asyncio
import json
import resource
import sys
import time
from collections import deque

from websockets.asyncio.client import connect

CONNECT_CONCURRENCY = 100
TURN_TIMEOUT = 120.0


class Client:
    def __init__(self, url: str, origin: str, session: str) -> None:
        self.url, self.origin, self.session = url, origin, session
        self.ws = None
        self.home: str | None = None  # --follow-ups: the socket's one conversation

    async def connect(self) -> None:
        for attempt in range(5):
            try:
                self.ws = await connect(
                    self.url,
                    origin=self.origin,
                    additional_headers={"Cookie": f"sessionid={self.session}"},
                    max_size=None,
                    open_timeout=30,
                    ping_interval=None,  # the server pings; don't add client pings to the measurement
                    compression=None,
                )
                break
            except OSError:
                if attempt == 4:
                    raise
                await asyncio.sleep(0.2 * (attempt + 1))
        hello = json.loads(await self.ws.recv())
        assert hello["type"] == "hello", hello

    async def turn(
        self, conversation: str | None, model: int, tag: str, expected: str, planned: float | None = None
    ) -> dict:
        result = {
            "tag": tag,
            "error": None,
            "duplicated": 0,
            "lost": 0,
            "frames": 0,
            "status": None,
        }
        text = ""
        answer = None
        sent = time.monotonic()
        await self.ws.send(
            json.dumps({"type": "send", "conversation": conversation, "model": model, "text": tag})
        )
        # A turn that had to wait for an idle socket counts from when it was due (see the module docstring).
        result["sent"] = sent if planned is None else min(planned, sent)
        if planned is not None:
            result["late"] = max(0.0, sent - planned)
        try:
            async with asyncio.timeout(TURN_TIMEOUT):
                while True:
                    frame = json.loads(await self.ws.recv())
                    now = time.monotonic()
                    kind = frame["type"]
                    if kind == "ack":
                        answer = frame["assistant_message"]["id"]
                        result["ack"] = now
                    elif kind == "error":
                        result["error"] = f"{frame['code']}: {frame['message']}"
                        return result
                    elif kind == "delta" and frame["message"] == answer:
                        result["frames"] += 1
                        offset, chunk = frame["offset"], frame["text"]
                        if offset < len(text):  # characters we already hold, sent again
                            overlap = min(len(text) - offset, len(chunk))
                            result["duplicated"] += overlap
                            chunk = chunk[overlap:]
                        elif offset > len(text):  # characters we never got
                            result["lost"] += offset - len(text)
                            text += "\0" * (offset - len(text))
                        if chunk and "first" not in result:
                            result["first"] = now
                        text += chunk
                        if len(text) >= len(expected) and "complete" not in result:
                            result["complete"] = now
                    elif kind == "end" and frame["message"]["id"] == answer:
                        result["end"] = now
                        result["status"] = frame["message"]["status"]
                        if text != expected:
                            common = sum(1 for a, b in zip(text, expected, strict=False) if a == b)
                            result["lost"] = max(result["lost"], len(expected) - common)
                            result["duplicated"] = max(result["duplicated"], len(text) - common)
                        if frame["message"]["content"] != expected:
                            result["error"] = result["error"] or "saved answer differs from the upstream's"
                        return result
        except TimeoutError:
            result["error"] = "timeout"
        except Exception as exc:  # a dropped socket counts as an error, not a crash of the bench
            result["error"] = f"{type(exc).__name__}: {exc}"
        return result


class LoopLag:
    """How late this process's event loop wakes for a 20 ms timer, while it runs."""

    INTERVAL = 0.02  # 50 wake-ups a second: about 0.5% of a core here, counted in the client CPU

    def __init__(self) -> None:
        self.samples: list[float] = []
        self._task: asyncio.Task | None = None

    async def _run(self) -> None:
        while True:
            due = time.monotonic() + self.INTERVAL
            await asyncio.sleep(self.INTERVAL)
            self.samples.append(max(0.0, time.monotonic() - due))

    def start(self) -> None:
        self.cpu, self.wall = time.process_time(), time.monotonic()
        self._task = asyncio.get_running_loop().create_task(self._run())

    def stop(self) -> dict:
        self._task.cancel()
        ordered = sorted(self.samples) or [0.0]
        return {
            "cpu": time.process_time() - self.cpu,
            "wall": time.monotonic() - self.wall,
            "lag p50": ordered[len(ordered) // 2],
            "lag p95": ordered[int(len(ordered) * 0.95)],
            "lag max": ordered[-1],
        }


async def rounds(clients: list[Client], plan: dict) -> list[dict]:
    results = []
    for round_ in plan["rounds"]:  # each round: one turn per client, all sent at once
        results += await asyncio.gather(
            *(
                client.turn(conversation, plan["model"], tag, plan["expected"])
                for client, (conversation, tag) in zip(clients, round_, strict=True)
            )
        )
        await asyncio.sleep(plan.get("pause", 0.2))
    return results


async def sustained(clients: list[Client], plan: dict) -> list[dict]:
    """One turn at each planned arrival, on the socket idle longest (each socket: one turn at a time)."""
    idle: deque[tuple[Client, list[str]]] = deque(
        (client, list(conversations))
        for client, conversations in zip(clients, plan["conversations"], strict=True)
    )
    freed = asyncio.Event()
    tasks: list[asyncio.Task] = []

    async def one(
        client: Client, conversations: list[str], conversation: str, tag: str, due: float | None
    ) -> dict:
        try:
            # --new-chats: each turn starts a conversation of its own, as the New chat button does;
            # --follow-ups: each socket keeps to one conversation, every turn after its first a follow-up.
            into = None if plan.get("new_chats") else conversation
            if plan.get("follow_ups"):
                into = client.home = client.home or conversation
            return await client.turn(into, plan["model"], tag, plan["expected"], planned=due)
        except Exception as exc:  # the socket was closed under us: an error of this turn, not of the bench
            return {"tag": tag, "error": f"{type(exc).__name__}: {exc}", "lost": 0, "duplicated": 0,
                    "status": None, "sent": time.monotonic()}  # fmt: skip
        finally:
            if conversations:  # a socket that used up its conversations retires
                idle.append((client, conversations))
                freed.set()

    start = time.monotonic()
    for i, offset in enumerate(plan["arrivals"]):
        due = start + offset
        delay = due - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        waited = not idle
        while not idle:
            if not any(not task.done() for task in tasks):
                raise RuntimeError("every socket used up its conversations: seed more per socket")
            freed.clear()
            await freed.wait()
        client, conversations = idle.popleft()
        tag = f"{plan['tag']} turn {i}"
        planned = due if waited else None  # a turn that waited for a socket counts from when it was due
        tasks.append(asyncio.create_task(one(client, conversations, conversations.pop(), tag, planned)))
    return list(await asyncio.gather(*tasks))


async def run(mode: str, plan: dict) -> None:
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    loop = asyncio.get_running_loop()
    clients = [Client(plan["url"], plan["origin"], session) for session in plan["sessions"]]
    gate = asyncio.Semaphore(CONNECT_CONCURRENCY)

    async def connect_one(client: Client) -> None:
        async with gate:
            await client.connect()

    await asyncio.gather(*(connect_one(c) for c in clients))
    print(json.dumps({"ready": len(clients)}), flush=True)
    line = await loop.run_in_executor(None, sys.stdin.readline)
    if line.strip() == "go" and mode in {"turns", "sustained"}:
        lag = LoopLag()
        lag.start()
        results = await (rounds(clients, plan) if mode == "turns" else sustained(clients, plan))
        print(json.dumps({"results": results, "client": lag.stop()}), flush=True)
        line = await loop.run_in_executor(None, sys.stdin.readline)
    await asyncio.gather(*(c.ws.close() for c in clients if c.ws is not None), return_exceptions=True)


def main() -> None:
    mode, plan_path = sys.argv[1], sys.argv[2]
    with open(plan_path) as handle:
        plan = json.load(handle)
    asyncio.run(run(mode, plan))


if __name__ == "__main__":
    main()
