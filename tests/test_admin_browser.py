"""The admin in Chromium against a live daphne: an administrator adds a provider pointing at the simulator,
tests it, syncs its models, and a user then chats with one of them; and the usage dashboard as people see it.
Screenshots go to artifacts/ (git-ignored)."""

from __future__ import annotations

import datetime as dt
import re
from decimal import Decimal
from pathlib import Path

import pytest
from django.utils import timezone
from playwright.sync_api import Page, expect

from conversations.models import ChatModel, PersonalKey, Provider, UserQuota
from conversations.testing.upstream import Reply
from tests.conftest import PASSWORD, session_cookie_for
from tests.live import DaphneServer
from tests.usage_seed import answer
from tests.wsclient import ChatSocket

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

ARTIFACTS = Path(__file__).resolve().parent.parent / "artifacts"
SECRET = "sk-browser-typed-secret-42Ab"


def shot(page: Page, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def admin_login(page: Page, base: str) -> None:
    page.goto(f"{base}/admin/login/")
    page.get_by_label("Username:").fill("admin")
    page.get_by_label("Password:").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_role("heading", name="Site administration")).to_be_visible()


def test_an_admin_connects_the_simulator_and_a_user_chats_with_a_synced_model(
    browser_orm, page, live_server_daphne, admin_user, alice, client, upstream
):
    base = live_server_daphne.url
    admin_login(page, base)
    expect(page.get_by_role("link", name="Usage dashboard")).to_be_visible()

    page.goto(f"{base}/admin/conversations/provider/add/")
    page.get_by_label("Name:", exact=True).fill("Simulator")
    page.get_by_label("Kind:").select_option("openai_compatible")
    page.get_by_label("Base url:").fill(upstream.base_url)
    page.get_by_label("API key:").fill(SECRET)
    page.get_by_role("button", name="Save and continue editing").click()
    expect(page.locator(".messagelist")).to_contain_text("was added successfully")
    expect(page.get_by_text("…42Ab")).to_be_visible()

    page.get_by_role("button", name="Test connection").click()
    success = page.locator(".messagelist .success")
    expect(success).to_contain_text("Simulator works: 10 models listed in ")
    expect(success).to_contain_text("gpt-4o-mini answered one token in ")
    shot(page, "admin-provider-test-connection")

    page.get_by_role("button", name="Sync models").click()
    expect(page.locator(".messagelist .success")).to_contain_text("10 new models imported; 5 of them enabled")
    shot(page, "admin-provider-synced")
    provider = Provider.objects.get(name="Simulator")
    page.goto(f"{base}/admin/conversations/chatmodel/?provider__id__exact={provider.pk}")
    # The link to a model's page names its provider and fallback order too: "gpt-4o-mini Simulator (100)".
    expect(page.get_by_role("link", name=re.compile(r"^gpt-4o-mini Simulator \(\d+\)$"))).to_be_visible()
    shot(page, "admin-models")

    # A normal user chats with one of the imported models, through the websocket.
    mini = ChatModel.objects.get(provider=provider, model_id="gpt-4o-mini")
    upstream.default = Reply(text="Hello from a synced model.")
    with ChatSocket(live_server_daphne, session_cookie_for(client, alice)) as sock:
        sock.send(type="send", text="Hi there", model=mini.pk, ref="t1")
        ack = sock.wait_type("ack")
        final = sock.wait_end(ack["assistant_message"]["id"])
    assert (final["status"], final["content"], final["provider"]) == (
        "complete",
        "Hello from a synced model.",
        "Simulator",
    )
    answers = [
        r for r in upstream.requests if r.path.endswith("/chat/completions") and r.model == "gpt-4o-mini"
    ]
    assert answers[0].headers["authorization"] == f"Bearer {SECRET}"

    page.goto(f"{base}/admin/usage/")
    expect(page.locator("#total-answers")).to_have_text("1")
    page.goto(f"{base}/admin/conversations/auditentry/")
    expect(page.get_by_role("cell", name="provider.synced")).to_be_visible()
    shot(page, "admin-audit-log")
    for html in (page.content(), live_server_daphne.log()):
        assert SECRET not in html


