"""The chat page in a real browser: Debian's Chromium, a live daphne, the upstream simulator."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from conversations.testing.upstream import Fault, Reply, title_from_prompt
from tests.ui import (
    answer_text,
    answers,
    composer,
    last_answer,
    log_in,
    open_chat,
    send,
    wait_for_answer_text,
)

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

# Plain text (the rendered text equals it) with characters outside the BMP: offsets count code points.
ANSWER = (
    "Streaming works word by word: Wörd 世界 and an emoji 🎉 travel safely, "
    "and every one of these words arrives in its own little frame so the page can show it at once."
)
LONG_ANSWER = " ".join(f"word{i}" for i in range(120)) + " 🎉 the end."


@pytest.fixture
def chat(browser_orm, live_server_daphne, client, alice, sim_model, context, page):
    log_in(context, live_server_daphne, client, alice)
    return open_chat(page, live_server_daphne)


def test_an_answer_streams_in_shows_in_the_sidebar_and_survives_a_reload(chat, upstream):
    page = chat
    upstream.enqueue(Reply(text=ANSWER, token_delay=0.05), Reply(text="Streaming test"))
    send(page, "Show me streaming")

    seen = set()
    final = wait_for_answer_text(page, lambda text: seen.add(text) or text == ANSWER)
    intermediate = {text for text in seen if text and text != final}
    assert len(intermediate) >= 3, f"only {len(intermediate)} intermediate states were seen"
    assert all(ANSWER.startswith(text) for text in intermediate), "the text only ever grows"

    expect(page).to_have_url(re.compile(r"/c/[0-9a-f-]{36}$"))
    sidebar = page.get_by_role("navigation", name="Conversations")
    expect(sidebar.get_by_role("link", name="Streaming test")).to_be_visible()  # the live title frame
    expect(page.get_by_role("heading", name="Streaming test", level=1)).to_be_visible()

    page.reload()
    expect(page.locator("article.msg-user .user-text")).to_have_text("Show me streaming")
    expect(last_answer(page).locator(".markdown")).to_have_text(ANSWER)
    expect(sidebar.get_by_role("link", name="Streaming test")).to_have_attribute("aria-current", "page")


REVEAL_ANSWER = " ".join(f"step{i}" for i in range(80))

# Every length the last answer's text takes, recorded by the page itself (a MutationObserver), and the delta
# frames the socket received.
RECORD_LENGTHS = """() => {
    window.answerLengths = [];
    new MutationObserver(() => {
        const all = document.querySelectorAll("article.msg-assistant .markdown");
        if (all.length) window.answerLengths.push(all[all.length - 1].textContent.length);
    }).observe(document.querySelector(".messages"), { subtree: true, childList: true, characterData: true });
}"""


def _reveal_steps(page, upstream, prompt: str) -> tuple[list[int], int]:
    """Send `prompt`, answered with REVEAL_ANSWER (80 tokens 20 ms apart); return the lengths the answer's
    text took while it streamed and how many delta frames brought it."""
    deltas = []
    page.on(
        "websocket",
        lambda ws: ws.on("framereceived", lambda f: deltas.append(f) if '"type":"delta"' in f else None),
    )
    page.reload()  # the socket opens again, now watched
    expect(composer(page)).to_be_editable()
    page.evaluate(RECORD_LENGTHS)
    upstream.enqueue(Reply(text=REVEAL_ANSWER, token_delay=0.02), Reply(text="Reveal test"))
    send(page, prompt)
    expect(last_answer(page).locator(".markdown")).to_have_text(REVEAL_ANSWER)
    expect(page.get_by_role("button", name="Send")).to_be_visible()
    lengths = page.evaluate("window.answerLengths")
    assert lengths == sorted(lengths), "the text only ever grows"
    return [n for n in lengths if 0 < n < len(REVEAL_ANSWER)], len(deltas)


def test_a_lone_answer_is_revealed_at_a_steady_pace_between_its_frames(chat, upstream):
    """A quiet server sends a lone answer in frames about 200 ms apart (CHAT_QUIET_FRAME_INTERVAL), several
    tokens each; the page reveals each frame's text over the time to the next one (thread.js), so the text
    grows in many more steps than frames came; with reduced motion asked for, each frame shows at once."""
    page = chat
    steps, frames = _reveal_steps(page, upstream, "Reveal it smoothly")
    assert 3 <= frames <= 20, f"{frames} delta frames for an answer of 1.6 s"
    assert len(set(steps)) >= 3 * frames, f"{len(set(steps))} steps of the text for {frames} frames"

    page.emulate_media(reduced_motion="reduce")
    steps, frames = _reveal_steps(page, upstream, "Now all at once")
    assert len(set(steps)) <= frames, f"{len(set(steps))} steps of the text for {frames} frames"


def test_a_reload_in_the_middle_of_an_answer_shows_it_whole_and_once(chat, upstream):
    page = chat
    upstream.enqueue(Reply(text=LONG_ANSWER, token_delay=0.02), Reply(text="Reload test"))
    send(page, "A long answer, please")
    wait_for_answer_text(page, lambda text: len(text.split()) >= 15)
    page.reload()
    # Straight after the reload the answer is still running: the snapshot, then the rest, exactly once.
    expect(page.get_by_role("button", name="Stop")).to_be_visible()
    expect(last_answer(page).locator(".markdown")).to_have_text(LONG_ANSWER, timeout=20_000)
    expect(page.get_by_role("button", name="Send")).to_be_visible()
    assert answer_text(page) == LONG_ANSWER


def test_stop_keeps_the_partial_answer_and_versions_and_edits_stay_reachable(chat, upstream):
    page = chat
    upstream.enqueue(
        Reply(text=LONG_ANSWER, token_delay=0.05),
        Reply(text="The second version."),
        Reply(text="Branching test"),  # the title, written after the first complete answer
        Reply(text="An answer to the edited question."),
    )
    send(page, "Question one")
    wait_for_answer_text(page, lambda text: len(text.split()) >= 5)
    page.get_by_role("button", name="Stop").click()

    first = last_answer(page)
    expect(first.get_by_text("Stopped", exact=True)).to_be_visible()
    partial = answer_text(page)
    assert partial and LONG_ANSWER.startswith(partial) and partial != LONG_ANSWER
    expect(page.get_by_role("button", name="Send")).to_be_visible()

    # Regenerate: a second version, and the "2/2" version switcher moves between them.
    first.get_by_role("button", name="Regenerate").click()
    expect(last_answer(page).locator(".markdown")).to_have_text("The second version.")
    versions = last_answer(page).get_by_role("group", name="Versions")
    expect(versions).to_contain_text("2/2")
    expect(page.get_by_role("link", name="Branching test")).to_be_visible()
    versions.get_by_role("button", name="Previous version").click()
    expect(versions).to_contain_text("1/2")
    expect(last_answer(page).locator(".markdown")).to_have_text(partial)
    expect(last_answer(page).get_by_text("Stopped", exact=True)).to_be_visible()
    versions.get_by_role("button", name="Next version").click()
    expect(last_answer(page).locator(".markdown")).to_have_text("The second version.")

    # Edit the question: a new branch with its own answer; the old branch is one click away.
    question = page.locator("article.msg-user")
    question.hover()
    question.get_by_role("button", name="Edit").click()
    editor = page.get_by_role("textbox", name="Edit message")
    editor.fill("Question one, edited")
    page.get_by_role("button", name="Save and send").click()
    expect(question).to_contain_text("Question one, edited")
    expect(last_answer(page).locator(".markdown")).to_have_text("An answer to the edited question.")
    question_versions = question.get_by_role("group", name="Versions")
    expect(question_versions).to_contain_text("2/2")

    question.hover()
    question_versions.get_by_role("button", name="Previous version").click()
    expect(question.locator(".user-text")).to_have_text("Question one")
    expect(last_answer(page).locator(".markdown")).to_have_text("The second version.")
    question.hover()
    question_versions.get_by_role("button", name="Next version").click()
    expect(question.locator(".user-text")).to_have_text("Question one, edited")
    expect(last_answer(page).locator(".markdown")).to_have_text("An answer to the edited question.")


HOSTILE = """Here is the function:

