"""Images in prompts over HTTP and the websocket: POST /api/uploads, serving, removing, purging, sending.

Every bad file is refused with a message a person can act on, and leaves nothing behind: no row, no file, no
request upstream. Files are checked by content, re-encoded without metadata and scaled to what the provider
uses; only their owner (and staff) can fetch them.
"""

from __future__ import annotations

import base64
import datetime as dt
import io
import struct
import zlib
from pathlib import Path

import pytest
from django.core.management import call_command
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from PIL import Image

from conversations.llm.tokens import image_tokens
from conversations.models import Attachment, Conversation, Message
from conversations.services import context, limits, transcript, tree, turns
from tests.conftest import session_cookie_for
from tests.wsclient import ChatSocket

GPS_LATITUDE = (48.0, 51.0, 24.0)


# --- Making files --------------------------------------------------------------------------------------------


def encode(image: Image.Image, fmt: str, **options) -> bytes:
    out = io.BytesIO()
    image.save(out, fmt, **options)
    return out.getvalue()


def photo(size=(4032, 3024), colour=(200, 60, 30), **options) -> bytes:
    return encode(Image.new("RGB", size, colour), "JPEG", quality=80, **options)


def photo_with_gps() -> bytes:
    """A phone photo: EXIF with GPS coordinates, a camera model, and orientation 6 (rotate 90° clockwise)."""
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation
    exif[0x0110] = "PhoneCam 3000"  # Model
    gps = exif.get_ifd(0x8825)
    gps[1], gps[2], gps[3], gps[4] = "N", GPS_LATITUDE, "E", (2.0, 17.0, 40.0)
    data = photo((1600, 1200), exif=exif.tobytes())
    assert Image.open(io.BytesIO(data)).getexif().get_ifd(0x8825), "the fixture must really carry GPS"
    return data


def png_bomb(width=20_000, height=20_000) -> bytes:
    """A valid PNG claiming 20,000 x 20,000 pixels of one colour: a few hundred kilobytes, 400 megapixels."""
    row = b"\x00" + b"\x00" * ((width + 7) // 8)
    compressor = zlib.compressobj(9)
    body = b"".join(compressor.compress(row) for _ in range(height)) + compressor.flush()

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)  # 1-bit greyscale
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", body) + chunk(b"IEND", b"")


def upload(client, data: bytes, name: str = "image.png", content_type: str = "image/png"):
    from django.core.files.uploadedfile import SimpleUploadedFile

    return client.post("/api/uploads", {"file": SimpleUploadedFile(name, data, content_type=content_type)})


def stored_files(media_root) -> list[Path]:
    root = Path(media_root) / "attachments"
    return sorted(p for p in root.rglob("*") if p.is_file()) if root.exists() else []


@pytest.fixture
def media(settings, tmp_path):
    """A fresh MEDIA_ROOT for the test, so "nothing was stored" can be checked on disk."""
    settings.MEDIA_ROOT = str(tmp_path / "media")
    return Path(settings.MEDIA_ROOT)


# --- Uploading -----------------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_it_stores_a_photo_scaled_to_what_the_provider_uses(client, alice, media):
    client.force_login(alice)
    response = upload(client, photo(), "IMG_0001.JPG", "image/jpeg")
    assert response.status_code == 201, response.content
    body = response.json()
    assert (body["width"], body["height"], body["mime"]) == (1024, 768, "image/jpeg")
    assert body["url"] == f"/api/uploads/{body['id']}"
    attachment = Attachment.objects.get(public_id=body["id"])
    assert attachment.owner == alice and attachment.message is None
    stored = Path(media) / attachment.file.name
    assert attachment.file.name == f"attachments/{alice.pk}/{attachment.sha256}.jpg"
    assert Image.open(stored).size == (1024, 768)
    assert attachment.bytes == stored.stat().st_size


@pytest.mark.django_db
def test_it_keeps_screenshots_lossless_and_small_images_unscaled(client, alice, media):
    client.force_login(alice)
    screenshot = Image.new("RGBA", (1280, 720), (255, 255, 255, 255))
    response = upload(client, encode(screenshot, "PNG"), "Screenshot.png")
    assert response.status_code == 201
    assert (response.json()["width"], response.json()["height"], response.json()["mime"]) == (
        1280,
        720,
        "image/png",
    )
    response = upload(client, encode(Image.new("RGB", (640, 480), "blue"), "WEBP"), "x.webp", "image/webp")
    assert (response.json()["width"], response.json()["mime"]) == (640, "image/webp")


