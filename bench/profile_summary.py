"""Summarise py-spy's collapsed stacks (`BENCH_PROFILE_FORMAT=raw bench/load.py --profile`): where the time goes.

    .venv/bin/python bench/profile_summary.py bench/results/flame-sqlite-N200.txt [--thread MainThread] [--top 40]

Prints, per thread, its share of the samples, then the functions with the largest inclusive share (a function
counted once per stack however often it recurses) and the largest self share (the innermost frame).
"""

from __future__ import annotations

import argparse
import collections
import re


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("path")
    parser.add_argument("--thread", default=None, help="only stacks of threads whose name contains this")
    parser.add_argument("--top", type=int, default=40)
    parser.add_argument("--grep", default=None, help="only functions matching this regular expression")
    args = parser.parse_args()
    threads: collections.Counter[str] = collections.Counter()
    inclusive: collections.Counter[str] = collections.Counter()
    own: collections.Counter[str] = collections.Counter()
    total = 0
    with open(args.path, encoding="utf-8") as lines:
        samples = [line.rstrip("\n").rpartition(" ") for line in lines]
    for stack, _, count in samples:
        if not stack:
            continue
        n = int(count)
        frames = stack.split(";")
        thread = frames[0]
        threads[thread] += n
        if args.thread and args.thread not in thread:
            continue
        total += n
        names = [re.sub(r":\d+\)$", ")", f) for f in frames[1:]]  # line numbers apart: one entry per function
        for name in set(names):
            inclusive[name] += n
        if names:
            own[names[-1]] += n
    all_samples = sum(threads.values())
    print(f"{all_samples} samples")
    for thread, n in threads.most_common():
        print(f"  {100 * n / all_samples:5.1f}%  {thread}")
    pattern = re.compile(args.grep) if args.grep else None
    for title, counter in (("inclusive", inclusive), ("self", own)):
        print(f"\n-- {title} (share of {total} samples{' in ' + args.thread if args.thread else ''})")
        shown = 0
        for name, n in counter.most_common():
            if pattern and not pattern.search(name):
                continue
            print(f"  {100 * n / max(total, 1):5.1f}%  {name[:150]}")
            shown += 1
            if shown >= args.top:
                break


if __name__ == "__main__":
    main()
