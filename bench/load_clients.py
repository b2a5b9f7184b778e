"""The websocket clients of bench/load.py, in a process of their own so their CPU isn't the server's.

    load_clients.py turns <plan.json>    N clients, each sends one turn per round, all at once
    load_clients.py idle <plan.json>     N clients connect and stay idle

Protocol on stdin/stdout, one JSON object a line: after connecting every socket (and receiving `hello`) it
prints {"ready": N}; it waits for the line "go", runs the rounds, prints {"results": [...]}; it waits for
"close", closes every socket and exits. Timestamps are time.monotonic() (system-wide on Linux).

Each client applies deltas by offset like the browser does and counts, instead of repairing, every
character that arrives twice (a delta starting before the end of its text) or never (a gap, or a final text
that differs from the expected answer).
"""

from __future__ import annotations

import asyncio
import json
import resource
import sys
import time

from websockets.asyncio.client import connect

CONNECT_CONCURRENCY = 100
TURN_TIMEOUT = 120.0


class Client:
    def __init__(self, url: str, origin: str, session: str) -> None:
        self.url, self.origin, self.session = url, origin, session
        self.ws = None

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

    async def turn(self, conversation: str, model: int, tag: str, expected: str) -> dict:
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
        result["sent"] = sent
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
    if line.strip() == "go" and mode == "turns":
        results = []
        for round_ in plan["rounds"]:  # each round: one turn per client, all sent at once
            results += await asyncio.gather(
                *(
                    client.turn(conversation, plan["model"], tag, plan["expected"])
                    for client, (conversation, tag) in zip(clients, round_, strict=True)
                )
            )
            await asyncio.sleep(plan.get("pause", 0.2))
        print(json.dumps({"results": results}), flush=True)
        line = await loop.run_in_executor(None, sys.stdin.readline)
    await asyncio.gather(*(c.ws.close() for c in clients if c.ws is not None), return_exceptions=True)


def main() -> None:
    mode, plan_path = sys.argv[1], sys.argv[2]
    with open(plan_path) as handle:
        plan = json.load(handle)
    asyncio.run(run(mode, plan))


if __name__ == "__main__":
    main()
