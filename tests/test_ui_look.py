"""How the chat page looks and reads: screenshots for people to check (artifacts/), an axe-core scan in both
themes, the phone layout's drawer, and the keyboard shortcuts."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from tests.ui import ARTIFACTS, axe_violations, composer, log_in, open_chat, seed_showcase

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def showcase(browser_orm, live_server_daphne, client, alice, sim_model):
    return seed_showcase(alice, sim_model)


def open_showcase(browser, live_server, client, user, conversation, **context_args):
    context = browser.new_context(**context_args)
    log_in(context, live_server, client, user)
    page = open_chat(context.new_page(), live_server, f"/c/{conversation.public_id}")
    expect(page.locator("article.msg-assistant .code-block").last).to_be_visible()
    return context, page


def choose_theme(page, theme: str) -> None:
    # Playwright gives <summary> no role; the account menu's summary reads "alice, account menu".
    page.locator("summary").filter(has_text="account menu").click()
    page.get_by_role("button", name=theme, exact=True).click()
    page.keyboard.press("Escape")
    expect(page.locator("html")).to_have_attribute("data-theme", theme.lower())
    page.evaluate("document.activeElement.blur()")


def serious(violations):
    return [v for v in violations if v["impact"] in ("serious", "critical")]


def test_screenshots_and_accessibility_in_both_themes(browser, live_server_daphne, client, alice, showcase):
    ARTIFACTS.mkdir(exist_ok=True)
    context, page = open_showcase(
        browser, live_server_daphne, client, alice, showcase, viewport={"width": 1280, "height": 800}
    )
    try:
        expect(page.get_by_role("link", name="Trip ideas for a weekend in Lisbon")).to_be_visible()
        choose_theme(page, "Light")
        page.get_by_role("button", name="Details").last.click()  # show an answer's numbers once
        expect(page.get_by_text("412 in · 187 out")).to_be_visible()
        page.get_by_role("button", name="Details").last.click()
        page.mouse.move(0, 0)
        page.screenshot(path=ARTIFACTS / "chat-1280x800-light.png")
        assert serious(axe_violations(page, live_server_daphne)) == []

        choose_theme(page, "Dark")
        page.mouse.move(0, 0)
        page.screenshot(path=ARTIFACTS / "chat-1280x800-dark.png")
        assert serious(axe_violations(page, live_server_daphne)) == []
    finally:
        context.close()


def test_on_a_phone_the_sidebar_is_a_drawer(browser, live_server_daphne, client, alice, showcase):
    context, page = open_showcase(
        browser,
        live_server_daphne,
        client,
        alice,
        showcase,
        viewport={"width": 390, "height": 844},
        device_scale_factor=2,
        is_mobile=True,
        has_touch=True,
    )
    try:
        sidebar = page.get_by_role("complementary", name="Chats")
        expect(sidebar).to_be_hidden()
        assert page.evaluate("document.documentElement.scrollWidth") <= 390, "nothing sticks out sideways"
        page.screenshot(path=ARTIFACTS / "chat-390x844.png")
        assert serious(axe_violations(page, live_server_daphne)) == []

        page.get_by_role("button", name="Open sidebar").click()
        expect(sidebar).to_be_visible()
        page.wait_for_timeout(300)  # the slide-in
        page.screenshot(path=ARTIFACTS / "chat-390x844-drawer.png")
        page.get_by_role("link", name="Fix a flaky pytest fixture").click()
        expect(sidebar).to_be_hidden()
        expect(page.get_by_role("heading", name="Fix a flaky pytest fixture", level=1)).to_be_visible()
    finally:
        context.close()


def test_keyboard_shortcuts_are_listed_and_work(
    browser_orm, live_server_daphne, client, alice, sim_model, context, page
):
    log_in(context, live_server_daphne, client, alice)
    open_chat(page, live_server_daphne)
    page.get_by_role("heading", level=1).click()  # focus out of the message box
    page.keyboard.press("Control+/")
    help_dialog = page.get_by_role("dialog", name="Keyboard shortcuts")
    expect(help_dialog).to_be_visible()
    for action in ("New chat", "Focus the message box", "Stop the answer", "Show or hide the sidebar"):
        expect(help_dialog.get_by_text(action, exact=True)).to_be_visible()
    page.keyboard.press("Escape")
    expect(help_dialog).to_be_hidden()

    sidebar = page.get_by_role("complementary", name="Chats")
    expect(sidebar).to_be_visible()
    page.keyboard.press("Control+Shift+S")
    expect(sidebar).to_be_hidden()
    page.keyboard.press("Control+Shift+S")
    expect(sidebar).to_be_visible()

    page.get_by_role("heading", level=1).click()
    page.keyboard.press("Shift+Escape")
    expect(composer(page)).to_be_focused()
    page.keyboard.type("first line")
    page.keyboard.press("Shift+Enter")
    page.keyboard.type("second line")
    expect(composer(page)).to_have_value("first line\nsecond line")  # a new line, nothing sent
    expect(page.locator("article.msg")).to_have_count(0)