@pytest.mark.django_db
def test_an_animated_gif_sends_its_first_frame_and_says_so(client, alice, media):
    client.force_login(alice)
    frames = [Image.new("RGB", (120, 80), c) for c in ((255, 0, 0), (0, 255, 0), (0, 0, 255))]
    gif = encode(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)
    response = upload(client, gif, "party.gif", "image/gif")
    assert response.status_code == 201
    body = response.json()
    assert body["mime"] == "image/png"
    assert "first frame" in body["notice"]
    stored = Image.open(Path(media) / Attachment.objects.get().file.name)
    assert not getattr(stored, "is_animated", False)
    assert stored.convert("RGB").getpixel((5, 5)) == (255, 0, 0)


@pytest.mark.django_db
def test_a_heic_photo_from_a_phone_becomes_a_jpeg(client, alice, media):
    pytest.importorskip("pillow_heif")
    client.force_login(alice)
    heic = encode(Image.new("RGB", (300, 200), (0, 128, 0)), "HEIF")
    assert heic[4:12] == b"ftypheic"
    response = upload(client, heic, "IMG_0002.HEIC", "image/heic")
    assert response.status_code == 201, response.content
    assert (response.json()["mime"], response.json()["width"]) == ("image/jpeg", 300)
    assert Image.open(Path(media) / Attachment.objects.get().file.name).format == "JPEG"


@pytest.mark.django_db
def test_gps_and_other_metadata_never_reach_storage(client, alice, media):
    client.force_login(alice)
    response = upload(client, photo_with_gps(), "IMG_0003.JPG", "image/jpeg")
    assert response.status_code == 201
    # The orientation was applied to the pixels (1600x1200 turned upright), then dropped with the rest.
    assert (response.json()["width"], response.json()["height"]) == (768, 1024)
    raw = (Path(media) / Attachment.objects.get().file.name).read_bytes()
    assert_no_metadata(raw)


def assert_no_metadata(raw: bytes) -> None:
    image = Image.open(io.BytesIO(raw))
    exif = image.getexif()
    assert not exif.get_ifd(0x8825), "a GPS IFD survived"
    assert len(exif) == 0, dict(exif)
    assert b"Exif\x00\x00" not in raw and b"PhoneCam" not in raw
    assert not image.info.get("exif") and not image.info.get("xmp")


@pytest.mark.django_db
def test_the_same_picture_twice_is_one_file_until_both_rows_are_gone(
    client, alice, media, django_capture_on_commit_callbacks
):
    client.force_login(alice)
    first = upload(client, photo((800, 600)), "a.jpg").json()
    second = upload(client, photo((800, 600)), "b.jpg").json()
    assert first["id"] != second["id"]
    assert len(stored_files(media)) == 1
    with django_capture_on_commit_callbacks(execute=True):
        assert client.delete(f"/api/uploads/{first['id']}").status_code == 204
    assert len(stored_files(media)) == 1
    with django_capture_on_commit_callbacks(execute=True):
        assert client.delete(f"/api/uploads/{second['id']}").status_code == 204
    assert stored_files(media) == []


BAD_FILES = {
    "20 MB plus one byte": (
        lambda: b"\x89PNG\r\n\x1a\n" + b"\x00" * (20 * 1024 * 1024 + 1 - 8),
        413,
        "larger than 20 MB",
    ),
    "a 20,000 x 20,000 PNG bomb": (png_bomb, 400, "too many pixels"),
    "a truncated JPEG": (lambda: photo((1200, 900))[:6000], 400, "damaged or incomplete"),
    "a text file named .png": (lambda: b"just some notes, not a picture\n" * 10, 400, "isn't an image"),
    "an SVG with a script": (
        lambda: b'<svg xmlns="http://www.w3.org/2000/svg"><script>alert(document.cookie)</script></svg>',
        400,
        "SVG images aren't accepted",
    ),
    "an empty file": (lambda: b"", 400, "The file is empty"),
}


