"""What a daily user notices (issue 17), in a real browser: early titles, what the page says while it waits,
custom instructions on the settings page, and the error pages. Screenshots go to artifacts/ (light, dark and
390 px where layout matters); axe-core must find nothing serious on the settings and error pages."""

from __future__ import annotations

import uuid

import httpx
import pytest
from django.test import Client
from playwright.sync_api import expect

from conversations.testing.upstream import DEMO_REPLY_TEXT, Fault, Reply
from tests.conftest import session_cookie_for
from tests.ui import ARTIFACTS, axe_violations, last_answer, log_in, open_chat, send

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

LONG_ANSWER = "Lisbon is a hilly city by the Atlantic, best walked slowly. " + " ".join(
    f"word{i}" for i in range(120)
)


def serious(violations):
    return [v for v in violations if v["impact"] in ("serious", "critical")]


def shoot(page, name: str, live_server=None, *, phone: bool = True) -> None:
    """Screenshots in light, dark and (if `phone`) at 390 px; with `live_server`, axe in both themes."""
    ARTIFACTS.mkdir(exist_ok=True)
    size = page.viewport_size
    for scheme in ("light", "dark"):
        page.emulate_media(color_scheme=scheme)
        page.wait_for_timeout(300)  # colours ease over 0.15 s: shoot the theme, not the transition
        page.screenshot(path=ARTIFACTS / f"{name}-{scheme}.png", full_page=True)
        if live_server is not None:
            assert serious(axe_violations(page, live_server)) == [], scheme
    if phone:
        page.emulate_media(color_scheme="light")
        page.set_viewport_size({"width": 390, "height": 844})
        page.wait_for_timeout(300)
        page.screenshot(path=ARTIFACTS / f"{name}-390.png", full_page=True)
        assert page.evaluate("document.documentElement.scrollWidth") <= 390, "nothing sticks out sideways"
        page.set_viewport_size(size)


@pytest.fixture
def chat(browser_orm, live_server_daphne, client, alice, sim_model, context, page):
    log_in(context, live_server_daphne, client, alice)
    return open_chat(page, live_server_daphne)


def test_a_new_chat_is_titled_at_once_and_by_the_model_before_its_answer_ends(chat, upstream):
    page = chat
    upstream.enqueue(
        Reply(text=LONG_ANSWER, token_delay=0.06, ttft=0.8), Reply(text="**Slow travel in Lisbon**")
    )
    send(page, "## Plan a *slow* trip to `Lisbon`")
    sidebar = page.get_by_role("navigation", name="Conversations")
    # At once, before any answer text: the prompt as plain text.
    expect(sidebar.get_by_role("link", name="Plan a slow trip to Lisbon")).to_be_visible()
    expect(page.get_by_role("heading", name="Plan a slow trip to Lisbon", level=1)).to_be_visible()
    assert not last_answer(page).locator(".markdown").inner_text().strip()
    # Then the model's, while the answer still streams.
    expect(page.get_by_role("heading", name="Slow travel in Lisbon", level=1)).to_be_visible()
    expect(last_answer(page)).to_have_class("msg msg-assistant is-running")
    expect(sidebar.get_by_role("link", name="Slow travel in Lisbon")).to_be_visible()
    shoot(page, "title-mid-answer", phone=False)
    expect(last_answer(page)).not_to_have_class("msg msg-assistant is-running", timeout=20_000)


def test_a_failed_first_answer_keeps_the_prompt_as_title(chat, upstream):
    page = chat
    upstream.enqueue(Reply(fault=Fault.INVALID_KEY))
    send(page, "Translate **bonjour** please")
    expect(last_answer(page).get_by_role("button", name="Retry")).to_be_visible()
    sidebar = page.get_by_role("navigation", name="Conversations")
    expect(sidebar.get_by_role("link", name="Translate bonjour please")).to_be_visible()
    expect(sidebar.get_by_role("link", name="New chat")).to_have_count(0)