def test_the_usage_dashboard_as_an_admin_sees_it(
    browser_orm, page, live_server_daphne, admin_user, alice, charlie
):
    now = timezone.localtime()
    # Halfway between midnight and now, so each of the 30 days' answers falls on its own calendar day of the
    # dashboard's 30-day window however soon after midnight the test runs.
    today = now - (now - now.replace(hour=0, minute=0, second=0, microsecond=0)) / 2
    for day in range(30):
        at = today - dt.timedelta(days=day)
        for user, model, provider, scale in (
            (alice, "gpt-4o", "OpenAI", 3),
            (charlie, "gpt-4o-mini", "OpenRouter", 1),
            (alice, "gpt-4-turbo", "OpenAI", 2),
        ):
            n = (day * 7 + scale * 13) % 9 + 1
            answer(
                user, model=model, provider=provider, at=at, cost=str(Decimal("0.013") * n * scale),
                prompt=900 * n, completion=250 * n * scale, ttft_ms=250 + 40 * n, duration_ms=2500 + 300 * n,
                status="error" if (provider == "OpenRouter" and day in (4, 11)) else "complete",
            )  # fmt: skip
    charlie.is_active, charlie.last_login = False, None  # a sign-up waiting for approval
    charlie.save()
    admin_login(page, live_server_daphne.url)
    # The index: sign-ups waiting (linked to the filter), and links that keep their words whole, phone too.
    expect(page.get_by_role("link", name="1 awaiting approval")).to_have_attribute(
        "href", "/admin/auth/user/?status=pending"
    )
    for width in (1280, 390):
        page.set_viewport_size({"width": width, "height": 800})
        link = page.get_by_role("link", name="Usage dashboard")
        assert link.bounding_box()["height"] < 30, f"the link wraps at {width} px"
        assert page.evaluate("document.documentElement.scrollWidth") <= width, (
            f"sideways scroll at {width} px"
        )
        shot(page, f"admin-index-{width}")
    page.set_viewport_size({"width": 1280, "height": 800})
    # The admin follows the chat's theme (the `theme` cookie the chat's account menu sets).
    page.context.add_cookies([{"name": "theme", "value": "dark", "url": live_server_daphne.url}])
    page.reload()
    expect(page.locator("html")).to_have_attribute("data-theme", "dark")
    background = page.evaluate("getComputedStyle(document.body).backgroundColor")
    assert background not in ("rgb(255, 255, 255)", "rgba(0, 0, 0, 0)"), background
    shot(page, "admin-index-dark")
    page.context.clear_cookies(name="theme")
    page.reload()
    expect(page.locator("html")).to_have_attribute("data-theme", "auto")
    page.get_by_role("link", name="1 awaiting approval").click()
    expect(page.get_by_role("link", name="charlie")).to_be_visible()
    page.go_back()
    page.get_by_role("link", name="Usage dashboard").click()
    expect(page.get_by_role("heading", name="Provider uptime")).to_be_visible()
    expect(page.locator("#total-answers")).to_have_text("90")
    expect(page.locator("#models-table")).to_contain_text("gpt-4-turbo")
    shot(page, "admin-usage-dashboard")
    with page.expect_download() as download:
        page.get_by_role("link", name="Export CSV").click()
    assert download.value.suggested_filename.startswith("usage-")

    page.goto(f"{live_server_daphne.url}/admin/auth/user/")
    expect(page.get_by_role("columnheader", name="Cost this month")).to_be_visible()
    shot(page, "admin-users")
    page.get_by_role("link", name="alice").click()
    expect(page.get_by_text("Empty: the site default").first).to_be_visible()
    shot(page, "admin-user-quota")


@pytest.fixture(scope="module")
def byok_daphne(django_db_setup, tmp_path_factory):
    """A daphne with personal keys on (the shared live server runs with the default: off)."""
    server = DaphneServer(
        tmp_path_factory.mktemp("byok-browser"), extra_env={"CHAT_ALLOW_PERSONAL_KEYS": "true"}
    )
    server.start()
    yield server
    server.stop()


def test_a_user_brings_their_own_key_on_the_settings_page(browser_orm, byok_daphne, page, alice, sim_model):
    UserQuota.objects.create(user=alice, monthly_budget=Decimal("5.00"), daily_tokens=200_000)
    answer(alice, cost="3.40", prompt=60_000, completion=12_000)
    base = byok_daphne.url
    page.goto(f"{base}/accounts/login/")
    page.get_by_label("Username").fill("alice")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(f"{base}/")
    page.goto(f"{base}/settings/")
    expect(page.get_by_text("This month: $3.40 of $5.00")).to_be_visible()
    page.get_by_label("Key for Simulator").fill("sk-alice-browser-key-Ab12")
    page.get_by_role("button", name="Save key for Simulator").click()
    expect(page.get_by_text("Your key was saved.")).to_be_visible()
    expect(page.get_by_text("Your key: …Ab12")).to_be_visible()
    assert "sk-alice-browser-key-Ab12" not in page.content()
    shot(page, "settings-personal-key")
    assert PersonalKey.objects.get(user=alice).api_key == "sk-alice-browser-key-Ab12"
    # What the README says: answers on your own key don't count toward the site's limits.
    expect(page.get_by_text("they don't count toward this site's limits")).to_be_visible()