@pytest.mark.django_db
@pytest.mark.parametrize("kind", BAD_FILES)
def test_a_bad_file_is_refused_clearly_and_leaves_nothing_behind(client, alice, media, upstream, kind):
    make, status, says = BAD_FILES[kind]
    client.force_login(alice)
    response = upload(client, make(), "innocent.png", "image/png")
    assert response.status_code == status, response.content
    message = response.json()["error"]["message"]
    assert says in message
    assert Attachment.objects.count() == 0
    assert stored_files(media) == []
    assert upstream.chat_requests == []


@pytest.mark.django_db
def test_a_file_over_the_limit_is_stopped_while_it_is_read(client, alice, media, settings):
    """Below the Content-Length shortcut: the upload handler counts the bytes as they are parsed."""
    settings.CHAT_MAX_IMAGE_BYTES = 100_000
    client.force_login(alice)
    response = upload(client, photo((2000, 2000), colour=(1, 2, 3)) + b"\x00" * 100_001, "big.jpg")
    assert response.status_code == 413
    assert "larger than" in response.json()["error"]["message"]
    assert Attachment.objects.count() == 0 and stored_files(media) == []


@pytest.mark.django_db
def test_a_body_announced_too_large_is_refused_before_it_is_parsed(
    client, alice, media, settings, monkeypatch
):
    settings.CHAT_MAX_IMAGE_BYTES = 10_000
    parsed = []
    monkeypatch.setattr("django.http.multipartparser.MultiPartParser.parse", lambda self: parsed.append(1))
    client.force_login(alice)
    response = upload(client, b"\x89PNG\r\n\x1a\n" + b"\x00" * 200_000)
    assert response.status_code == 413 and parsed == []
    assert "larger than" in response.json()["error"]["message"]


@pytest.mark.django_db
def test_uploads_need_a_login_and_a_csrf_token(alice, media):
    anonymous = upload(Client(), photo((100, 100)))
    assert anonymous.status_code == 401
    strict = Client(enforce_csrf_checks=True)
    strict.force_login(alice)
    assert upload(strict, photo((100, 100))).status_code == 403
    assert Attachment.objects.count() == 0


@pytest.mark.django_db
def test_too_many_waiting_uploads_are_refused(client, alice, media, settings):
    settings.CHAT_MAX_PENDING_UPLOADS = 2
    client.force_login(alice)
    assert upload(client, photo((100, 100), colour=(1, 1, 1))).status_code == 201
    assert upload(client, photo((100, 100), colour=(2, 2, 2))).status_code == 201
    response = upload(client, photo((100, 100), colour=(3, 3, 3)))
    assert response.status_code == 429
    assert "waiting to be sent" in response.json()["error"]["message"]


# --- Serving and removing --------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_the_owner_gets_the_image_privately_with_safe_headers(client, alice, media):
    client.force_login(alice)
    body = upload(client, photo((800, 600))).json()
    response = client.get(body["url"])
    assert response.status_code == 200
    assert response["Content-Type"] == "image/jpeg"
    assert response["X-Content-Type-Options"] == "nosniff"
    assert response["Content-Disposition"].startswith("inline")
    assert response["Cache-Control"].startswith("private, max-age=")
    assert Image.open(io.BytesIO(b"".join(response.streaming_content))).size == (800, 600)
    again = client.get(body["url"], HTTP_IF_NONE_MATCH=response["ETag"])
    assert again.status_code == 304


@pytest.mark.django_db
def test_charlie_gets_404_for_alices_image_and_cannot_remove_it(client, alice, charlie, media):
    client.force_login(alice)
    body = upload(client, photo((300, 200))).json()
    client.force_login(charlie)
    assert client.get(body["url"]).status_code == 404
    assert client.delete(body["url"]).status_code == 404
    assert client.get("/api/uploads/00000000-0000-0000-0000-000000000000").status_code == 404
    assert Attachment.objects.filter(public_id=body["id"]).exists()
    client.logout()
    assert client.get(body["url"]).status_code == 401


