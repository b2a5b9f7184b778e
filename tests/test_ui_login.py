"""Logging in through the form, and a session that ends while the chat page is open."""

from __future__ import annotations

import os
import re

import pytest
from playwright.sync_api import expect

from tests.conftest import PASSWORD
from tests.ui import log_in, model_option, open_chat, send

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_a_person_logs_in_through_the_form_and_lands_on_the_chat(
    browser_orm, live_server_daphne, alice, sim_model, page
):
    page.goto(live_server_daphne.url + "/")
    expect(page).to_have_url(re.compile(r"/accounts/login/"))
    page.get_by_label("Username").fill("alice")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_role("textbox", name="Message")).to_be_focused()
    expect(page.get_by_role("status").filter(has_text="Connected")).to_be_attached()
    expect(page.get_by_role("button", name="New chat")).to_be_visible()
    expect(page.get_by_role("button", name="Attach image")).to_be_enabled()  # gpt-4o reads images
    model = page.get_by_role("combobox", name="Model")
    expect(model).to_have_text("GPT-4o")
    model.click()
    option = model_option(page, "GPT-4o")
    expect(option).to_have_attribute("aria-selected", "true")
    expect(option).to_have_accessible_name(re.compile(r"\bVision\b"))  # vision is marked
    page.keyboard.press("Escape")
    expect(option).to_be_hidden()


def test_a_session_ended_elsewhere_sends_the_page_to_the_login_form(
    browser_orm, live_server_daphne, client, alice, sim_model, context, page
):
    from django.contrib.sessions.models import Session

    log_in(context, live_server_daphne, client, alice)
    open_chat(page, live_server_daphne)
    Session.objects.all().delete()  # logged out on another device
    send(page, "Are you still there?")
    expect(page).to_have_url(re.compile(r"/accounts/login/\?next=(/|%2F)$"))


def test_a_locked_out_person_is_told_how_long_to_wait(browser_orm, live_server_daphne, alice, context, page):
    """Login throttling as a person meets it (issue 16, finding 1): after the failures, even the right
    password gets the lock-out message, on the same page. Screenshots (light, dark, phone) for review."""
    from axes.models import AccessAttempt
    from django.conf import settings

    page.goto(live_server_daphne.url + "/accounts/login/")
    for n in range(settings.CHAT_LOGIN_FAILURE_LIMIT - 1):
        page.get_by_label("Username").fill("alice")
        page.get_by_label("Password").fill(f"guess {n}")
        page.get_by_role("button", name="Log in").click()
        expect(page.get_by_role("alert")).to_contain_text("Incorrect username or password")
    page.get_by_label("Username").fill("alice")
    page.get_by_label("Password").fill(PASSWORD)
    with page.expect_response(lambda r: r.request.method == "POST") as answer:
        page.get_by_role("button", name="Log in").click()
    assert answer.value.status == 302  # below the limit the right password still works
    expect(page.get_by_role("textbox", name="Message")).to_be_visible()

    context.clear_cookies()
    page.goto(live_server_daphne.url + "/accounts/login/")
    for n in range(settings.CHAT_LOGIN_FAILURE_LIMIT):
        page.get_by_label("Username").fill("alice")
        page.get_by_label("Password").fill(f"guess {n}")
        page.get_by_role("button", name="Log in").click()
        expect(page.get_by_role("alert")).to_be_visible()
    page.get_by_label("Username").fill("alice")
    page.get_by_label("Password").fill(PASSWORD)
    with page.expect_response(lambda r: r.request.method == "POST") as answer:
        page.get_by_role("button", name="Log in").click()
    assert answer.value.status == 429
    alert = page.get_by_role("alert")
    expect(alert).to_have_text(re.compile(r"Too many attempts, try again in 1[45] minutes\."))
    expect(page.get_by_label("Username")).to_have_value("alice")
    assert AccessAttempt.objects.filter(username="alice").exists()
    shots = os.environ.get("CHAT_SCREENSHOTS")
    if shots:
        page.screenshot(path=f"{shots}/lockout-light.png", full_page=True)
        context.add_cookies([{"name": "theme", "value": "dark", "url": live_server_daphne.url}])
        page.reload()
        page.screenshot(path=f"{shots}/lockout-dark.png", full_page=True)
        page.set_viewport_size({"width": 390, "height": 844})
        page.screenshot(path=f"{shots}/lockout-phone.png", full_page=True)
