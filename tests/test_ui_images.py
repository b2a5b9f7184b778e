"""Images in the chat page: attach by the file picker, by paste and by drop; thumbnails, errors beside them,
what reaches the model, the history after a reload, and text-only models keeping the controls disabled."""

from __future__ import annotations

import base64
import io

import pytest
from playwright.sync_api import expect

from conversations.services.images import target_size
from conversations.testing.upstream import Reply
from tests.ui import ARTIFACTS, axe_violations, composer, last_answer, log_in, open_chat, pick_model, send

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def encode(size, colour, fmt) -> bytes:
    from PIL import Image

    out = io.BytesIO()
    Image.new("RGB", size, colour).save(out, fmt)
    return out.getvalue()


def decoded_image(data_url: str):
    from PIL import Image

    header, payload = data_url.split(",", 1)
    image = Image.open(io.BytesIO(base64.b64decode(payload)))
    return header, image


PASTE = """([b64, name, type]) => {
    const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
    const data = new DataTransfer();
    data.items.add(new File([bytes], name, { type }));
    const box = document.getElementById("composer-input");
    box.focus();
    box.dispatchEvent(new ClipboardEvent("paste", { clipboardData: data, bubbles: true, cancelable: true }));
}"""

DROP = """([b64, name, type]) => {
    const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
    const data = new DataTransfer();
    data.items.add(new File([bytes], name, { type }));
    const zone = document.querySelector(".chat-composer");
    for (const kind of ["dragenter", "dragover", "drop"]) {
        zone.dispatchEvent(new DragEvent(kind, { dataTransfer: data, bubbles: true, cancelable: true }));
    }
}"""


def paste(page, data: bytes, name: str, mime: str) -> None:
    page.evaluate(PASTE, [base64.b64encode(data).decode(), name, mime])


def drop(page, data: bytes, name: str, mime: str) -> None:
    page.evaluate(DROP, [base64.b64encode(data).decode(), name, mime])


def pick(page, data: bytes, name: str, mime: str) -> None:
    with page.expect_file_chooser() as chooser:
        page.get_by_role("button", name="Attach image").click()
    chooser.value.set_files(files=[{"name": name, "mimeType": mime, "buffer": data}])


def tray(page):
    return page.get_by_role("list", name="Images to send")


def wait_uploaded(page, count: int) -> None:
    expect(tray(page).locator("li.is-done")).to_have_count(count)
    expect(tray(page).locator("progress")).to_have_count(0)


@pytest.fixture
def chat(browser_orm, live_server_daphne, client, alice, sim_model, gpt4, context, page):
    log_in(context, live_server_daphne, client, alice)
    return open_chat(page, live_server_daphne)


def test_images_from_the_picker_and_a_paste_reach_the_model_and_stay_in_the_history(chat, upstream):
    page = chat
    photo = encode((3000, 2000), (200, 80, 20), "JPEG")
    screenshot = encode((1600, 1200), (20, 80, 200), "PNG")
    upstream.enqueue(Reply(text="A photo and a screenshot."), Reply(text="Two pictures"))

    pick(page, photo, "IMG_0001.JPG", "image/jpeg")
    paste(page, screenshot, "image.png", "image/png")
    wait_uploaded(page, 2)
    expect(tray(page).get_by_role("button", name="Remove image")).to_have_count(2)

    send(page, "What do you see?")
    expect(last_answer(page).locator(".markdown")).to_have_text("A photo and a screenshot.")
    expect(tray(page)).to_be_hidden()

    user = upstream.chat_requests[0].json["messages"][-1]
    assert user["role"] == "user"
    assert user["content"][0] == {"type": "text", "text": "What do you see?"}
    parts = user["content"][1:]
    assert [p["type"] for p in parts] == ["image_url", "image_url"]
    assert all(p["image_url"]["detail"] == "auto" for p in parts)
    header, image = decoded_image(parts[0]["image_url"]["url"])
    assert header == "data:image/jpeg;base64" and image.format == "JPEG"
    assert image.size == target_size(3000, 2000) == (1152, 768)
    header, image = decoded_image(parts[1]["image_url"]["url"])
    assert header == "data:image/png;base64" and image.format == "PNG"
    assert image.size == target_size(1600, 1200) == (1024, 768)

    page.reload()
    shown = page.locator("article.msg-user").get_by_role("img")
    expect(shown).to_have_count(2)
    expect(shown.first).to_have_attribute("alt", "Attached image 1 of 2")
    page.wait_for_function(
        "() => [...document.querySelectorAll('article.msg-user img')].every((i) => i.complete && i.naturalWidth)"
    )
    sizes = page.eval_on_selector_all(
        "article.msg-user img", "all => all.map((i) => [i.naturalWidth, i.naturalHeight])"
    )
    assert sizes == [[1152, 768], [1024, 768]]
    link = page.locator("article.msg-user a.msg-image").first
    expect(link).to_have_attribute("target", "_blank")
    ARTIFACTS.mkdir(exist_ok=True)
    page.mouse.move(0, 0)
    page.screenshot(path=ARTIFACTS / "chat-images-history.png")


