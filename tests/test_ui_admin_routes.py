"""The admin side of issue 18 in Chromium: the provider page says where the environment holds other values
than the database (which wins), and the admin index says when no enabled provider serves the default model.
Screenshots in artifacts/."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from conversations.models import Provider
from conversations.services import model_choices
from tests.conftest import session_cookie_for
from tests.live import DaphneServer
from tests.three_providers import AIMLAPI, OPENAI, OPENROUTER, switch_off
from tests.ui import ARTIFACTS

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def seeded_daphne(django_db_setup, tmp_path, seed_env):
    """A daphne started with the seed environment: the admin pages compare the database with it."""
    server = DaphneServer(tmp_path, seed_env)
    server.start()
    yield server
    server.stop()


def test_the_provider_page_and_the_admin_index_tell_the_admin(
    browser_orm, page, seeded_daphne, admin_user, client, upstream, three_providers
):
    live_server_daphne = seeded_daphne
    ARTIFACTS.mkdir(exist_ok=True)
    page.context.add_cookies(
        [
            {
                "name": "sessionid",
                "value": session_cookie_for(client, admin_user),
                "url": live_server_daphne.url,
            }
        ]
    )
    openrouter = three_providers[OPENROUTER]
    Provider.objects.filter(pk=openrouter.pk).update(enabled=False, priority=5)
    model_choices.catalogue_changed()  # update() sends no signal
    page.goto(f"{live_server_daphne.url}/admin/conversations/provider/{openrouter.pk}/change/")
    note = page.get_by_role("note", name="The environment says otherwise")
    expect(note).to_be_visible()
    expect(note.get_by_role("row", name="Priority")).to_contain_text("5")
    expect(note.get_by_role("row", name="Priority")).to_contain_text("20")
    expect(note.get_by_role("row", name="Enabled")).to_contain_text("off")
    page.screenshot(path=ARTIFACTS / "admin-provider-env-differs.png", full_page=True)

    for name in (OPENAI, AIMLAPI):
        switch_off(name)
    local = Provider.objects.create(name="Local", kind="openai_compatible", base_url=upstream.base_url)
    local.models.create(model_id="llama3", canonical_id="llama3", display_name="Llama 3")
    page.goto(f"{live_server_daphne.url}/admin/")
    alert = page.get_by_role("alert")
    expect(alert).to_contain_text("The default model gpt-4o is served by no enabled provider")
    expect(alert.get_by_role("link", name="Site settings")).to_be_visible()
    page.screenshot(path=ARTIFACTS / "admin-index-default-unserved.png")
