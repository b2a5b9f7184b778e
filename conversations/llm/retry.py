"""When to try the same route again, and how long to wait first. Pure functions: easy to test.

Mirrors the OpenAI SDK: exponential backoff with jitter, min(initial * 2^n, cap) * (1 - 0.25 * random), and
the server's `retry-after-ms` / `retry-after` honoured when 0 < delay <= the configured maximum. One
difference: if the server asks for a longer wait than that maximum, we stop trying this route (the client
then falls back to the next one or reports the error) instead of ignoring the request and hammering it.
"""

from __future__ import annotations

import random
from collections.abc import Callable

from conversations.llm.errors import LLMError, QuotaExceeded, TotalTimeout


def backoff_delay(
    retries_done: int, *, initial: float = 0.5, cap: float = 8.0, rand: Callable[[], float] = random.random
) -> float:
    return min(initial * 2**retries_done, cap) * (1 - 0.25 * rand())


def plan_retry(
    error: LLMError,
    retries_done: int,
    *,
    max_retries: int,
    max_delay: float,
    initial: float = 0.5,
    cap: float = 8.0,
    rand: Callable[[], float] = random.random,
) -> float | None:
    """Seconds to wait before retrying the same route, or None to stop trying it.

    Only for failures before the first token; the client never calls this once a token was delivered.
    """
    if retries_done >= max_retries or isinstance(error, QuotaExceeded | TotalTimeout):
        return None  # waiting does not refill an account, whatever x-should-retry says
    # The server knows best when it says (OpenAI sends x-should-retry).
    wanted = error.retryable if error.should_retry_header is None else error.should_retry_header
    if not wanted:
        return None
    if error.retry_after is not None and error.retry_after > 0:
        if error.retry_after > max_delay:
            return None
        return error.retry_after
    return backoff_delay(retries_done, initial=initial, cap=cap, rand=rand)