def test_the_details_of_an_answer_on_your_own_key_say_who_paid(
    browser_orm, byok_daphne, page, alice, sim_model, upstream
):
    PersonalKey.objects.create(user=alice, provider=sim_model.provider, api_key="sk-alice-own-Zz12")
    base = byok_daphne.url
    page.goto(f"{base}/accounts/login/")
    page.get_by_label("Username").fill("alice")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(f"{base}/")
    upstream.enqueue(Reply(text="Paid by you."), Reply(text="Own key"))
    box = page.get_by_role("textbox", name="Message")
    box.fill("Who pays?")
    box.press("Enter")
    expect(page.locator("article.msg-assistant .markdown")).to_have_text("Paid by you.")
    page.get_by_role("button", name="Details").last.click()
    expect(page.get_by_text("Paid with your own key")).to_be_visible()
    assert upstream.chat_requests[0].headers["authorization"] == "Bearer sk-alice-own-Zz12"
    shot(page, "details-own-key")


# --- Change lists fit a laptop --------------------------------------------------------------------------------

CHANGE_LISTS = [
    "conversations/provider", "conversations/chatmodel", "conversations/personalkey", "auth/user",
    "auth/group", "conversations/conversation", "conversations/message", "conversations/attachment",
    "conversations/auditentry",
]  # fmt: skip
LONG = "an-unusually-long-name-that-an-admin-typed-without-spaces-0123456789"


def seed_wide_rows(alice) -> None:
    """Rows with long names and large numbers in every change list, the worst case for their widths."""
    from django.contrib.auth.models import Group

    from conversations.models import Attachment, AuditEntry
    from conversations.services import audit

    alice.username = f"alice-{LONG}"[:150]
    alice.email = f"{LONG}@a-very-long-domain-name.example.com"
    alice.save()
    provider = Provider(
        name=f"Provider {LONG}"[:100],
        kind=Provider.Kind.OPENAI_COMPATIBLE,
        base_url=f"https://{LONG}.gateway.example.com/api/v1/openai-compatible",
        priority=12345,
    )
    provider.api_key = "sk-wide-rows-0000-Zz99"
    provider.save()
    group = Group.objects.create(name=f"Group {LONG}")
    model = ChatModel.objects.create(
        provider=provider, model_id=f"vendor/{LONG}", canonical_id=f"vendor/{LONG}", display_name=f"Model {LONG}",
        context_window=2_000_000, input_price=Decimal("1234.5678"), output_price=Decimal("98765.4321"),
    )  # fmt: skip
    model.allowed_groups.add(group)
    PersonalKey.objects.create(user=alice, provider=provider, api_key="sk-alice-wide-Ab12")
    for _ in range(3):
        message = answer(
            alice, cost="12345.678901", prompt=987_654_321, completion=123_456_789, model=f"vendor/{LONG}",
            provider=provider.name,
        )  # fmt: skip
    message.conversation.title = f"A conversation about {LONG} and more"
    message.conversation.model = model
    message.conversation.save()
    Attachment.objects.create(
        owner=alice, message=message, mime="image/webp", width=12_000, height=9_000, bytes=2_000_000_000,
        sha256="f" * 64,
    )  # fmt: skip
    UserQuota.objects.create(user=alice, monthly_budget=Decimal("5000.00"), daily_tokens=200_000_000)
    audit.record(alice, "provider.sync_failed", provider, f"Summary {LONG} " * 4)
    assert AuditEntry.objects.exists()


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_every_change_list_fits_a_laptop_without_scrolling_sideways(
    browser_orm, page, live_server_daphne, admin_user, alice, scheme
):
    seed_wide_rows(alice)
    page.emulate_media(color_scheme=scheme)
    page.set_viewport_size({"width": 1280, "height": 800})
    admin_login(page, live_server_daphne.url)
    too_wide = []
    for width in (1280, 1024):
        page.set_viewport_size({"width": width, "height": 800})
        for change_list in CHANGE_LISTS:
            page.goto(f"{live_server_daphne.url}/admin/{change_list}/")
            table = page.get_by_role("table").filter(has=page.get_by_role("columnheader")).first
            expect(table).to_be_visible()
            assert page.locator("#result_list tbody tr").count() >= 1, change_list
            name = change_list.replace("/", "-")
            shot(page, f"admin-list-{name}-{width}-{scheme}")
            sizes = page.evaluate(
                """() => {
                    const table = document.querySelector('#result_list');
                    const box = table.closest('.results');
                    return {page: document.scrollingElement.scrollWidth, window: window.innerWidth,
                            table: table.getBoundingClientRect().width, box: box.clientWidth};
                }"""
            )
            # At 1280 nothing scrolls sideways; at 1024 a wide table may scroll in its box, the page may not.
            if sizes["page"] > sizes["window"] or (width == 1280 and sizes["table"] > sizes["box"]):
                too_wide.append((change_list, width, sizes))
    assert not too_wide, too_wide


