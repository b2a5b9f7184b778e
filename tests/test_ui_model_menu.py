"""The model menu with three providers serving GPT-4o (issue 18, issue 17 item 3): each model once, with its
name, description and badges; driven by pointer and by keyboard (arrows, type-ahead, Esc) through its roles
and names; the last model used is the next chat's default; the Details panel names the provider that served
the answer after OpenAI was switched off. Screenshots in light, dark and at 390 px (artifacts/)."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from tests.test_ui_look import choose_theme, serious
from tests.three_providers import OPENAI, OPENROUTER, PATHS, switch_off
from tests.ui import ARTIFACTS, axe_violations, composer, last_answer, log_in, model_option, open_chat, send

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

MENU = ["GPT-4 Turbo", "GPT-4o", "GPT-4o (2024-05-13)", "GPT-4o (2024-08-06)", "GPT-4o mini"]


@pytest.fixture
def chat_page(browser_orm, live_server_daphne, client, alice, three_providers, browser):
    def open_page(**context_args):
        context = browser.new_context(**{"viewport": {"width": 1280, "height": 800}, **context_args})
        log_in(context, live_server_daphne, client, alice)
        return context, open_chat(context.new_page(), live_server_daphne)

    return open_page


def menu_parts(page):
    return (
        page.get_by_role("combobox", name="Model"),
        page.get_by_role("listbox", name="Models"),
    )


def test_the_menu_lists_each_model_once_with_its_badges_and_works_by_keyboard(
    chat_page, upstream, live_server_daphne
):
    ARTIFACTS.mkdir(exist_ok=True)
    context, page = chat_page()
    try:
        combobox, listbox = menu_parts(page)
        expect(combobox).to_have_text("GPT-4o")  # the site default
        expect(combobox).to_have_attribute("aria-expanded", "false")
        expect(listbox).to_be_hidden()

        combobox.click()
        expect(listbox).to_be_visible()
        expect(combobox).to_have_attribute("aria-expanded", "true")
        options = listbox.get_by_role("option")
        expect(options).to_have_count(len(MENU))  # three providers, each model once
        for index, name in enumerate(MENU):
            expect(options.nth(index)).to_have_accessible_name(re.compile("^" + re.escape(name) + " ?,"))
        gpt4o = model_option(page, "GPT-4o")
        expect(gpt4o).to_have_count(1)
        expect(gpt4o).to_have_attribute("aria-selected", "true")
        expect(gpt4o).to_have_accessible_name(
            re.compile(
                r"^GPT-4o ?, OpenAI's flagship: fast, strong at most tasks, reads images\. Vision 128k context "
                r"\$2\.50 in · \$10 out per 1M tokens$"
            )
        )
        expect(model_option(page, "GPT-4 Turbo")).to_have_accessible_name(
            re.compile(r"Vision 128k context \$10 in · \$30 out per 1M tokens$")
        )
        choose_theme(page, "Light")
        combobox.click()
        expect(listbox).to_be_visible()
        page.screenshot(path=ARTIFACTS / "model-menu-1280x800-light.png")
        assert serious(axe_violations(page, live_server_daphne)) == []

        # Esc closes it and changes nothing; the answer streaming or not, nothing else hears that Esc.
        page.keyboard.press("Escape")
        expect(listbox).to_be_hidden()
        expect(combobox).to_be_focused()
        expect(combobox).to_have_text("GPT-4o")

        # Arrows open it on the chosen model and move; Enter chooses.
        page.keyboard.press("ArrowDown")
        expect(listbox).to_be_visible()
        expect(combobox).to_have_attribute("aria-activedescendant", gpt4o.get_attribute("id"))
        page.keyboard.press("ArrowUp")
        page.keyboard.press("Enter")
        expect(combobox).to_have_text("GPT-4 Turbo")
        expect(listbox).to_be_hidden()

        # Type-ahead: the letters typed pick the next model whose name starts with them.
        combobox.press_sequentially("gpt-4o m", delay=40)
        expect(listbox).to_be_visible()
        mini = model_option(page, "GPT-4o mini")
        expect(mini).to_have_accessible_name(re.compile(r"\$0\.15 in · \$0\.60 out per 1M tokens$"))
        expect(combobox).to_have_attribute("aria-activedescendant", mini.get_attribute("id"))
        page.keyboard.press("End")
        page.keyboard.press("Home")
        expect(combobox).to_have_attribute("aria-activedescendant", options.first.get_attribute("id"))
        combobox.press_sequentially("gpt-4o m", delay=40)
        page.keyboard.press("Enter")
        expect(combobox).to_have_text("GPT-4o mini")

        # Sent with GPT-4o mini, on OpenAI (first by priority).
        send(page, "Hello from the menu.")
        expect(last_answer(page)).to_contain_text("upstream simulator", timeout=15_000)
        request = upstream.chat_requests[0]  # the answer's (the title's follows it)
        assert (request.path, request.json["model"]) == (PATHS[OPENAI], "gpt-4o-mini")

        choose_theme(page, "Dark")
        combobox.click()
        expect(listbox).to_be_visible()
        page.screenshot(path=ARTIFACTS / "model-menu-1280x800-dark.png")
        assert serious(axe_violations(page, live_server_daphne)) == []
        # The highlighted option's badges stay chips: in dark their border is the highlight's own colour.
        option_bg, badge_bg = listbox.locator(".model-option.is-active").evaluate(
            """option => [option, option.querySelector(".model-badge:not(.model-badge-vision)")]
                .map(el => getComputedStyle(el).backgroundColor)"""
        )
        assert badge_bg not in (option_bg, "rgba(0, 0, 0, 0)")
        page.keyboard.press("Escape")
    finally:
        context.close()

    # The last model used is remembered: a new page starts a new chat on GPT-4o mini.
    context, page = chat_page()
    try:
        combobox, _ = menu_parts(page)
        expect(combobox).to_have_text("GPT-4o mini")
    finally:
        context.close()


def test_after_openai_is_switched_off_the_details_name_the_provider_that_answered(chat_page, upstream):
    switch_off(OPENAI)
    context, page = chat_page()
    try:
        combobox, _ = menu_parts(page)
        expect(combobox).to_have_text("GPT-4o")
        send(page, "Who answers now?")
        expect(last_answer(page)).to_contain_text("upstream simulator", timeout=15_000)
        last_answer(page).get_by_role("button", name="Details").click()
        details = last_answer(page).locator("dl")
        expect(details).to_contain_text("ModelGPT-4o (gpt-4o)")  # the menu's name and the exact id
        expect(details).to_contain_text(f"Provider{OPENROUTER}")
        page.mouse.move(0, 0)
        page.screenshot(path=ARTIFACTS / "model-details-provider-1280x800.png")
    finally:
        context.close()


def test_on_a_phone_the_menu_fits_the_screen(chat_page):
    context, page = chat_page(
        viewport={"width": 390, "height": 844}, device_scale_factor=2, is_mobile=True, has_touch=True
    )
    try:
        combobox, listbox = menu_parts(page)
        composer(page).click()
        combobox.tap()
        expect(listbox).to_be_visible()
        box = listbox.bounding_box()
        assert box["x"] >= 0 and box["x"] + box["width"] <= 390, box
        assert box["y"] >= 0, box
        assert page.evaluate("document.documentElement.scrollWidth") <= 390, "nothing sticks out sideways"
        page.screenshot(path=ARTIFACTS / "model-menu-390x844.png")
        model_option(page, "GPT-4o mini").tap()
        expect(combobox).to_have_text("GPT-4o mini")
        expect(listbox).to_be_hidden()
    finally:
        context.close()