@pytest.mark.django_db
def test_staff_may_look_at_an_image(client, alice, admin_user, media):
    client.force_login(alice)
    body = upload(client, photo((300, 200))).json()
    client.force_login(admin_user)
    assert client.get(body["url"]).status_code == 200


@pytest.mark.django_db
def test_the_staff_flag_alone_does_not_open_other_peoples_images(client, alice, django_user_model, media):
    from django.contrib.auth.models import Permission

    client.force_login(alice)
    body = upload(client, photo((300, 200))).json()
    staff = django_user_model.objects.create_user("steve", "steve@example.com", "pw", is_staff=True)
    client.force_login(staff)
    assert client.get(body["url"]).status_code == 404
    staff.user_permissions.add(Permission.objects.get(codename="view_attachment"))
    client.force_login(django_user_model.objects.get(pk=staff.pk))  # permissions are cached per instance
    assert client.get(body["url"]).status_code == 200


@pytest.mark.django_db
def test_an_image_of_a_sent_message_cannot_be_removed_on_its_own(client, alice, sim_model, media):
    client.force_login(alice)
    body = upload(client, photo((300, 200))).json()
    turns.do_send_turn(alice, conversation_id=None, text="Look", attachment_ids=[body["id"]])
    response = client.delete(body["url"])
    assert response.status_code == 400
    assert Attachment.objects.filter(public_id=body["id"], message__isnull=False).exists()


@pytest.mark.django_db
def test_purge_uploads_deletes_only_old_unsent_images(
    client, alice, sim_model, media, django_capture_on_commit_callbacks
):
    client.force_login(alice)
    old_unsent = upload(client, photo((300, 200), colour=(220, 0, 0))).json()
    new_unsent = upload(client, photo((300, 200), colour=(0, 220, 0))).json()
    old_sent = upload(client, photo((300, 200), colour=(0, 0, 220))).json()
    turns.do_send_turn(alice, conversation_id=None, text="Look", attachment_ids=[old_sent["id"]])
    long_ago = timezone.now() - dt.timedelta(hours=30)
    Attachment.objects.filter(public_id__in=[old_unsent["id"], old_sent["id"]]).update(created_at=long_ago)
    assert len(stored_files(media)) == 3
    out = io.StringIO()
    with django_capture_on_commit_callbacks(execute=True):
        call_command("purge_uploads", "--older-than-hours", "24", stdout=out)
    assert "Deleted 1 unsent image." in out.getvalue()
    remaining = {str(i) for i in Attachment.objects.values_list("public_id", flat=True)}
    assert remaining == {new_unsent["id"], old_sent["id"]}
    assert len(stored_files(media)) == 2


@pytest.mark.django_db
def test_deleting_a_conversation_deletes_its_images(
    client, alice, sim_model, media, django_capture_on_commit_callbacks
):
    client.force_login(alice)
    body = upload(client, photo((300, 200))).json()
    turn = turns.do_send_turn(alice, conversation_id=None, text="Look", attachment_ids=[body["id"]])
    with django_capture_on_commit_callbacks(execute=True):
        Conversation.objects.filter(pk=turn.conversation.pk).delete()
    assert Attachment.objects.count() == 0
    assert stored_files(media) == []


# --- Turns, prompts and budgets ---------------------------------------------------------------------------------


@pytest.mark.django_db
def test_images_travel_as_data_urls_in_the_same_user_message_as_the_text(client, alice, sim_model, media):
    client.force_login(alice)
    ids = [upload(client, photo((2000, 1000), colour=(9, 9, c))).json()["id"] for c in (1, 2)]
    turn = turns.do_send_turn(alice, conversation_id=None, text="Compare these", attachment_ids=ids)
    assert [a.public_id for a in turn.attachments] == [
        Attachment.objects.get(public_id=i).public_id for i in ids
    ]
    conversation, path = tree.branch_for_answer(turn.assistant)
    body = context.build_request(conversation, path, sim_model).request
    user = body.messages[-1]
    assert user.text == "Compare these" and len(user.images) == 2
    from conversations.llm.request import message_to_wire

    wire = message_to_wire(user)
    assert wire["content"][0] == {"type": "text", "text": "Compare these"}
    part = wire["content"][1]
    assert part["type"] == "image_url" and part["image_url"]["detail"] == "auto"
    url = part["image_url"]["url"]
    assert url.startswith("data:image/jpeg;base64,")
    assert Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1]))).size == (1536, 768)


