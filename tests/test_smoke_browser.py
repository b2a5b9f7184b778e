"""A person's first minute on a fresh site, in Chromium against a live daphne: styled login, then the admin."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from tests.conftest import PASSWORD

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_the_login_page_is_styled_and_the_admin_works(page, live_server_daphne, admin_user):
    response = page.goto(f"{live_server_daphne.url}/")
    assert response is not None and response.ok
    assert page.url.startswith(f"{live_server_daphne.url}/accounts/login/")
    expect(page).to_have_title("Log in · Chatsite")
    # The stylesheet arrived through WhiteNoise: the primary button is not the browser's default grey.
    button = page.get_by_role("button", name="Log in")
    background = button.evaluate("el => getComputedStyle(el).backgroundColor")
    assert background not in ("rgb(239, 239, 239)", "rgba(0, 0, 0, 0)"), background

    page.get_by_label("Username").fill("admin")
    page.get_by_label("Password").fill(PASSWORD)
    button.click()
    page.wait_for_url(f"{live_server_daphne.url}/")

    page.goto(f"{live_server_daphne.url}/admin/")
    expect(page.get_by_role("heading", name="Site administration")).to_be_visible()
    page.get_by_role("link", name="Providers").click()
    expect(page.get_by_role("heading", name="Select provider to change")).to_be_visible()