def test_the_page_says_what_is_happening_while_it_waits(chat, upstream):
    page = chat
    # A rate limit before the first token: the retry is announced, then the answer comes.
    upstream.enqueue(Reply(fault=Fault.RATE_LIMIT, retry_after=1.5), Reply(text="Here I am.", ttft=1.0))
    send(page, "Hello?")
    answer = last_answer(page)
    expect(answer.get_by_text("Retrying (2 of 3)…")).to_be_visible()
    shoot(page, "wait-retrying", phone=False)
    expect(answer.locator(".markdown")).to_have_text("Here I am.")
    expect(answer.get_by_text("Retrying (2 of 3)…")).to_be_hidden()

    # A slow first token, then a stall mid-answer (both shorter than the site's own timeouts).
    tokens = ["The ", "answer ", "starts ", "here ", "and ", "then ", "goes ", "on."]
    upstream.enqueue(Reply(tokens=tokens, ttft=11.5, fault=Fault.STALL, fault_after=4, stall_seconds=9.5))
    send(page, "Take your time")
    answer = last_answer(page)
    expect(answer.get_by_text("Still waiting for Simulator…")).to_be_visible(timeout=14_000)
    shoot(page, "wait-first-token", phone=False)
    expect(answer.locator(".markdown")).to_have_text("The answer starts here", timeout=5_000)
    expect(answer.get_by_text("Still waiting for Simulator…")).to_be_hidden()
    expect(answer.get_by_text("The provider paused…")).to_be_visible(timeout=11_000)
    shoot(page, "wait-paused", phone=False)
    expect(answer.locator(".markdown")).to_have_text(
        "The answer starts here and then goes on.", timeout=8_000
    )
    expect(answer.get_by_text("The provider paused…")).to_be_hidden()


def test_the_offline_demo_answer_renders_code_a_table_and_math(chat, upstream):
    page = chat
    upstream.enqueue(Reply(text=DEMO_REPLY_TEXT, token_delay=0.002))
    send(page, "Show me the demo")
    answer = last_answer(page)
    expect(answer.locator(".code-block")).to_be_visible()
    expect(answer.get_by_role("table")).to_be_visible()
    expect(answer.locator(".katex")).to_have_count(2)
    shoot(page, "demo-answer", phone=True)


def test_custom_instructions_are_written_on_the_settings_page(
    browser_orm, live_server_daphne, client, alice, context, page
):
    log_in(context, live_server_daphne, client, alice)
    page.goto(live_server_daphne.url + "/settings/")
    about = page.get_by_role("textbox", name="What should the assistant know about you?")
    style = page.get_by_role("textbox", name="How should it respond?")
    enabled = page.get_by_role("checkbox", name="Use them in every chat")
    expect(enabled).to_be_checked()
    about.fill("I'm a nurse in Lyon.")
    style.fill("Short answers, please.")
    page.get_by_role("button", name="Save instructions").click()
    expect(page.get_by_role("status")).to_contain_text("Your custom instructions were saved")
    expect(about).to_have_value("I'm a nurse in Lyon.")
    expect(style).to_have_value("Short answers, please.")
    expect(page.get_by_text("they don't count toward this site's limits")).to_have_count(0)  # keys are off
    shoot(page, "settings-instructions", live_server_daphne)
    enabled.uncheck()
    page.get_by_role("button", name="Save instructions").click()
    expect(page.get_by_role("checkbox", name="Use them in every chat")).not_to_be_checked()


def test_signing_out_everywhere_else_from_the_settings_page(
    browser_orm, live_server_daphne, client, alice, context, page
):
    elsewhere = session_cookie_for(Client(), alice)  # another device
    log_in(context, live_server_daphne, client, alice)
    page.goto(live_server_daphne.url + "/settings/")
    page.get_by_role("button", name="Sign out everywhere else").click()
    expect(page.get_by_role("status")).to_contain_text("You were signed out everywhere else.")
    shoot(page, "settings-sign-out-elsewhere", live_server_daphne)
    other = httpx.get(f"{live_server_daphne.url}/settings/", cookies={"sessionid": elsewhere})
    assert other.status_code == 302  # sent to log in
    page.goto(live_server_daphne.url + "/settings/")  # this one still works
    expect(page.get_by_role("heading", name="Settings", level=1)).to_be_visible()


def test_error_pages_look_like_the_site_and_lead_back_to_the_chat(
    browser_orm, live_server_daphne, client, alice, sim_model, context, page
):
    from conversations.models import Conversation

    log_in(context, live_server_daphne, client, alice)
    page.goto(f"{live_server_daphne.url}/c/{uuid.uuid4()}")
    expect(page.get_by_role("heading", name="This chat isn't here", level=1)).to_be_visible()
    expect(page.get_by_text("It was deleted, or the link is wrong.")).to_be_visible()
    shoot(page, "error-404-chat", live_server_daphne)
    page.get_by_role("link", name="Back to chat").click()
    expect(page.get_by_role("textbox", name="Message")).to_be_visible()

    conversation = Conversation.objects.create(owner=alice, title="Trip")
    client.force_login(alice)
    url = client.post(f"/api/conversations/{conversation.public_id}/share").json()["share"]["url"]
    client.delete(f"/api/conversations/{conversation.public_id}/share")
    page.goto(live_server_daphne.url + url)
    expect(page.get_by_role("heading", name="Link turned off", level=1)).to_be_visible()
    expect(page.get_by_text("This link was turned off by its owner.")).to_be_visible()
    shoot(page, "error-share-turned-off", live_server_daphne, phone=False)

    page.goto(live_server_daphne.url + "/nowhere")
    expect(page.get_by_role("heading", name="Page not found", level=1)).to_be_visible()
    expect(page.get_by_role("link", name="Back to chat")).to_be_visible()