@pytest.mark.django_db
def test_older_turns_can_leave_their_images_out(client, alice, sim_model, media, settings):
    client.force_login(alice)
    first = upload(client, photo((400, 300), colour=(5, 5, 5))).json()["id"]
    turn = turns.do_send_turn(alice, conversation_id=None, text="One", attachment_ids=[first])
    Message.objects.filter(pk=turn.assistant.pk).update(status="complete", content="Seen.")
    second = upload(client, photo((400, 300), colour=(6, 6, 6))).json()["id"]
    turn = turns.do_send_turn(
        alice, conversation_id=str(turn.conversation.public_id), text="Two", attachment_ids=[second]
    )
    conversation, path = tree.branch_for_answer(turn.assistant)
    request = context.build_request(conversation, path, sim_model).request
    assert [len(m.images) for m in request.messages] == [1, 0, 1]
    settings.CHAT_KEEP_OLD_IMAGES = False
    request = context.build_request(conversation, path, sim_model).request
    assert [len(m.images) for m in request.messages] == [0, 0, 1]


@pytest.mark.django_db
def test_the_reservation_counts_the_images(client, alice, sim_model, media):
    client.force_login(alice)
    plain = turns.do_send_turn(alice, conversation_id=None, text="No image")
    Message.objects.filter(pk=plain.assistant.pk).update(status="complete")
    ids = [upload(client, photo((1024, 1024), colour=(c, 0, 0))).json()["id"] for c in (1, 2)]
    with_images = turns.do_send_turn(alice, conversation_id=None, text="Two images", attachment_ids=ids)
    per_image = image_tokens(768, 768, "auto", "gpt-4o")
    assert per_image == 765
    assert with_images.assistant.reserved_tokens == plain.assistant.reserved_tokens + 2 * per_image
    assert with_images.assistant.reserved_tokens == limits.RESERVE_PROMPT_TOKENS + 16_384 + 2 * per_image


@pytest.mark.django_db
def test_a_turn_may_carry_only_so_many_images(client, alice, sim_model, media, settings):
    settings.CHAT_MAX_IMAGES_PER_TURN = 2
    client.force_login(alice)
    ids = [upload(client, photo((100, 100), colour=(c, 0, 0))).json()["id"] for c in (1, 2, 3)]
    with pytest.raises(turns.InvalidInput) as refused:
        turns.do_send_turn(alice, conversation_id=None, text="Three", attachment_ids=ids)
    assert refused.value.code == "too_many_images"
    assert Message.objects.count() == 0


@pytest.mark.django_db
def test_regenerating_an_answer_about_images_with_a_text_only_model_is_refused(
    client, alice, sim_model, gpt4, media
):
    client.force_login(alice)
    image = upload(client, photo((300, 200))).json()["id"]
    turn = turns.do_send_turn(alice, conversation_id=None, text="What is this?", attachment_ids=[image])
    Message.objects.filter(pk=turn.assistant.pk).update(status="complete", content="A square.")
    with pytest.raises(turns.InvalidInput) as refused:
        turns.do_regenerate(alice, str(turn.assistant.public_id), gpt4.pk)
    assert refused.value.code == "images_not_supported"
    with pytest.raises(turns.InvalidInput):
        turns.do_edit(alice, str(turn.user_message.public_id), "And now?", gpt4.pk)
    assert Message.objects.count() == 2


@pytest.mark.django_db
def test_images_keep_the_order_they_were_attached_in_whatever_order_they_uploaded(
    client, alice, sim_model, media
):
    """The browser uploads a message's images at once, and they finish in any order."""
    client.force_login(alice)
    second = upload(client, photo((400, 300), colour=(1, 2, 3))).json()["id"]  # finished uploading first
    first = upload(client, photo((300, 400), colour=(3, 2, 1))).json()["id"]
    turn = turns.do_send_turn(alice, conversation_id=None, text="In order", attachment_ids=[first, second])
    snapshot = transcript.snapshot(alice, str(turn.conversation.public_id))
    question = snapshot["messages"][0]
    assert [a["id"] for a in question["attachments"]] == [first, second]
    Message.objects.filter(pk=turn.assistant.pk).update(status="complete", content="Two images.")
    edited = turns.do_edit(alice, question["id"], "Still in order")
    assert [a.width for a in edited.user_message.attachments.all()] == [300, 400]
    conversation, path = tree.branch_for_answer(turn.assistant)
    images = context.build_request(conversation, path, sim_model).request.messages[-1].images
    assert [image.width for image in images] == [300, 400]


