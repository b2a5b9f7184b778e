"""The live connection in a real browser: a dropped socket resumes exactly; a crashed server comes back and
the answer it was writing is kept and marked, ready for Retry; the reader scrolled up is not yanked down."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from conversations.models import Message
from conversations.testing.upstream import Reply
from tests.ui import ARTIFACTS, answer_text, last_answer, log_in, open_chat, send, wait_for_answer_text

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

LONG_ANSWER = " ".join(f"wörd{i} 世界" if i % 9 == 0 else f"word{i}" for i in range(150)) + " 🎉 fin."


@pytest.fixture
def chat(browser_orm, live_server_daphne, client, alice, sim_model, context, page):
    log_in(context, live_server_daphne, client, alice)
    return open_chat(page, live_server_daphne)


def test_a_dropped_socket_reconnects_and_the_answer_continues_exactly(chat, upstream):
    page = chat
    upstream.enqueue(Reply(text=LONG_ANSWER, token_delay=0.02), Reply(text="Drop test"))
    send(page, "Keep talking")
    wait_for_answer_text(page, lambda text: len(text.split()) >= 20)
    page.evaluate("window.chatApp.connection.socket.close()")  # the network blinks
    expect(last_answer(page).locator(".markdown")).to_have_text(LONG_ANSWER, timeout=20_000)
    expect(page.get_by_role("status").filter(has_text="Connected")).to_be_attached()
    assert answer_text(page) == LONG_ANSWER


def test_reading_back_up_is_not_interrupted_by_the_stream(chat, upstream):
    page = chat
    paragraphs = "\n\n".join(f"Paragraph {i}: " + "some words " * 30 for i in range(14))
    upstream.enqueue(Reply(text=paragraphs, token_delay=0.004), Reply(text="Scroll test"))
    send(page, "Write a lot")
    wait_for_answer_text(page, lambda text: text.count("Paragraph") >= 6)
    thread = page.locator("#thread")
    thread.evaluate("el => el.scrollTo({ top: 0, behavior: 'instant' })")
    jump = page.get_by_role("button", name="Jump to latest")
    expect(jump).to_be_visible()
    wait_for_answer_text(page, lambda text: text.count("Paragraph") >= 10)
    assert thread.evaluate("el => el.scrollTop") == 0, "the view jumped while the reader was reading"
    expect(last_answer(page).get_by_role("button", name="Regenerate")).to_be_visible(timeout=20_000)
    jump.click()
    expect(jump).to_be_hidden()
    page.wait_for_function(  # the smooth scroll ends at the bottom
        "() => { const el = document.getElementById('thread');"
        " return el.scrollHeight - el.scrollTop - el.clientHeight < 50; }"
    )


def test_after_a_server_crash_the_page_reconnects_and_keeps_the_partial_answer(
    browser_orm, crashable_daphne, client, alice, sim_model, upstream, context, page
):
    log_in(context, crashable_daphne, client, alice)
    open_chat(page, crashable_daphne)
    upstream.enqueue(Reply(text=LONG_ANSWER, token_delay=0.03), Reply(text="Try again: done."))
    send(page, "Write slowly")
    wait_for_answer_text(page, lambda text: len(text.split()) >= 15)
    page.wait_for_timeout(300)  # a checkpoint of what was shown
    crashable_daphne.kill()
    expect(page.get_by_role("status").filter(has_text="Reconnecting")).to_be_visible()

    crashable_daphne.start()
    answer = last_answer(page)
    expect(answer.get_by_text("This answer was interrupted")).to_be_visible(timeout=20_000)
    expect(page.get_by_role("status").filter(has_text="Connected")).to_be_attached()
    kept = answer_text(page)
    assert len(kept.split()) >= 10 and LONG_ANSWER.startswith(kept)

    answer.get_by_role("button", name="Retry").click()
    expect(last_answer(page).locator(".markdown")).to_have_text("Try again: done.")
    expect(last_answer(page).get_by_role("group", name="Versions")).to_contain_text("2/2")


def test_a_message_sent_before_the_socket_is_up_goes_out_once_it_is(
    browser_orm, live_server_daphne, client, alice, sim_model, upstream, context, page
):
    """Someone who types and presses Enter the moment the page appears must not be told off: the words stay in
    the box with a note, and go out by themselves when the server says hello."""
    held: list = []
    routes: list = []

    def hold_the_server(ws):
        # A real server connection whose frames to the page (the hello first) wait until the test lets them.
        routes.append(ws)
        ws.connect_to_server().on_message(
            lambda message: ws.send(message) if not held and released else held.append(message)
        )

    released = False

    page.route_web_socket(re.compile(r"^ws://"), hold_the_server)
    log_in(context, live_server_daphne, client, alice)
    page.set_default_timeout(15_000)
    page.goto(live_server_daphne.url + "/")
    upstream.enqueue(Reply(text="Sent at last."), Reply(text="Queued"))
    box = page.get_by_role("textbox", name="Message")
    box.fill("Typed at once")
    box.press("Enter")
    note = page.get_by_role("alert")
    expect(note).to_contain_text("sent as soon as the connection is up")
    expect(note).to_have_attribute("data-kind", "waiting")  # shown as a note, not in the error colour
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=ARTIFACTS / "composer-waiting-for-the-socket.png")
    expect(box).to_have_value("Typed at once")
    expect(page.get_by_role("status").filter(has_text="Connecting")).to_be_attached()
    page.wait_for_timeout(300)
    assert upstream.chat_requests == [], "nothing may go out before the socket is up"

    (route,) = routes
    released = True
    while held:  # the hello, at last; later frames pass as they come
        route.send(held.pop(0))
    expect(last_answer(page).locator(".markdown")).to_have_text("Sent at last.")
    expect(box).to_have_value("")
    expect(page.get_by_role("alert")).to_be_hidden()
    assert upstream.chat_requests[0].json["messages"][-1]["content"] == "Typed at once"
    assert list(Message.objects.filter(role="user").values_list("content", flat=True)) == ["Typed at once"]