# --- Prices say their unit; a provider's models fit ---------------------------------------------------------

PRICE_HEADERS = ["Input $ / 1M tokens", "Output $ / 1M tokens"]

# Header cells whose text runs past the cell's edges, and number inputs too narrow for their value: "cut".
CUT_CELLS = """(table) => {
    const cut = [];
    for (const th of table.querySelectorAll('thead th')) {
        const text = document.createRange();
        text.selectNodeContents(th);
        const [inner, box] = [text.getBoundingClientRect(), th.getBoundingClientRect()];
        if (inner.width && (inner.left < box.left - 0.5 || inner.right > box.right + 0.5
                            || th.scrollWidth > th.clientWidth)) cut.push(th.textContent.trim());
    }
    for (const input of table.querySelectorAll('input[name$="_price"], input[name$="-context_window"]')) {
        if (input.scrollWidth > input.clientWidth) cut.push(`${input.name}=${input.value}`);
    }
    return cut;
}"""


# Whether a person can see and click the whole of an element: scrolled to (the window only: scrollIntoView would
# also scroll a box that clips it), the points at its corners hit it.
UNCOVERED = """(element) => {
    window.scrollBy(0, element.getBoundingClientRect().top - window.innerHeight / 2);
    const r = element.getBoundingClientRect();
    return r.width > 0 && [[r.left + 1, r.top + 1], [r.right - 1, r.bottom - 1]].every(
        ([x, y]) => element.contains(document.elementFromPoint(x, y)));
}"""


def seed_wide_models(count: int = 5) -> Provider:
    """A provider serving several models with long ids and names and the largest prices anyone will type."""
    provider = Provider(
        name=f"Provider {LONG}"[:100],
        kind=Provider.Kind.OPENAI_COMPATIBLE,
        base_url=f"https://{LONG}.gateway.example.com/api/v1",
        priority=12345,
    )
    provider.api_key = "sk-wide-models-0000-Zz99"
    provider.save()
    for n in range(count):
        ChatModel.objects.create(
            provider=provider, model_id=f"vendor/{LONG}-{n}", canonical_id=f"vendor/{LONG}-{n}",
            display_name=f"Model {LONG} {n}", supports_images=n % 2 == 0, context_window=2_000_000,
            input_price=Decimal("1234.5678"), cached_input_price=Decimal("617.2839"),
            output_price=Decimal("98765.4321"),
        )  # fmt: skip
    return provider