@pytest.mark.django_db
def test_an_edited_message_keeps_its_images(client, alice, sim_model, media):
    client.force_login(alice)
    image = upload(client, photo((300, 200))).json()["id"]
    turn = turns.do_send_turn(alice, conversation_id=None, text="Wht is this?", attachment_ids=[image])
    Message.objects.filter(pk=turn.assistant.pk).update(status="complete", content="A square.")
    edited = turns.do_edit(alice, str(turn.user_message.public_id), "What is this?")
    copies = list(edited.user_message.attachments.all())
    assert len(copies) == 1 and copies[0].file.name == Attachment.objects.get(public_id=image).file.name
    ack = turns.turn_ack(edited)
    assert [a["id"] for a in ack["user_message"]["attachments"]] == [str(copies[0].public_id)]


@pytest.mark.django_db
def test_the_snapshot_lists_images_and_costs_the_same_queries_however_many(client, alice, sim_model, media):
    client.force_login(alice)

    def conversation_with(turn_count: int) -> str:
        conversation_id = None
        for n in range(turn_count):
            image = upload(client, photo((200, 100), colour=(n, turn_count, 0))).json()["id"]
            turn = turns.do_send_turn(
                alice, conversation_id=conversation_id, text=f"Turn {n}", attachment_ids=[image]
            )
            Message.objects.filter(pk=turn.assistant.pk).update(status="complete", content="ok")
            Attachment.objects.filter(owner=alice, message__isnull=True).delete()
            conversation_id = str(turn.conversation.public_id)
        return conversation_id

    small, large = conversation_with(1), conversation_with(8)
    with CaptureQueriesContext(connection) as few:
        snapshot = transcript.snapshot(alice, small)
    with CaptureQueriesContext(connection) as many:
        big = transcript.snapshot(alice, large)
    assert len(few) == len(many)
    users = [m for m in big["messages"] if m["role"] == "user"]
    assert len(users) == 8 and all(len(m["attachments"]) == 1 for m in users)
    shown = snapshot["messages"][0]["attachments"][0]
    assert set(shown) == {"id", "url", "width", "height", "mime"}
    assert (shown["width"], shown["height"], shown["mime"]) == (200, 100, "image/jpeg")
    assert all(m["attachments"] == [] for m in big["messages"] if m["role"] == "assistant")


# --- Images without text --------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_an_image_alone_goes_upstream_as_image_parts_only(client, alice, sim_model, media):
    from conversations.llm.request import message_to_wire

    client.force_login(alice)
    image = upload(client, photo((400, 300))).json()["id"]
    turn = turns.do_send_turn(alice, conversation_id=None, text="", attachment_ids=[image])
    assert turn.user_message.content == "" and len(turn.attachments) == 1
    conversation, path = tree.branch_for_answer(turn.assistant)
    user = context.build_request(conversation, path, sim_model).request.messages[-1]
    content = message_to_wire(user)["content"]
    assert [part["type"] for part in content] == ["image_url"]  # no empty text part
    assert content[0]["image_url"]["url"].startswith("data:image/jpeg;base64,")


@pytest.mark.django_db
def test_an_image_only_turn_left_out_of_a_later_prompt_is_a_placeholder_not_an_empty_message(
    client, alice, sim_model, media, settings
):
    client.force_login(alice)
    first = upload(client, photo((400, 300))).json()["id"]
    turn = turns.do_send_turn(alice, conversation_id=None, text="", attachment_ids=[first])
    Message.objects.filter(pk=turn.assistant.pk).update(status="complete", content="A red picture.")
    turn = turns.do_send_turn(alice, conversation_id=str(turn.conversation.public_id), text="Why red?")
    settings.CHAT_KEEP_OLD_IMAGES = False
    conversation, path = tree.branch_for_answer(turn.assistant)
    old = context.build_request(conversation, path, sim_model).request.messages[0]
    assert (old.role, old.text, old.images) == ("user", context.IMAGE_OMITTED, ())


