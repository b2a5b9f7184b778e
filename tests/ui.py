"""Helpers for the browser tests (tests/test_ui_*.py): log in by cookie, read answers, seed a conversation.

Browser tests drive the page like a person: controls by role and accessible name. Reading what an answer shows
uses the message elements, since "the text of the last answer" has no role of its own.
"""

from __future__ import annotations

import datetime as dt
import re
import time
from decimal import Decimal
from pathlib import Path

from django.utils import timezone
from playwright.sync_api import Page, expect

from tests.conftest import session_cookie_for

ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = ROOT / "artifacts"
AXE_URL_PATH = "/static/vendor/axe-core-4.14.1/axe.min.js"
TIMEOUT_MS = 15_000


def log_in(context, live_server, client, user) -> None:
    """Give the browser context `user`'s session cookie, as if they had logged in."""
    context.add_cookies(
        [{"name": "sessionid", "value": session_cookie_for(client, user), "url": live_server.url}]
    )


def open_chat(page: Page, live_server, path: str = "/") -> Page:
    page.set_default_timeout(TIMEOUT_MS)
    page.goto(live_server.url + path)
    expect(page.get_by_role("status").filter(has_text="Connected")).to_be_attached()
    expect(page.locator("aside[data-loaded]")).to_be_attached()  # the sidebar's first page is in
    return page


def composer(page: Page):
    return page.get_by_role("textbox", name="Message")


def model_option(page: Page, name: str):
    """The open model menu's option for the model called `name`: its accessible name is the model's name, a
    comma, then its description and badges ("GPT-4o, OpenAI's flagship… Vision 128k context …")."""
    return page.get_by_role("listbox", name="Models").get_by_role(
        "option", name=re.compile("^" + re.escape(name) + r" ?,")
    )


def pick_model(page: Page, name: str) -> None:
    """Choose a model in the composer's model menu (a combobox and its listbox), as a person would."""
    page.get_by_role("combobox", name="Model").click()
    model_option(page, name).click()
    expect(page.get_by_role("combobox", name="Model")).to_have_text(name)


def send(page: Page, text: str) -> None:
    box = composer(page)
    box.fill(text)
    box.press("Enter")


def answers(page: Page):
    return page.locator("article.msg-assistant")


def last_answer(page: Page):
    return answers(page).last


def answer_text(page: Page) -> str:
    """What the last answer shows right now ("" before it exists)."""
    return page.evaluate(
        """() => {
            const all = document.querySelectorAll("article.msg-assistant .markdown");
            return all.length ? all[all.length - 1].innerText.trim() : "";
        }"""
    )


def wait_for_answer_text(page: Page, predicate, timeout: float = 10.0) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        text = answer_text(page)
        if predicate(text):
            return text
        page.wait_for_timeout(20)
    raise AssertionError(f"the answer never matched; it shows {answer_text(page)!r}")


def axe_violations(page: Page, live_server) -> list[dict]:
    """Run axe-core (vendored) on the page; loaded from our own origin so the page's CSP allows it."""
    page.add_script_tag(url=live_server.url + AXE_URL_PATH)
    return page.evaluate(
        """async () => {
            const result = await axe.run(document, { resultTypes: ["violations"] });
            return result.violations.map((v) => ({
                id: v.id, impact: v.impact, help: v.help,
                nodes: v.nodes.slice(0, 5).map((n) => n.target.join(" ")),
            }));
        }"""
    )


# --- Seeding a conversation straight into the database (for screenshots and the accessibility scan) ---------

SHOWCASE_ANSWER_1 = """## Reading a CSV file in Python

The standard library's `csv` module is enough for most files:

```python
import csv
from pathlib import Path

def load_rows(path: Path) -> list[dict[str, str]]:
    \"\"\"Read a CSV file into a list of dicts, one per row.\"\"\"
    with path.open(newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))

rows = load_rows(Path("sales.csv"))
print(f"{len(rows)} rows")  # 1,204 rows
```

- `newline=""` lets the module handle line endings itself.
- For large files, iterate over the reader instead of building a list.
"""

SHOWCASE_ANSWER_2 = """Here is how the three options compare:

| Library | Best for | Speed |
|---|---|---|
| `csv` | Small, simple files | Good |
| pandas | Analysis and joins | Fast |
| Polars | Very large files | Fastest |

With Polars the same load is one line, and it is lazy until you `collect()`:

```python
import polars as pl

sales = pl.scan_csv("sales.csv").filter(pl.col("amount") > 100).collect()
```

> Tip: start with `csv`, and switch when a profile says the parsing is what's slow.
"""


def seed_showcase(owner, model):
    """A conversation with two exchanges (code, a table, a list, a quote) and a sidebar of other chats."""
    from conversations.models import Conversation, Message

    now = timezone.now()
    others = [
        ("Trip ideas for a weekend in Lisbon", dt.timedelta(minutes=30), True),
        ("Fix a flaky pytest fixture", dt.timedelta(hours=2), False),
        ("Explain Rust lifetimes simply", dt.timedelta(days=1, hours=1), False),
        ("SQL window functions cheat sheet", dt.timedelta(days=3), False),
        ("Birthday message for my sister", dt.timedelta(days=5), False),
        ("Compare PostgreSQL and SQLite", dt.timedelta(days=20), False),
        ("Draft a polite reminder email", dt.timedelta(days=40), False),
    ]
    for title, age, pinned in others:
        other = Conversation.objects.create(owner=owner, title=title, model=model, pinned=pinned)
        Conversation.objects.filter(pk=other.pk).update(updated_at=now - age)

    conversation = Conversation.objects.create(owner=owner, title="Reading CSV files in Python", model=model)
    usage = {
        "status": Message.Status.COMPLETE,
        "finish_reason": "stop",
        "model": model,
        "model_name": "gpt-4o",
        "provider_name": "Simulator",
        "prompt_tokens": 412,
        "completion_tokens": 187,
        "cost": Decimal("0.002900"),
        "ttft_ms": 380,
        "duration_ms": 2400,
    }
    q1 = Message.objects.create(
        conversation=conversation, role="user", content="How do I read a CSV file in Python?"
    )
    a1 = Message.objects.create(
        conversation=conversation, parent=q1, role="assistant", content=SHOWCASE_ANSWER_1, **usage
    )
    q2 = Message.objects.create(
        conversation=conversation,
        parent=a1,
        role="user",
        content="And how does that compare with pandas or Polars?",
    )
    a2 = Message.objects.create(
        conversation=conversation, parent=q2, role="assistant", content=SHOWCASE_ANSWER_2, **usage
    )
    Conversation.objects.filter(pk=conversation.pk).update(current_leaf=a2, updated_at=now)
    return conversation
