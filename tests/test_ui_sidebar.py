"""The sidebar in a real browser: groups, paging on scroll, search, and rename / pin / archive / delete."""

from __future__ import annotations

import datetime as dt
import re

import pytest
from django.utils import timezone
from playwright.sync_api import expect

from tests.ui import log_in, open_chat

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def many_chats(browser_orm, alice, charlie):
    """60 chats of alice's, an hour apart (more than one page), the newest today, and one of charlie's."""
    from conversations.models import Conversation

    now = timezone.localtime()
    # Halfway between midnight and now: still today however soon after midnight the test runs.
    newest = now - (now - now.replace(hour=0, minute=0, second=0, microsecond=0)) / 2
    rows = Conversation.objects.bulk_create(
        [Conversation(owner=alice, title=f"Chat number {i}") for i in range(1, 61)]
    )
    for i, row in enumerate(rows, start=1):
        Conversation.objects.filter(pk=row.pk).update(updated_at=newest - dt.timedelta(hours=i - 1))
    Conversation.objects.create(owner=charlie, title="Charlie's secret")
    return rows


@pytest.fixture
def chat(browser_orm, live_server_daphne, client, alice, sim_model, many_chats, context, page):
    log_in(context, live_server_daphne, client, alice)
    return open_chat(page, live_server_daphne)


def conversations(page):
    return page.get_by_role("navigation", name="Conversations")


def test_it_groups_by_day_and_loads_more_on_scroll(chat):
    page = chat
    nav = conversations(page)
    expect(nav.get_by_role("heading", name="Today")).to_be_visible()
    expect(nav.get_by_role("link", name="Chat number 1", exact=True)).to_be_visible()
    for heading in ("Yesterday", "Previous 7 days"):
        expect(nav.get_by_role("heading", name=heading)).to_be_attached()
    expect(nav.get_by_role("link", name="Chat number 60", exact=True)).to_have_count(0)  # page two
    nav.get_by_role("link", name="Chat number 50", exact=True).scroll_into_view_if_needed()
    expect(nav.get_by_role("link", name="Chat number 60", exact=True)).to_be_attached()
    expect(nav.get_by_role("link")).to_have_count(60)
    expect(nav.get_by_text("Charlie's secret")).to_have_count(0)


def test_search_finds_chats_by_title(chat):
    page = chat
    page.get_by_role("searchbox", name="Search chats").fill("number 42")
    nav = conversations(page)
    expect(nav.get_by_role("link")).to_have_count(1)
    expect(nav.get_by_role("link", name="Chat number 42")).to_be_visible()
    page.get_by_role("searchbox", name="Search chats").fill("Charlie")
    expect(nav.get_by_text("No chats match your search.")).to_be_visible()


def test_rename_pin_archive_and_delete(chat):
    page = chat
    nav = conversations(page)

    nav.get_by_role("link", name="Chat number 3", exact=True).hover()
    nav.get_by_role("button", name="Options for Chat number 3", exact=True).click()
    page.get_by_role("menuitem", name="Rename").click()
    title = nav.get_by_role("textbox", name="Chat title")
    title.fill("Holiday plans")
    title.press("Enter")
    expect(nav.get_by_role("link", name="Holiday plans")).to_be_visible()

    nav.get_by_role("button", name="Options for Holiday plans").click()
    page.get_by_role("menuitem", name="Pin").click()
    pinned = nav.get_by_role("region", name="Pinned")
    expect(pinned.get_by_role("link", name="Holiday plans")).to_be_visible()

    nav.get_by_role("button", name="Options for Chat number 2", exact=True).click()
    page.get_by_role("menuitem", name="Archive").click()
    expect(nav.get_by_role("link", name="Chat number 2", exact=True)).to_have_count(0)
    page.get_by_role("button", name="Archived chats").click()
    expect(nav.get_by_role("link", name="Chat number 2", exact=True)).to_be_visible()
    expect(nav.get_by_role("link")).to_have_count(1)
    page.get_by_role("button", name="Archived chats").click()

    nav.get_by_role("link", name="Chat number 1", exact=True).click()
    expect(page).to_have_url(re.compile(r"/c/[0-9a-f-]{36}$"))
    expect(page.get_by_role("heading", name="Chat number 1", level=1)).to_be_visible()
    nav.get_by_role("button", name="Options for Chat number 1", exact=True).click()
    page.get_by_role("menuitem", name="Delete").click()
    dialog = page.get_by_role("dialog", name="Delete chat?")
    dialog.get_by_role("button", name="Delete").click()
    expect(nav.get_by_role("link", name="Chat number 1", exact=True)).to_have_count(0)
    expect(page.get_by_role("heading", name="New chat", level=1)).to_be_visible()

    page.reload()
    expect(nav.get_by_role("region", name="Pinned").get_by_role("link", name="Holiday plans")).to_be_visible()
    expect(nav.get_by_role("link", name="Chat number 1", exact=True)).to_have_count(0)
    expect(nav.get_by_role("link", name="Chat number 2", exact=True)).to_have_count(0)
