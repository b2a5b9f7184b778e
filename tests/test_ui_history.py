"""Conversation history in a real browser: importing ChatGPT's export and switching its branches, search
results with snippets that open the chat at the message, delete with Undo, a share link, long chats paging in
older turns. Screenshots go to artifacts/ (history-*.png) for people to check."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from playwright.sync_api import expect

from tests.ui import ARTIFACTS, axe_violations, log_in, open_chat, seed_showcase

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

CHATGPT_SAMPLE = Path(__file__).parent / "data" / "chatgpt_conversations.json"


def serious(violations):
    return [v for v in violations if v["impact"] in ("serious", "critical")]


def set_theme(page, theme: str) -> None:
    page.evaluate(f"document.documentElement.dataset.theme = '{theme}'")


@pytest.fixture
def signed_in(browser_orm, live_server_daphne, client, alice, sim_model, context, page):
    log_in(context, live_server_daphne, client, alice)
    page.set_default_timeout(15_000)
    return page


def test_it_imports_chatgpts_export_and_its_branches_can_be_switched(signed_in, live_server_daphne):
    ARTIFACTS.mkdir(exist_ok=True)
    page = signed_in
    page.set_viewport_size({"width": 1000, "height": 760})
    page.goto(live_server_daphne.url + "/history/")
    page.get_by_label("Choose a file").set_input_files(CHATGPT_SAMPLE)
    page.get_by_role("button", name="Import").click()
    status = page.get_by_role("status")
    expect(status).to_contain_text("Imported 2 conversations", timeout=20_000)
    expect(status).to_contain_text("from ChatGPT")
    expect(status).to_contain_text("Left out: results from tools (searches, code output, plugins): 1")
    expect(status).not_to_contain_text("empty")  # invisible scaffolding isn't reported
    expect(page.locator(".import-progress")).to_be_hidden()  # the bar shows only while it runs
    page.screenshot(path=ARTIFACTS / "history-import-light.png", full_page=True)
    assert serious(axe_violations(page, live_server_daphne)) == []
    set_theme(page, "dark")
    page.screenshot(path=ARTIFACTS / "history-import-dark.png", full_page=True)
    page.set_viewport_size({"width": 390, "height": 800})
    page.screenshot(path=ARTIFACTS / "history-import-390.png", full_page=True)
    page.set_viewport_size({"width": 1000, "height": 760})
    # Importing the same file again adds nothing and says so.
    page.get_by_label("Choose a file").set_input_files(CHATGPT_SAMPLE)
    page.get_by_role("button", name="Import").click()
    expect(status).to_contain_text("already here: 2 conversations", timeout=20_000)

    open_chat(page, live_server_daphne)
    nav = page.get_by_role("navigation", name="Conversations")
    nav.get_by_role("link", name="Haiku about autumn").click()
    first_answer = page.locator("article.msg-assistant").last
    expect(first_answer).to_contain_text("Crimson leaves")  # the branch that was current in ChatGPT
    versions = page.get_by_role("group", name="Versions").first
    expect(versions).to_contain_text("1/2")
    versions.get_by_role("button", name="Next version").click()
    expect(page.locator("article.msg-assistant").last).to_contain_text("Cold rain on maples")
    expect(page.get_by_role("group", name="Versions").first).to_contain_text("2/2")

    nav.get_by_role("link", name="Packing for Iceland").click()
    expect(page.locator("article.msg-user").last).to_contain_text("[image not included in export]")
    expect(page.get_by_role("group", name="Versions").first).to_contain_text("1/2")


@pytest.fixture
def showcase(browser_orm, alice, sim_model):
    return seed_showcase(alice, sim_model)


def test_search_shows_snippets_and_opens_the_chat_at_the_message(signed_in, live_server_daphne, showcase):
    page = open_chat(signed_in, live_server_daphne)
    page.get_by_role("searchbox", name="Search chats").fill("polars")
    nav = page.get_by_role("navigation", name="Conversations")
    result = nav.get_by_role("link", name=re.compile("Reading CSV files in Python"))
    expect(result).to_be_visible()
    expect(result.locator("mark").first).to_have_text(re.compile("polars", re.I))
    # An answer's snippet reads as plain text: "lazy until you `collect()`" shows no code marks.
    page.get_by_role("searchbox", name="Search chats").fill("collect")
    expect(result.locator("mark").first).to_have_text(re.compile("collect", re.I))
    expect(result).to_contain_text("lazy until you collect()")
    assert "`" not in result.inner_text()
    page.get_by_role("searchbox", name="Search chats").fill("polars")
    expect(result.locator("mark").first).to_have_text(re.compile("polars", re.I))
    page.screenshot(path=ARTIFACTS / "history-search-light.png")
    set_theme(page, "dark")
    page.screenshot(path=ARTIFACTS / "history-search-dark.png")
    set_theme(page, "light")
    result.click()
    expect(page).to_have_url(re.compile(r"/c/[0-9a-f-]{36}$"))
    flashed = page.locator("article.msg.msg-flash")
    expect(flashed).to_contain_text("Polars")


def test_delete_can_be_undone(signed_in, live_server_daphne, showcase):
    page = open_chat(signed_in, live_server_daphne)
    nav = page.get_by_role("navigation", name="Conversations")
    nav.get_by_role("link", name="Fix a flaky pytest fixture").hover()
    nav.get_by_role("button", name="Options for Fix a flaky pytest fixture").click()
    page.get_by_role("menuitem", name="Delete").click()
    page.get_by_role("dialog", name="Delete chat?").get_by_role("button", name="Delete").click()
    expect(nav.get_by_role("link", name="Fix a flaky pytest fixture")).to_have_count(0)
    page.get_by_role("button", name="Undo").click()
    expect(nav.get_by_role("link", name="Fix a flaky pytest fixture")).to_be_visible()
    page.reload()
    expect(nav.get_by_role("link", name="Fix a flaky pytest fixture")).to_be_visible()


def test_a_share_link_opens_logged_out(signed_in, live_server_daphne, showcase, browser):
    page = open_chat(signed_in, live_server_daphne)
    nav = page.get_by_role("navigation", name="Conversations")
    nav.get_by_role("link", name="Reading CSV files in Python").hover()
    nav.get_by_role("button", name="Options for Reading CSV files in Python").click()
    page.get_by_role("menuitem", name="Share…").click()
    dialog = page.get_by_role("dialog", name="Share chat")
    dialog.get_by_role("button", name="Create link").click()
    link = dialog.get_by_role("textbox", name="Share link")
    expect(link).to_have_value(re.compile(r"/share/[\w-]{32}$"))
    page.screenshot(path=ARTIFACTS / "history-share-dialog.png")
    url = link.input_value()

    for name, viewport, theme in (
        ("light", {"width": 1100, "height": 800}, "light"),
        ("dark", {"width": 1100, "height": 800}, "dark"),
        ("mobile", {"width": 390, "height": 844}, "light"),
    ):
        anonymous = browser.new_context(viewport=viewport, color_scheme=theme)
        shared = anonymous.new_page()
        response = shared.goto(url)
        assert response.status == 200 and response.headers["x-robots-tag"].startswith("noindex")
        expect(shared.get_by_role("heading", name="Reading CSV files in Python", level=1)).to_be_visible()
        expect(shared.get_by_text("alice")).to_have_count(0)
        shared.screenshot(path=ARTIFACTS / f"history-share-{name}.png", full_page=name != "mobile")
        if name == "light":
            assert serious(axe_violations(shared, live_server_daphne)) == []
        anonymous.close()

    dialog.get_by_role("button", name="Stop sharing").click()
    expect(dialog.get_by_role("button", name="Create link")).to_be_visible()
    anonymous = browser.new_context()
    assert anonymous.new_page().goto(url).status == 404
    anonymous.close()


def test_a_long_chat_loads_older_turns_when_scrolled_up(signed_in, live_server_daphne, alice):
    from conversations.models import Conversation, Message

    conversation = Conversation.objects.create(owner=alice, title="Very long chat")
    parent = None
    for i in range(450):
        parent = Message(
            conversation=conversation,
            parent=parent,
            role="user" if i % 2 == 0 else "assistant",
            content=f"Turn {i}",
        )
        parent.save()
    Conversation.objects.filter(pk=conversation.pk).update(current_leaf=parent)
    page = open_chat(signed_in, live_server_daphne, f"/c/{conversation.public_id}")
    messages = page.locator("article.msg")
    expect(messages.last).to_contain_text("Turn 449")
    expect(messages).to_have_count(200)  # CHAT_HISTORY_PAGE_MESSAGES
    for _ in range(10):
        page.locator("#thread").evaluate("el => el.scrollTo(0, 0)")
        page.wait_for_timeout(250)
        if messages.count() == 450:
            break
    expect(messages).to_have_count(450)
    expect(messages.first).to_contain_text("Turn 0")