@pytest.mark.django_db
def test_a_turn_with_neither_text_nor_images_is_refused_and_saves_nothing(alice, sim_model):
    for text in ("", "  \n "):
        with pytest.raises(turns.InvalidInput) as refused:
            turns.do_send_turn(alice, conversation_id=None, text=text, attachment_ids=[])
        assert refused.value.code == "empty_message"
    assert not Conversation.objects.exists() and not Message.objects.exists()


@pytest.mark.django_db
def test_a_message_with_images_can_be_edited_down_to_the_images_alone(client, alice, sim_model, media):
    client.force_login(alice)
    image = upload(client, photo((300, 200))).json()["id"]
    turn = turns.do_send_turn(alice, conversation_id=None, text="Wht is ths?", attachment_ids=[image])
    Message.objects.filter(pk=turn.assistant.pk).update(status="complete", content="A square.")
    edited = turns.do_edit(alice, str(turn.user_message.public_id), "")
    assert edited.user_message.content == ""
    assert edited.user_message.attachments.count() == 1
    conversation, path = tree.branch_for_answer(edited.assistant)
    user = context.build_request(conversation, path, sim_model).request.messages[-1]
    assert (user.text, len(user.images)) == ("", 1)


@pytest.mark.django_db
def test_a_text_only_message_cannot_be_edited_to_nothing(alice, sim_model):
    turn = turns.do_send_turn(alice, conversation_id=None, text="Hello")
    Message.objects.filter(pk=turn.assistant.pk).update(status="complete", content="Hi.")
    with pytest.raises(turns.InvalidInput) as refused:
        turns.do_edit(alice, str(turn.user_message.public_id), " ")
    assert refused.value.code == "empty_message"
    assert Message.objects.count() == 2


def test_a_chat_that_starts_with_images_alone_falls_back_to_a_title_about_images():
    from conversations.services.titles import fallback_title

    assert fallback_title("", images=1) == "Image"
    assert fallback_title("", images=3) == "3 images"
    assert fallback_title("", images=0) == "New chat"
    assert fallback_title("Look at this", images=1) == "Look at this"


# --- Over the websocket, against the simulator ------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_a_photo_with_gps_goes_upstream_without_it(live_server_daphne, client, alice, sim_model, upstream):
    from conversations.testing.upstream import Reply

    client.force_login(alice)
    body = upload(client, photo_with_gps(), "IMG_0004.JPG", "image/jpeg").json()
    upstream.enqueue(Reply(text="A red picture."), Reply(text="Title"))
    with ChatSocket(live_server_daphne, session_cookie_for(client, alice)) as sock:
        sock.send(type="send", text="Where was this taken?", attachments=[body["id"]], ref="s")
        ack = sock.wait_type("ack")
        assert [a["id"] for a in ack["user_message"]["attachments"]] == [body["id"]]
        sock.wait_end(ack["assistant_message"]["id"])
    user = upstream.chat_requests[0].json["messages"][-1]
    assert user["role"] == "user"
    text, image = user["content"]
    assert text == {"type": "text", "text": "Where was this taken?"}
    url = image["image_url"]["url"]
    assert url.startswith("data:image/jpeg;base64,")
    raw = base64.b64decode(url.split(",", 1)[1])
    assert Image.open(io.BytesIO(raw)).size == (768, 1024)
    assert_no_metadata(raw)


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("text", ["Describe it", ""])
def test_a_forged_turn_with_images_for_a_text_only_model_is_refused(
    live_server_daphne, client, alice, sim_model, gpt4, upstream, text
):
    client.force_login(alice)
    body = upload(client, photo((300, 200))).json()
    with ChatSocket(live_server_daphne, session_cookie_for(client, alice)) as sock:
        sock.send(type="send", text=text, model=gpt4.pk, attachments=[body["id"]], ref="forged")
        frame = sock.recv()
        assert frame["type"] == "error"
        assert (frame["code"], frame["ref"]) == ("images_not_supported", "forged")
        assert "can't read images" in frame["message"]
        sock.send(type="ping", id="alive")
        assert sock.recv() == {"type": "pong", "id": "alive"}
    assert upstream.chat_requests == []
    assert Message.objects.count() == 0
    assert Attachment.objects.get(public_id=body["id"]).message is None


