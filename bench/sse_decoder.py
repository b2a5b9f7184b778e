"""How many chat.completion.chunk events per second the stream decoder handles on one core.

Run from the project root:  .venv/bin/python bench/sse_decoder.py  [--chunks N] [--repeat R]

The input is an OpenAI-shaped stream (full chunk envelopes, as api.openai.com sends them) fed to
`StreamDecoder` three ways: one network read per event, random cuts (inside UTF-8 characters and between CR
and LF), and the whole body at once. It measures the complete path: bytes -> SSE framing -> JSON -> typed
events. Goal: more than 50,000 chunks per second.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run as a script from anywhere

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "chatsite.settings")

from conversations.llm.sse import StreamDecoder

WORDS = [
    "Hello",
    " world",
    ",",
    " this",
    " is",
    " a",
    " token",
    " stream",
    " — ",
    "día",
    " 世界",
    " 🙂",
    "\n",
]


def build_stream(chunks: int, newline: bytes = b"\n") -> bytes:
    envelope = {
        "id": "chatcmpl-AbCdEf0123456789",
        "object": "chat.completion.chunk",
        "created": 1_760_000_000,
        "model": "gpt-4o-2024-08-06",
        "system_fingerprint": "fp_0123456789",
        "usage": None,
    }
    rng = random.Random(7)
    events = [{**envelope, "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}}]}]
    for _ in range(chunks - 3):
        delta = {"content": rng.choice(WORDS)}
        events.append(
            {**envelope, "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": None}]}
        )
    events.append({**envelope, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
    usage = {"prompt_tokens": 20, "completion_tokens": chunks, "prompt_tokens_details": {"cached_tokens": 0}}
    events.append({**envelope, "choices": [], "usage": usage})
    body = b"".join(b"data: " + json.dumps(e, ensure_ascii=False).encode() + newline * 2 for e in events)
    return body + b"data: [DONE]" + newline * 2


def per_event(body: bytes, newline: bytes) -> list[bytes]:
    sep = newline * 2
    return [piece + sep for piece in body.split(sep) if piece]


def random_cuts(body: bytes, mean: int = 48) -> list[bytes]:
    rng = random.Random(11)
    pieces, i = [], 0
    while i < len(body):
        n = rng.randint(1, mean * 2)
        pieces.append(body[i : i + n])
        i += n
    return pieces


def run(pieces: list[bytes]) -> int:
    decoder = StreamDecoder()
    events = 0
    for piece in pieces:
        events += len(decoder.feed(piece))
    events += len(decoder.close())
    assert decoder.finished
    return events


def measure(pieces: list[bytes], chunks: int, repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        run(pieces)
        best = min(best, time.perf_counter() - start)
    return chunks / best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chunks", type=int, default=20_000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()

    results = {}
    for label, newline in (("LF", b"\n"), ("CRLF", b"\r\n")):
        body = build_stream(args.chunks, newline)
        results[f"one read per event ({label})"] = measure(per_event(body, newline), args.chunks, args.repeat)
        results[f"random cuts, ~48 B ({label})"] = measure(random_cuts(body), args.chunks, args.repeat)
        results[f"whole body at once ({label})"] = measure([body], args.chunks, args.repeat)

    width = max(map(len, results))
    for label, rate in results.items():
        print(f"{label:<{width}}  {rate:>10,.0f} chunks/s")
    headline = results["one read per event (LF)"]
    verdict = "meets" if headline > 50_000 else "MISSES"
    print(f"\nSSE decoder: {headline:,.0f} chunks/s on one core ({verdict} the 50,000/s goal)")


if __name__ == "__main__":
    main()