def test_a_shared_page_shows_the_images_in_order_and_math(
    browser_orm, live_server_daphne, client, alice, sim_model, context, page
):
    from tests.test_share import chat_with_images

    conversation, _ = chat_with_images(alice, "#d33", "#36c")
    answer = conversation.messages.get(role="assistant")
    answer.content = (
        "Two squares: red, then blue. Their areas add up: \\(2 \\times 160 \\cdot 120 = 38400\\)."
    )
    answer.save()
    client.force_login(alice)
    url = client.post(f"/api/conversations/{conversation.public_id}/share").json()["share"]["url"]
    page.goto(live_server_daphne.url + url)  # logged out: a stranger with the link
    first = page.get_by_role("img", name="Image 1 of 2 attached to the prompt")
    second = page.get_by_role("img", name="Image 2 of 2 attached to the prompt")
    expect(first).to_be_visible()
    expect(second).to_be_visible()
    assert page.evaluate("[...document.images].every((img) => img.complete && img.naturalWidth === 160)")
    assert first.bounding_box()["x"] < second.bounding_box()["x"], (
        "the images keep the order they were attached"
    )
    expect(page.locator(".katex")).to_have_count(1)
    shoot(page, "shared-images", live_server_daphne)


def test_on_a_phone_the_chat_settings_keep_save_in_view_and_the_message_box_shows_its_focus(
    browser, live_server_daphne, client, alice, sim_model, browser_orm
):
    context = browser.new_context(viewport={"width": 390, "height": 600})
    try:
        log_in(context, live_server_daphne, client, alice)
        page = open_chat(context.new_page(), live_server_daphne)
        box = page.get_by_role("textbox", name="Message")
        composer = page.locator(".chat-composer")
        unfocused = composer.evaluate("el => getComputedStyle(el).borderTopColor")
        box.focus()
        ring = composer.evaluate(
            "el => [getComputedStyle(el).borderTopColor, getComputedStyle(el).boxShadow]"
        )
        focus = page.evaluate("getComputedStyle(document.documentElement).getPropertyValue('--focus')")
        assert ring[0] != unfocused, "the box's border changes on focus"
        assert ring[0] == page.evaluate(
            "(c) => { const d = document.createElement('div'); d.style.color = c; document.body.append(d);"
            " const v = getComputedStyle(d).color; d.remove(); return v; }",
            focus.strip(),
        ), "the focused border is the focus colour"
        assert "0px 0px 0px 1px" in ring[1], "a 2px ring in all: border plus a 1px spread"
        page.screenshot(path=ARTIFACTS / "composer-focus-390.png")
        page.emulate_media(color_scheme="dark")
        page.wait_for_timeout(300)
        page.screenshot(path=ARTIFACTS / "composer-focus-390-dark.png")
        page.emulate_media(color_scheme="light")

        # Toasts appear just above the message box, however tall it grows (here as with a tray of images):
        # never over its controls.
        page.locator(".composer-attachments").evaluate(
            "el => { el.hidden = false; el.style.minHeight = '180px'; }"
        )
        page.wait_for_timeout(200)
        toasts_bottom, composer_top = page.evaluate(
            """() => [document.querySelector(".live-toasts").getBoundingClientRect().bottom,
                      document.querySelector(".chat-composer").getBoundingClientRect().top]"""
        )
        assert toasts_bottom <= composer_top, (toasts_bottom, composer_top)
        page.locator(".composer-attachments").evaluate("el => { el.hidden = true; el.style.minHeight = ''; }")

        page.get_by_role("button", name="Chat settings").click()
        dialog = page.get_by_role("dialog", name="Chat settings")
        expect(dialog).to_be_visible()
        save = dialog.get_by_role("button", name="Save")
        expect(save).to_be_in_viewport(ratio=1)
        page.wait_for_timeout(300)
        page.screenshot(path=ARTIFACTS / "chat-settings-390.png")
        dialog.evaluate("el => el.scrollTo(0, el.scrollHeight / 2)")
        expect(save).to_be_in_viewport(ratio=1)
        page.screenshot(path=ARTIFACTS / "chat-settings-390-scrolled.png")
    finally:
        context.close()