@pytest.mark.django_db(transaction=True)
def test_charlie_cannot_send_alices_upload(live_server_daphne, client, alice, charlie, sim_model, upstream):
    client.force_login(alice)
    body = upload(client, photo((300, 200))).json()
    with ChatSocket(live_server_daphne, session_cookie_for(client, charlie)) as sock:
        sock.send(type="send", text="Mine now", attachments=[body["id"]], ref="steal")
        frame = sock.recv()
        assert (frame["type"], frame["code"]) == ("error", "not_found")
    assert upstream.chat_requests == []
    assert Attachment.objects.get(public_id=body["id"]).message is None


def title_request(upstream):
    from conversations.services.titles import TITLE_PROMPT

    return next(r.json for r in upstream.chat_requests if r.json["messages"][0]["content"] == TITLE_PROMPT)


@pytest.mark.django_db(transaction=True)
def test_an_image_alone_is_answered_and_titled(live_server_daphne, client, alice, sim_model, upstream):
    from conversations.testing.upstream import Reply

    client.force_login(alice)
    body = upload(client, photo((600, 400)), "IMG_0005.JPG", "image/jpeg").json()
    upstream.enqueue(Reply(text="A red rectangle."), Reply(text="Red rectangle"))
    with ChatSocket(live_server_daphne, session_cookie_for(client, alice)) as sock:
        sock.send(type="send", text="", attachments=[body["id"]], ref="img")
        ack = sock.wait_type("ack")
        assert ack["ref"] == "img"
        assert ack["user_message"]["content"] == ""
        assert [a["id"] for a in ack["user_message"]["attachments"]] == [body["id"]]
        assert sock.wait_end(ack["assistant_message"]["id"])["content"] == "A red rectangle."
        title = sock.wait_type("title")
        assert title["title"] == "Red rectangle"
    user = upstream.chat_requests[0].json["messages"][-1]
    assert user["role"] == "user"
    assert [part["type"] for part in user["content"]] == ["image_url"]
    assert user["content"][0]["image_url"]["url"].startswith("data:image/jpeg;base64,")
    # The title model reads words only: it is told an image was sent, and what the answer said.
    asked = title_request(upstream)["messages"][-1]["content"]
    assert asked == "User: (sent an image, no text)\n\nAssistant: A red rectangle."
    message = Message.objects.get(public_id=ack["user_message"]["id"])
    assert message.content == "" and message.attachments.count() == 1


@pytest.mark.django_db(transaction=True)
def test_a_send_with_neither_text_nor_images_gets_an_error_and_the_socket_stays_usable(
    live_server_daphne, client, alice, sim_model, upstream
):
    with ChatSocket(live_server_daphne, session_cookie_for(client, alice)) as sock:
        for frame in ({"text": ""}, {"text": " \n\t"}, {"text": "", "attachments": []}, {}):
            sock.send(type="send", ref="empty", **frame)
            error = sock.recv()
            assert (error["type"], error["code"], error["ref"]) == ("error", "empty_message", "empty"), frame
            assert error["message"] == "Write a message or attach an image."
        sock.send(type="ping", id="alive")
        assert sock.recv() == {"type": "pong", "id": "alive"}
    assert upstream.chat_requests == []
    assert not Conversation.objects.exists() and not Message.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_charlie_cannot_send_alices_upload_as_an_image_only_message(
    live_server_daphne, client, alice, charlie, sim_model, upstream
):
    client.force_login(alice)
    body = upload(client, photo((300, 200))).json()
    with ChatSocket(live_server_daphne, session_cookie_for(client, charlie)) as sock:
        sock.send(type="send", text="", attachments=[body["id"]], ref="steal")
        frame = sock.recv()
        assert (frame["type"], frame["code"]) == ("error", "not_found")
    assert upstream.chat_requests == []
    assert not Message.objects.exists()
    assert Attachment.objects.get(public_id=body["id"]).message is None
