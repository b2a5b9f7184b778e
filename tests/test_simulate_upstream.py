"""`manage.py simulate_upstream`, the offline first run: a demo answer with code, a table and math, titles drawn
from the prompt, and `--fail 429|500|midstream|stall` to see how errors look. The real command, over HTTP."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time

import httpx
import pytest

from conversations.services.titles import TITLE_PROMPT
from conversations.testing.upstream import DEMO_REPLY_TEXT, TITLE_REQUEST_PREFIX, title_from_prompt
from tests.live import BASE_DIR


def run_simulator(*args: str):
    process = subprocess.Popen(
        [
            sys.executable,
            "manage.py",
            "simulate_upstream",
            "--port",
            "0",
            "--token-delay",
            "0",
            "--ttft",
            "0",
            *args,
        ],
        cwd=BASE_DIR,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    deadline = time.monotonic() + 20
    lines = []
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        lines.append(line)
        if match := re.search(r"listening on (http://\S+/v1)", line):
            return process, match.group(1)
    process.kill()
    raise AssertionError(f"the simulator did not start: {''.join(lines)}")


@pytest.fixture
def simulator(request):
    process, base_url = run_simulator(*getattr(request, "param", ()))
    yield base_url
    process.terminate()
    process.wait(10)


def stream(base_url: str, text: str = "Hello") -> tuple[int, str]:
    body = {"model": "gpt-4o", "stream": True, "messages": [{"role": "user", "content": text}]}
    with httpx.stream("POST", f"{base_url}/chat/completions", json=body, timeout=10) as response:
        return response.status_code, "".join(response.iter_text())


def answer_text(sse: str) -> str:
    parts = []
    for line in sse.splitlines():
        if line.startswith("data: {"):
            for choice in json.loads(line[6:]).get("choices", []):
                parts.append(choice.get("delta", {}).get("content") or "")
    return "".join(parts)


def test_the_demo_answer_has_a_code_block_a_table_and_math(simulator):
    status, sse = stream(simulator)
    assert status == 200
    text = answer_text(sse)
    assert text == DEMO_REPLY_TEXT
    assert "```python" in text and "|---|" in text and "\\(" in text and "\\[" in text


def test_title_requests_get_a_short_title_from_the_prompt(simulator):
    body = {
        "model": "gpt-4o",
        "max_tokens": 24,
        "messages": [
            {"role": "system", "content": TITLE_PROMPT},
            {
                "role": "user",
                "content": "User: how do **I** bake sourdough bread at home?\n\nAssistant: Start...",
            },
        ],
    }
    response = httpx.post(f"{simulator}/chat/completions", json=body, timeout=10)
    assert response.json()["choices"][0]["message"]["content"] == "How do I bake sourdough"


def test_the_sites_title_prompt_is_what_the_simulator_recognises():
    assert TITLE_PROMPT.startswith(TITLE_REQUEST_PREFIX)
    assert title_from_prompt({"messages": [{"role": "user", "content": "Hi"}]}) is None


@pytest.mark.parametrize("simulator", [("--fail", "429")], indirect=True)
def test_fail_429_rate_limits_every_answer(simulator):
    status, body = stream(simulator)
    assert status == 429 and "rate_limit_exceeded" in body


@pytest.mark.parametrize("simulator", [("--fail", "500")], indirect=True)
def test_fail_500_answers_with_a_server_error(simulator):
    status, _ = stream(simulator)
    assert status == 500


@pytest.mark.parametrize("simulator", [("--fail", "midstream")], indirect=True)
def test_fail_midstream_sends_an_error_after_part_of_the_answer(simulator):
    status, sse = stream(simulator)
    assert status == 200 and '"error"' in sse
    assert answer_text(sse) and answer_text(sse) != DEMO_REPLY_TEXT


@pytest.mark.parametrize("simulator", [("--fail", "stall")], indirect=True)
def test_fail_stall_pauses_mid_answer(simulator):
    body = {"model": "gpt-4o", "stream": True, "messages": [{"role": "user", "content": "Hi"}]}
    with httpx.stream(
        "POST", f"{simulator}/chat/completions", json=body, timeout=httpx.Timeout(10, read=2)
    ) as r:
        chunks = r.iter_text()
        received = ""
        with pytest.raises(httpx.ReadTimeout):
            for chunk in chunks:
                received += chunk
    assert 0 < len(answer_text(received)) < len(DEMO_REPLY_TEXT), "part of the answer came, then silence"