```python
def add(a: int, b: int) -> int:
    return a + b
```

| Name | Value |
|------|-------|
| alpha | 1 |
| beta | 2 |

<img src=x onerror="window.__pwned = 'img'; alert('img')">

<script>window.__pwned = 'script'; alert('script')</script>

[click me](javascript:window.__pwned='link';alert('link'))
and <a href="javascript:window.__pwned='raw'">a raw link</a>,
<form action="/accounts/logout/" method="post"><button>Log out</button></form>
<iframe src="/"></iframe><style>body { display: none }</style>
<svg onload="window.__pwned='svg'"></svg>

See the [docs](https://example.com/docs).
"""


def test_code_is_highlighted_and_copyable_and_hostile_html_is_inert(
    chat, upstream, context, live_server_daphne
):
    page = chat
    context.grant_permissions(["clipboard-read", "clipboard-write"], origin=live_server_daphne.url)
    dialogs = []
    page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
    page.evaluate("window.__pwned = null")
    upstream.enqueue(Reply(text=HOSTILE, token_delay=0.005), Reply(text="Hostile test"))
    send(page, "Show me something nasty")
    answer = last_answer(page)
    expect(answer.get_by_role("button", name="Regenerate")).to_be_visible()  # the answer has ended

    # Highlighted code with a working Copy button.
    code = answer.locator(".code-block code")
    expect(code.locator(".hljs-keyword").first).to_have_text("def")
    answer.get_by_role("button", name="Copy code").click()
    expect(answer.get_by_role("button", name="Copied!")).to_be_visible()
    copied = page.evaluate("navigator.clipboard.readText()")
    assert copied == "def add(a: int, b: int) -> int:\n    return a + b"

    # The table is a table.
    table = answer.get_by_role("table")
    expect(table.get_by_role("row")).to_have_count(3)
    expect(table.get_by_role("cell", name="beta")).to_be_visible()

    # Nothing active survived; raw HTML shows as text.
    for selector in ("img", "script", "iframe", "form", "style", "svg", "input", "button:not(.code-copy)"):
        expect(answer.locator(f".markdown {selector}")).to_have_count(0)
    expect(answer.locator(".markdown")).to_contain_text("<script>")
    link = answer.get_by_text("click me")
    assert link.get_attribute("href") is None
    url = page.url
    link.click()
    answer.get_by_text("a raw link").click()
    page.wait_for_timeout(200)
    assert page.url == url
    assert dialogs == []
    assert page.evaluate("window.__pwned") is None

    safe = answer.get_by_role("link", name="docs")
    expect(safe).to_have_attribute("href", "https://example.com/docs")
    expect(safe).to_have_attribute("target", "_blank")
    expect(safe).to_have_attribute("rel", "noopener noreferrer")


def test_the_page_is_served_with_a_strict_content_security_policy(chat, live_server_daphne):
    response = chat.request.get(live_server_daphne.url + "/")
    policy = response.headers["content-security-policy"]
    directives = dict(part.strip().split(" ", 1) for part in policy.split(";"))
    assert "'unsafe-inline'" not in directives["script-src"]
    assert directives["script-src"].startswith("'self'")
    assert directives["object-src"] == "'none'"
    assert directives["base-uri"] == "'none'"
    assert directives["frame-ancestors"] == "'none'"
    assert f"ws://127.0.0.1:{live_server_daphne.port}" in directives["connect-src"]


def test_an_upstream_error_is_marked_and_retry_answers(chat, upstream):
    page = chat
    upstream.enqueue(Reply(fault=Fault.INVALID_KEY), Reply(text="Working now."), Reply(text="Retry test"))
    send(page, "Will this work?")
    alert = last_answer(page).locator(".msg-alert")
    expect(alert).to_contain_text("API key")
    alert.get_by_role("button", name="Retry").click()
    expect(last_answer(page).locator(".markdown")).to_have_text("Working now.")
    expect(last_answer(page).get_by_role("group", name="Versions")).to_contain_text("2/2")


def test_settings_go_with_the_next_message_and_escape_stops(chat, upstream):
    page = chat
    upstream.enqueue(Reply(text=LONG_ANSWER, token_delay=0.05), Reply(text="Settings test"))
    page.get_by_role("button", name="Chat settings").click()
    dialog = page.get_by_role("dialog", name="Chat settings")
    dialog.get_by_label("System prompt").fill("Answer like a pirate.")
    dialog.get_by_label("Temperature").fill("0.3")
    dialog.get_by_label("Maximum output tokens").fill("300")
    dialog.get_by_label("JSON mode").check()
    dialog.get_by_role("button", name="Save").click()
    expect(dialog).to_be_hidden()
    expect(page.get_by_role("button", name="Chat settings (customised)")).to_be_visible()

    send(page, "Ahoy")
    wait_for_answer_text(page, lambda text: len(text.split()) >= 3)
    # The answer's request: not a title request (this conversation's, or a late one of the previous test's).
    body = next(
        r.json
        for r in upstream.requests
        if r.path.endswith("/chat/completions") and title_from_prompt(r.json) is None
    )
    assert body["messages"][0] == {"role": "system", "content": "Answer like a pirate."}
    assert body["temperature"] == 0.3 and body["max_tokens"] == 300
    assert body["response_format"] == {"type": "json_object"}

    composer(page).press("Escape")
    expect(last_answer(page).get_by_text("Stopped", exact=True)).to_be_visible()
    assert len(answers(page).all()) == 1