def test_an_image_alone_can_be_sent_and_shows_without_an_empty_bubble(chat, upstream):
    page = chat
    send_button = page.get_by_role("button", name="Send")
    expect(send_button).to_be_disabled()
    upstream.enqueue(Reply(text="An orange rectangle on its own."), Reply(text="Orange rectangle"))

    pick(page, encode((1200, 800), (230, 120, 40), "JPEG"), "sunset.jpg", "image/jpeg")
    wait_uploaded(page, 1)
    expect(composer(page)).to_have_value("")
    expect(send_button).to_be_enabled()  # an uploaded image is enough to send
    send_button.click()

    expect(last_answer(page).locator(".markdown")).to_have_text("An orange rectangle on its own.")
    expect(tray(page)).to_be_hidden()
    expect(send_button).to_be_disabled()  # empty again: nothing left to send
    user = upstream.chat_requests[0].json["messages"][-1]
    assert [part["type"] for part in user["content"]] == ["image_url"]

    question = page.locator("article.msg-user")
    expect(question.get_by_role("img", name="Attached image")).to_be_visible()
    expect(question.locator(".user-bubble")).to_be_hidden()  # no empty grey pill under the picture
    expect(question.get_by_role("button", name="Copy")).to_have_count(0)  # nothing to copy
    expect(page.get_by_role("heading", level=1)).to_have_text("Orange rectangle")

    page.reload()  # the same from the snapshot
    question = page.locator("article.msg-user")
    expect(question.get_by_role("img", name="Attached image")).to_be_visible()
    expect(question.locator(".user-bubble")).to_be_hidden()
    page.wait_for_function(
        "() => [...document.querySelectorAll('article.msg-user img')].every((i) => i.complete)"
    )
    ARTIFACTS.mkdir(exist_ok=True)
    page.mouse.move(0, 0)
    page.screenshot(path=ARTIFACTS / "chat-image-only.png")


def test_a_dropped_image_attaches_and_a_bad_file_shows_its_error_beside_it(chat, upstream):
    page = chat
    drop(page, encode((800, 600), (10, 160, 90), "PNG"), "diagram.png", "image/png")
    pick(page, b"these are notes, not a picture\n" * 20, "notes.png", "image/png")
    expect(tray(page).locator("li.is-error").get_by_role("alert")).to_contain_text("isn't an image")
    wait_uploaded(page, 1)
    # A failed image doesn't block the turn; removing it leaves the good one.
    tray(page).locator("li.is-error").get_by_role("button", name="Remove image").click()
    expect(tray(page).get_by_role("listitem")).to_have_count(1)
    assert upstream.chat_requests == []


def test_with_a_text_only_model_the_attach_controls_are_disabled(chat, upstream):
    page = chat
    button = page.get_by_role("button", name="Attach image")
    expect(button).to_be_enabled()
    pick_model(page, "GPT-4")
    expect(button).to_be_disabled()
    expect(button).to_have_attribute(
        "title", "GPT-4 can't read images. Pick a model marked “vision” to attach one."
    )
    expect(button).to_have_accessible_description(
        "GPT-4 can't read images. Pick a model marked “vision” to attach one."
    )
    paste(page, encode((100, 100), (1, 2, 3), "PNG"), "image.png", "image/png")
    expect(page.locator(".composer-error")).to_contain_text("can't read images")
    expect(tray(page)).to_be_hidden()

    # Images attached before switching to a text-only model hold the send back, with the reason shown.
    pick_model(page, "GPT-4o")
    paste(page, encode((100, 100), (1, 2, 3), "PNG"), "image.png", "image/png")
    wait_uploaded(page, 1)
    pick_model(page, "GPT-4")
    composer(page).fill("Describe it")
    expect(page.get_by_role("button", name="Send")).to_be_disabled()
    expect(page.locator(".composer-error")).to_contain_text("GPT-4 can't read images")
    assert upstream.chat_requests == []


@pytest.mark.parametrize(
    ("name", "theme", "viewport"),
    [
        ("light", "light", {"width": 1280, "height": 800}),
        ("dark", "dark", {"width": 1280, "height": 800}),
        ("phone", "light", {"width": 390, "height": 844}),
    ],
)
def test_screenshots_of_the_composer_with_thumbnails(
    browser, live_server_daphne, client, alice, sim_model, name, theme, viewport
):
    ARTIFACTS.mkdir(exist_ok=True)
    context = browser.new_context(viewport=viewport, color_scheme=theme, device_scale_factor=2)
    try:
        log_in(context, live_server_daphne, client, alice)
        page = open_chat(context.new_page(), live_server_daphne)
        pick(page, encode((1200, 900), (230, 120, 40), "JPEG"), "sunset.jpg", "image/jpeg")
        paste(page, encode((1600, 1000), (40, 110, 220), "PNG"), "image.png", "image/png")
        pick(page, b"not an image at all", "notes.png", "image/png")
        wait_uploaded(page, 2)
        expect(tray(page).locator("li.is-error")).to_have_count(1)
        composer(page).fill("What's in these pictures?")
        page.mouse.move(0, 0)
        page.locator(".composer-wrap").screenshot(path=ARTIFACTS / f"composer-images-{name}.png")
        assert page.evaluate("document.documentElement.scrollWidth") <= viewport["width"]
        serious = [
            v for v in axe_violations(page, live_server_daphne) if v["impact"] in ("serious", "critical")
        ]
        assert serious == []
    finally:
        context.close()
