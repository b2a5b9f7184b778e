"""CPU that conversations/llm/client.py spends reading streamed answers, per answer (see bench/README.md).

Starts the upstream simulator in a process of its own (bench/load_upstream.py: 200 tokens, 200 ms to the
first, 10 ms apart) and reads answers from it in this process through `open_stream`, exactly as the engine
does, but with nothing else around it: no Django request, no websocket, no database. For each N it measures
the CPU time of this process (time.process_time: user + system, every thread) across N answers and divides
by N. CPU rather than wall time, so another load on the machine changes little; runs are still repeated and
the median reported.

    .venv/bin/python bench/client_read.py                    # N = 1 (10 in a row), 50, 200; 5 rounds each
    .venv/bin/python bench/client_read.py --sizes 50 --rounds 9
    .venv/bin/python bench/client_read.py --profile 200      # cProfile one round of N = 200, top functions
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import os
import pstats
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from load import TOKENS, Upstream  # noqa: E402  (the load bench's simulator: same answers)
from load_upstream import bench_text  # noqa: E402

from conversations.llm import ChatMessage, ChatRequest, ClientConfig, TextDelta, open_stream  # noqa: E402
from conversations.llm.client import aclose_shared_client  # noqa: E402
from conversations.llm.routes import Route  # noqa: E402

SEQUENTIAL = 10  # answers one after another for N = 1
CONFIG = ClientConfig(max_retries=0, user_secret="bench")  # noqa: S106 - hashes the user id only


async def one_answer(route: Route, n: int, expected: str) -> None:
    request = ChatRequest([ChatMessage("user", f"answer {n}")], user_id=1)
    parts = []
    async with open_stream(request, [route], CONFIG) as stream:
        async for event in stream:
            if type(event) is TextDelta:
                parts.append(event.text)
    if "".join(parts) != expected or not stream.result.complete:
        raise SystemExit(f"answer {n} was wrong or incomplete")


async def round_of(route: Route, n: int, expected: str) -> float:
    """CPU seconds per answer for one round of N answers."""
    cpu = time.process_time()
    if n == 1:
        for i in range(SEQUENTIAL):
            await one_answer(route, i, expected)
        answers = SEQUENTIAL
    else:
        await asyncio.gather(*(one_answer(route, i, expected) for i in range(n)))
        answers = n
    return (time.process_time() - cpu) / answers


async def main_async(args: argparse.Namespace, upstream: Upstream) -> None:
    route = Route(provider_name="Bench", kind="openai", base_url=upstream.base_url, model_id="gpt-4o")
    expected = bench_text(TOKENS)
    # Warm up: imports, the pool's first connections.
    await asyncio.gather(*(one_answer(route, i, expected) for i in range(10)))
    if args.profile:
        profiler = cProfile.Profile()
        profiler.enable()
        per_answer = await round_of(route, args.profile, expected)
        profiler.disable()
        print(f"N = {args.profile}: {per_answer * 1000:.1f} ms CPU per answer (under cProfile)")
        pstats.Stats(profiler).sort_stats("tottime").print_stats(35)
        return
    print(f"{'N':>5}  {'median ms/answer':>17}  rounds (ms)")
    for n in args.sizes:
        results = []
        for _ in range(args.rounds):
            results.append(await round_of(route, n, expected) * 1000)
            upstream.timings()  # the simulator records every request; asking clears them
            await aclose_shared_client()  # every round opens its connections again, like the first one
        rounds = " ".join(f"{r:.1f}" for r in results)
        print(f"{n:>5}  {statistics.median(results):>17.1f}  {rounds}", flush=True)
    await aclose_shared_client()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1,50,200", type=lambda s: [int(x) for x in s.split(",")])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--profile", type=int, default=0, metavar="N")
    args = parser.parse_args()
    upstream = Upstream(Path(os.devnull))
    try:
        asyncio.run(main_async(args, upstream))
    finally:
        upstream.close()


if __name__ == "__main__":
    main()
