"""Math in answers, in a real browser: KaTeX loaded only when an answer has math, half-written math left as
text while it streams, math in code left alone, prices not taken for math, and TeX that tries to inject HTML
or script stays inert (KaTeX's output goes through DOMPurify)."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from conversations.testing.upstream import Reply
from tests.ui import ARTIFACTS, axe_violations, last_answer, log_in, open_chat, send

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

MATH_ANSWER = (
    "The circle is \\(x^2 + y^2 = r^2\\), and its area is\n\n"
    "\\[A = \\pi r^2 = \\frac{\\pi d^2}{4}\\]\n\n"
    "Euler wrote $e^{i\\pi} + 1 = 0$, and a root: $$\\sqrt{2} \\approx 1.414$$\n\n"
    "Prices stay prices: it costs $5 and $10 today.\n\n"
    "Code stays code: `$x$` and\n\n```python\nprint('$$y$$ \\\\(z\\\\)')\n```\n"
)


def katex_requests(page_requests):
    return [url for url in page_requests if "/vendor/katex-" in url]


@pytest.fixture
def chat(browser_orm, live_server_daphne, client, alice, sim_model, context, page):
    log_in(context, live_server_daphne, client, alice)
    requests = []
    page.on("request", lambda request: requests.append(request.url))
    errors = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    open_chat(page, live_server_daphne)
    page.katex_requests, page.errors = requests, errors
    return page


def test_math_renders_with_katex_loaded_only_once_an_answer_has_math(chat, upstream, live_server_daphne):
    page = chat
    upstream.enqueue(Reply(text="No formulas here, only words.", token_delay=0.01), Reply(text="Words"))
    send(page, "Say something plain")
    expect(last_answer(page).locator(".markdown")).to_have_text("No formulas here, only words.")
    assert katex_requests(page.katex_requests) == [], "KaTeX was loaded for an answer without math"

    upstream.enqueue(Reply(text=MATH_ANSWER, token_delay=0.005))
    send(page, "Some math please")
    answer = last_answer(page)
    expect(answer).not_to_have_class("is-running")
    expect(answer.locator(".katex")).to_have_count(4)
    expect(answer.locator(".katex-display")).to_have_count(2)  # \[ … \] and $$ … $$
    loaded = katex_requests(page.katex_requests)
    assert any(url.endswith(".mjs") for url in loaded) and any(".css" in url for url in loaded)
    assert any(".woff2" in url for url in loaded), "KaTeX's fonts come from our own static files"
    # Each formula has its TeX as its accessible name; the rendering itself is hidden from screen readers.
    expect(answer.get_by_role("img", name="x^2 + y^2 = r^2")).to_be_visible()
    expect(answer.get_by_role("img", name="A = \\pi r^2 = \\frac{\\pi d^2}{4}")).to_be_visible()
    # A fraction is laid out on two levels, which needs KaTeX's inline styles (lengths set through the CSSOM,
    # kept by the sanitiser): the display formula is about two lines tall, not one.
    assert answer.locator(".math-display").first.bounding_box()["height"] > 40
    # Prices and code are not math.
    expect(answer.get_by_text("Prices stay prices: it costs $5 and $10 today.")).to_be_visible()
    expect(answer.locator("code").filter(has_text="$x$")).to_be_visible()
    expect(answer.locator("pre code")).to_contain_text("$$y$$ \\\\(z\\\\)")
    assert answer.locator("code .katex, pre .katex").count() == 0
    assert page.errors == []

    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=ARTIFACTS / "math-light.png")
    page.emulate_media(color_scheme="dark")
    page.screenshot(path=ARTIFACTS / "math-dark.png")
    violations = [
        v for v in axe_violations(page, live_server_daphne) if v["impact"] in ("serious", "critical")
    ]
    assert violations == []
    page.set_viewport_size({"width": 390, "height": 844})
    page.wait_for_timeout(200)
    page.screenshot(path=ARTIFACTS / "math-390.png")
    assert page.evaluate("document.documentElement.scrollWidth") <= 390, "a formula pushes the page sideways"


def test_half_written_math_stays_text_until_it_is_closed(chat, upstream):
    page = chat
    tokens = [
        "The area is ",
        "\\(",
        "\\pi ",
        "r^2",
        "\\)",
        " and more: ",
        "$$",
        "\\frac{a}",
        "{b}",
        "$$",
        " done.",
    ]
    upstream.enqueue(Reply(tokens=tokens, token_delay=0.35))
    send(page, "Stream some math slowly")
    answer = last_answer(page)
    # Before the closing \) arrives: the formula is plain text, no KaTeX, no error.
    expect(answer.locator(".markdown")).to_contain_text("r^2", timeout=10_000)
    assert answer.locator(".katex").count() == 0
    assert "π" not in answer.locator(".markdown").inner_text()
    states = []
    for _ in range(60):
        states.append(
            page.evaluate(
                """() => {
                    const all = document.querySelectorAll("article.msg-assistant");
                    const a = all[all.length - 1];
                    return {
                        katex: a.querySelectorAll(".katex").length,
                        errors: a.querySelectorAll(".katex-error").length,
                        text: a.querySelector(".markdown").innerText,
                        running: a.classList.contains("is-running"),
                    };
                }"""
            )
        )
        if not states[-1]["running"]:
            break
        page.wait_for_timeout(100)
    assert not states[-1]["running"]
    assert all(s["errors"] == 0 for s in states), "half-written math was handed to KaTeX"
    counts = [s["katex"] for s in states]
    assert counts == sorted(counts), "a formula flickered out of rendering while the answer streamed"
    assert 1 in counts, "the closed inline formula rendered while the display one was still open"
    assert any("\\frac{a}" in s["text"] for s in states if s["katex"] == 1), "open $$ math showed as text"
    expect(answer.locator(".katex")).to_have_count(2)
    assert page.errors == []


XSS_ANSWER = (
    'Inline: \\(x</span><img src=x onerror="window.__xss=1">\\)\n\n'
    "$$\\href{javascript:window.__xss=2}{\\text{click me}}$$\n\n"
    "\\[\\htmlClass{evil}{\\text{<script>window.__xss=3</script>}} \\url{javascript:alert(1)}\\]\n\n"
    "\\(\\style{background:url(https://evil.example/x)}{y} \\htmlStyle{color:red}{z}\\)\n"
)


def test_html_and_script_inside_math_stay_inert(chat, upstream):
    page = chat
    upstream.enqueue(Reply(text=XSS_ANSWER, token_delay=0.002))
    send(page, "Try to break the math")
    answer = last_answer(page)
    expect(answer).not_to_have_class("is-running")
    expect(answer.locator(".math")).to_have_count(4)
    # Each went through KaTeX: typeset, or (HTML isn't TeX; \href and \url need trust) shown as its source.
    expect(answer.locator(".math > .katex, .math > .katex-error, .math > .katex-display")).to_have_count(4)
    page.wait_for_timeout(500)
    assert page.evaluate("window.__xss") is None
    assert answer.locator("img, script, a[href^='javascript'], [onerror], .evil").count() == 0
    assert all(
        "url(" not in (style or "")
        for style in answer.locator("[style]").evaluate_all("els => els.map(e => e.getAttribute('style'))")
    )
    # What was written is still readable, as text.
    expect(answer.get_by_role("img", name='x</span><img src=x onerror="window.__xss=1">')).to_be_attached()
    assert page.errors == []
    page.screenshot(path=ARTIFACTS / "math-xss.png")