def test_price_columns_say_their_unit_and_nothing_in_them_is_cut(
    browser_orm, page, live_server_daphne, admin_user
):
    provider = seed_wide_models()
    base = live_server_daphne.url
    page.set_viewport_size({"width": 1280, "height": 800})
    admin_login(page, base)
    for width in (1280, 1024):
        page.set_viewport_size({"width": width, "height": 800})
        page.goto(f"{base}/admin/conversations/chatmodel/")
        for name in PRICE_HEADERS:
            expect(page.get_by_role("columnheader", name=name)).to_be_visible()
        shot(page, f"admin-model-prices-{width}")
        assert page.locator("#result_list").evaluate(CUT_CELLS) == [], f"cut at {width} px"

        page.goto(f"{base}/admin/conversations/provider/{provider.pk}/change/")
        models = page.get_by_role("group", name="Chat models")
        for name in PRICE_HEADERS:
            expect(models.get_by_role("columnheader", name=name)).to_be_visible()
        expect(models.get_by_role("spinbutton", name="Input $ / 1M tokens").first).to_have_value("1234.5678")
        expect(models.get_by_role("spinbutton", name="Output $ / 1M tokens")).to_have_count(5)
        shot(page, f"admin-provider-model-prices-{width}")
        assert models.get_by_role("table").evaluate(CUT_CELLS) == [], f"cut at {width} px"

    # A model's own page: every price, the cached one too, named with its unit and shown as people write it.
    mini = ChatModel.objects.create(
        provider=Provider.objects.create(name="Simulator", base_url="http://127.0.0.1:9/v1"), model_id="gpt-4o-mini",
        canonical_id="gpt-4o-mini", display_name="GPT-4o mini", input_price=Decimal("0.15"),
        cached_input_price=Decimal("0.075"), output_price=Decimal("0.6"),
    )  # fmt: skip
    page.set_viewport_size({"width": 1280, "height": 800})
    page.goto(f"{base}/admin/conversations/chatmodel/{mini.pk}/change/")
    expect(page.get_by_label("Input $ / 1M tokens:", exact=True)).to_have_value("0.15")
    expect(page.get_by_label("Cached input $ / 1M tokens")).to_have_value("0.075")
    expect(page.get_by_label("Output $ / 1M tokens")).to_have_value("0.60")
    shot(page, "admin-model-page-prices")

    # A phone: Django stacks the page; the list scrolls in its own box, the page does not.
    page.set_viewport_size({"width": 390, "height": 800})
    page.goto(f"{base}/admin/conversations/chatmodel/")
    expect(page.get_by_role("columnheader", name=PRICE_HEADERS[0])).to_be_attached()
    assert page.evaluate("document.scrollingElement.scrollWidth") <= 390
    shot(page, "admin-model-prices-390")
    assert page.locator("#result_list").evaluate(CUT_CELLS) == [], "cut at 390 px"
    page.locator("#changelist .results").evaluate("(box) => { box.scrollLeft = box.scrollWidth; }")
    shot(page, "admin-model-prices-390-scrolled")


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_a_providers_page_with_many_wide_models_fits_a_laptop(
    browser_orm, page, live_server_daphne, admin_user, scheme
):
    provider = seed_wide_models()
    page.emulate_media(color_scheme=scheme)
    page.set_viewport_size({"width": 1280, "height": 800})
    admin_login(page, live_server_daphne.url)
    for width in (1280, 1024):
        page.set_viewport_size({"width": width, "height": 800})
        page.goto(f"{live_server_daphne.url}/admin/conversations/provider/{provider.pk}/change/")
        models = page.get_by_role("group", name="Chat models")
        expect(models.get_by_role("link", name="Change")).to_have_count(5)
        for link in models.get_by_role("link", name="Change").all():
            assert link.evaluate(UNCOVERED), f"a model's Change link is hidden at {width} px"
        sizes = models.get_by_role("table").evaluate(
            """(table) => ({page: document.scrollingElement.scrollWidth, window: window.innerWidth,
                            table: table.getBoundingClientRect().width,
                            box: table.closest('.inline-group').clientWidth})"""
        )
        page.evaluate("window.scrollTo(0, 0)")  # the sticky side bar at the top, where people see it
        shot(page, f"admin-provider-models-{width}-{scheme}")
        # At 1280 nothing scrolls sideways; at 1024 the table may scroll in its box, the page may not.
        assert sizes["page"] <= sizes["window"], (width, sizes)
        if width == 1280:
            assert sizes["table"] <= sizes["box"], (width, sizes)
        else:  # the last columns are a scroll of the table's box away
            models.get_by_role("table").evaluate("(table) => { table.scrollLeft = table.scrollWidth; }")
            assert models.get_by_role("columnheader", name="Delete?").evaluate(UNCOVERED)
            assert models.get_by_role("spinbutton", name="Output $ / 1M tokens").first.evaluate(UNCOVERED)
            assert models.get_by_role("button", name="Add another Chat model").evaluate(UNCOVERED)
            shot(page, f"admin-provider-models-{width}-{scheme}-scrolled")
        # Each model's id, name and canonical id stay editable in a box wide enough to read a usual id.
        for name in ("Model id", "Display name", "Canonical id"):
            for box in models.get_by_role("textbox", name=name).all():
                assert box.bounding_box()["width"] >= 110, (name, width)
