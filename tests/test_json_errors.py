"""Service errors on the JSON endpoints: one status per kind of error (conversations/views/errors.py) and one
body everywhere, `{"error": {"code": ..., "message": ...}}`."""

from __future__ import annotations

import io
import uuid

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from PIL import Image

from conversations.models import Conversation
from conversations.services import errors
from conversations.views.errors import status_for

pytestmark = pytest.mark.django_db

NOBODY = uuid.UUID(int=1)

# Every JSON endpoint, with a method it answers.
ENDPOINTS = [
    ("get", "/api/conversations"),
    ("get", f"/api/conversations/{NOBODY}"),
    ("patch", f"/api/conversations/{NOBODY}"),
    ("delete", f"/api/conversations/{NOBODY}"),
    ("get", "/api/models"),
    ("post", "/api/uploads"),
    ("get", f"/api/uploads/{NOBODY}"),
    ("delete", f"/api/uploads/{NOBODY}"),
    ("get", "/api/search?q=x"),
    ("post", f"/api/conversations/{NOBODY}/restore"),
    ("get", f"/api/conversations/{NOBODY}/messages?before={NOBODY}"),
    ("get", f"/api/conversations/{NOBODY}/export"),
    ("get", f"/api/conversations/{NOBODY}/share"),
    ("post", f"/api/conversations/{NOBODY}/share"),
    ("delete", f"/api/conversations/{NOBODY}/share"),
    ("get", "/api/export"),
    ("post", "/api/imports"),
    ("get", f"/api/imports/{NOBODY}"),
]


def error_of(response) -> dict:
    assert response["Content-Type"] == "application/json"
    body = response.json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message"}, body
    assert body["error"]["message"], body
    return body["error"]


def photo(size=(100, 100), colour=(1, 2, 3)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, colour).save(out, "JPEG")
    return out.getvalue()


def upload(client, data: bytes):
    return client.post("/api/uploads", {"file": SimpleUploadedFile("photo.jpg", data, "image/jpeg")})


@pytest.fixture
def media(settings, tmp_path):
    settings.MEDIA_ROOT = str(tmp_path / "media")


def test_every_kind_of_service_error_has_its_status():
    expected = {
        errors.ServiceError: 400,
        errors.InvalidInput: 400,
        errors.TooLarge: 413,
        errors.NotFound: 404,
        errors.NotAllowed: 403,
        errors.Unauthenticated: 401,
        errors.Busy: 409,
        errors.RateLimited: 429,
        errors.BudgetExceeded: 429,
        errors.DatabaseBusy: 503,
    }
    kinds = {errors.ServiceError, *errors.ServiceError.__subclasses__(), errors.TooLarge}
    assert kinds == set(expected), "a new kind of service error needs its status in views/errors.py"
    assert {cls: status_for(cls("Some message.")) for cls in kinds} == expected
    assert status_for(errors.TooManyRunning("Wait.")) == 429  # a kind of RateLimited


@pytest.mark.parametrize(("method", "url"), ENDPOINTS)
def test_every_json_endpoint_answers_401_json_when_logged_out(client, method, url):
    response = client.generic(method.upper(), url)
    assert response.status_code == 401
    assert error_of(response) == {"code": "unauthenticated", "message": "Log in again."}


@pytest.mark.parametrize(("method", "url"), [(m, u) for m, u in ENDPOINTS if str(NOBODY) in u])
def test_every_json_endpoint_answers_404_json_for_what_is_not_yours(client, charlie, method, url):
    client.force_login(charlie)
    response = client.generic(method.upper(), url, "{}", "application/json")
    assert response.status_code == 404, url
    assert error_of(response)["code"] == "not_found"


def test_a_message_not_on_the_branch_is_404(client, alice):
    conversation = Conversation.objects.create(owner=alice)
    client.force_login(alice)
    response = client.get(f"/api/conversations/{conversation.public_id}/messages", {"before": str(NOBODY)})
    assert response.status_code == 404
    assert error_of(response) == {
        "code": "not_found",
        "message": "That message is not on this conversation's current branch.",
    }


def test_invalid_input_is_400(client, alice):
    conversation = Conversation.objects.create(owner=alice)
    client.force_login(alice)
    url = f"/api/conversations/{conversation.public_id}"
    response = client.patch(url, '{"pinned": "yes"}', "application/json")
    assert response.status_code == 400
    assert error_of(response) == {"code": "invalid", "message": "pinned must be true or false."}
    response = client.get(f"{url}/export", {"format": "pdf"})
    assert response.status_code == 400
    assert error_of(response) == {"code": "invalid", "message": "format is md or json."}
    response = client.post("/api/uploads")
    assert response.status_code == 400
    assert error_of(response) == {
        "code": "invalid",
        "message": "Send exactly one image in the form field “file”.",
    }


def test_an_import_over_the_limit_is_413_and_imports_nothing(client, alice, settings):
    settings.CHAT_IMPORT_MAX_BYTES = 1_000_000
    client.force_login(alice)
    big = SimpleUploadedFile("conversations.json", b"[" + b" " * 1_000_000 + b"]", "application/json")
    response = client.post("/api/imports", {"file": big})
    assert response.status_code == 413
    assert error_of(response) == {"code": "too_large", "message": "That file is larger than 1 MB."}
    assert not Conversation.objects.exists()


def test_a_file_that_is_not_an_image_is_400_with_its_own_code(client, alice, media):
    client.force_login(alice)
    response = upload(client, b"<svg onload='alert(1)'></svg>")
    assert response.status_code == 400
    assert error_of(response)["code"] == "invalid_image"


def test_a_too_large_upload_is_413(client, alice, media, settings):
    settings.CHAT_MAX_IMAGE_BYTES = 1024 * 1024
    client.force_login(alice)
    response = upload(client, photo() + b"\x00" * (1024 * 1024))
    assert response.status_code == 413
    assert error_of(response) == {
        "code": "image_too_large",
        "message": "The image is larger than 1 MB. Send a smaller one.",
    }


def test_too_many_waiting_uploads_is_429(client, alice, media, settings):
    settings.CHAT_MAX_PENDING_UPLOADS = 1
    client.force_login(alice)
    assert upload(client, photo()).status_code == 201
    response = upload(client, photo(colour=(4, 5, 6)))
    assert response.status_code == 429
    assert error_of(response) == {
        "code": "rate_limited",
        "message": "You have 1 images waiting to be sent. Send or remove some before adding more.",
    }


# No HTTP endpoint raises these today (the websocket's turns do); a service that did would answer so.
@pytest.mark.parametrize(
    ("error", "status"),
    [
        (errors.NotAllowed("Personal API keys are turned off on this site."), 403),
        (errors.Busy("An answer is still being written. Stop it or wait for it to finish."), 409),
        (errors.BudgetExceeded("You have used your daily budget. It resets at midnight UTC."), 429),
        (errors.Unauthenticated("Your account is disabled."), 401),
    ],
)
def test_the_other_service_errors_get_their_status(client, alice, monkeypatch, error, status):
    def refuse(*args, **kwargs):
        raise error

    monkeypatch.setattr("conversations.services.search.search", refuse)
    client.force_login(alice)
    response = client.get("/api/search", {"q": "anything"})
    assert response.status_code == status
    assert error_of(response) == {"code": error.code, "message": error.message}
