"""Status + body -> typed error with a message a person can act on; retry planning. No network, no database."""

from __future__ import annotations

import email.utils
import json
import time

import pytest

from conversations.llm import errors
from conversations.llm.errors import (
    BadRequest,
    ContextTooLong,
    EndpointNotFound,
    ImagesNotSupported,
    InvalidAPIKey,
    JSONModeNeedsJSONWord,
    ModelNotFound,
    PermissionDenied,
    ProviderRateLimited,
    QuotaExceeded,
    RequestTooLarge,
    UpstreamError,
    error_from_response,
    retry_after_seconds,
)
from conversations.llm.retry import backoff_delay, plan_retry


def openai_error(message: str, type_: str = "invalid_request_error", code: str | None = None) -> bytes:
    return json.dumps({"error": {"message": message, "type": type_, "param": None, "code": code}}).encode()


@pytest.mark.parametrize(
    ("status", "body", "expected"),
    [
        (401, openai_error("Incorrect API key provided: sk-ab***cd.", code="invalid_api_key"), InvalidAPIKey),
        (402, b'{"error": {"code": 402, "message": "Insufficient credits"}}', QuotaExceeded),
        (
            429,
            openai_error("You exceeded your current quota", "insufficient_quota", "insufficient_quota"),
            QuotaExceeded,
        ),
        (429, openai_error("Rate limit reached", "requests", "rate_limit_exceeded"), ProviderRateLimited),
        (
            403,
            openai_error("Country, region, or territory not supported", code="unsupported_country"),
            PermissionDenied,
        ),
        (404, openai_error("The model `gpt-5` does not exist", code="model_not_found"), ModelNotFound),
        (404, b'{"error": {"message": "model \\"llama3\\" not found, try pulling it first"}}', ModelNotFound),
        (404, b"404 page not found", EndpointNotFound),
        (404, openai_error("Invalid URL (POST /models/v1/chat/completions)"), EndpointNotFound),
        (404, b'{"error": {"code": 404, "message": "No endpoints found for openai/gpt-4."}}', ModelNotFound),
        (
            400,
            openai_error("maximum context length is 128000 tokens", code="context_length_exceeded"),
            ContextTooLong,
        ),
        (
            400,
            b'{"error": {"code": 400, "message": "the request exceeds the available context size", "type": "exceed_context_size_error"}}',
            ContextTooLong,
        ),
        (
            400,
            openai_error("Invalid content type. image_url is only supported by certain models."),
            ImagesNotSupported,
        ),
        (
            400,
            openai_error("'messages' must contain the word 'json' in some form, to use 'response_format'"),
            JSONModeNeedsJSONWord,
        ),
        (400, openai_error("Unsupported parameter: 'max_tokens'", code="unsupported_parameter"), BadRequest),
        (422, b'{"detail": [{"loc": ["body", "messages"], "msg": "field required"}]}', BadRequest),
        (413, b"<html><head><title>413 Request Entity Too Large</title></head></html>", RequestTooLarge),
        (500, openai_error("The server had an error", "server_error"), UpstreamError),
        (503, b"", UpstreamError),
        (408, b"", UpstreamError),
        (409, b"", UpstreamError),
        (
            500,
            b'{"object": "error", "message": "boom", "type": "InternalServerError", "code": 500}',
            UpstreamError,
        ),
    ],
)
def test_it_maps_status_and_body_to_a_typed_error(status, body, expected):
    err = error_from_response(status, body, {"content-type": "application/json"}, model_id="gpt-4o")
    assert type(err) is expected
    assert err.status == status
    assert err.user_message.endswith(".")


def test_it_reads_the_title_of_an_html_error_page():
    body = b"<html>\r\n<head><title>413 Request Entity Too Large</title></head><body>cloudflare</body></html>"
    err = error_from_response(413, body, {"content-type": "text/html"}, provider_name="OpenAI")
    assert err.detail == "413 Request Entity Too Large"
    assert "too large" in err.user_message and "images" in err.user_message


def test_the_quota_and_key_messages_say_an_administrator_must_act():
    quota = error_from_response(429, openai_error("quota", "insufficient_quota", "insufficient_quota"))
    key = error_from_response(401, openai_error("bad key", code="invalid_api_key"), provider_name="OpenAI")
    assert "administrator" in quota.user_message and "credits" in quota.user_message
    assert 'provider "OpenAI" rejected the API key' in key.user_message
    assert not quota.retryable and quota.fallback
    assert not key.retryable and key.fallback


@pytest.mark.parametrize(
    ("model_id", "day"),
    [
        ("gpt-4", "2026-10-23"),
        ("gpt-4-0613", "2026-10-23"),
        ("chatgpt-4o-latest", "2026-02-17"),
        ("openai/gpt-4", "2026-10-23"),
    ],
)
def test_a_missing_retired_model_says_when_openai_retired_it_and_what_to_use(model_id, day):
    err = error_from_response(404, openai_error("does not exist", code="model_not_found"), model_id=model_id)
    assert f"OpenAI retired it from its API on {day}" in err.user_message
    assert "gpt-4o" in err.user_message


def test_request_errors_do_not_fall_back_but_account_errors_do():
    assert not ContextTooLong().fallback and not BadRequest().fallback and not RequestTooLarge().fallback
    assert InvalidAPIKey().fallback and QuotaExceeded().fallback and ModelNotFound().fallback
    assert UpstreamError().retryable and ProviderRateLimited().retryable


def test_the_rate_limit_message_says_how_long_to_wait():
    err = error_from_response(
        429, openai_error("slow down", "requests", "rate_limit_exceeded"), {"retry-after": "30"}
    )
    assert "Wait about 30 seconds" in err.user_message


def test_it_keeps_the_request_id_and_never_the_key():
    headers = {"x-request-id": "req_123", "content-type": "application/json"}
    err = error_from_response(401, openai_error("Incorrect API key provided: sk-pr*******1234"), headers)
    assert err.request_id == "req_123"
    assert "req_123" in str(err)


def test_long_upstream_details_are_clipped():
    err = error_from_response(400, openai_error("x" * 5000))
    assert len(err.detail) <= errors._DETAIL_LIMIT


# --- Retry-After and backoff ------------------------------------------------------------------------------------


def test_retry_after_ms_wins_over_retry_after():
    assert retry_after_seconds({"retry-after-ms": "300", "retry-after": "5"}) == pytest.approx(0.3)


def test_retry_after_accepts_seconds_and_http_dates():
    assert retry_after_seconds({"retry-after": "2.5"}) == 2.5
    in_ten = email.utils.formatdate(time.time() + 10, usegmt=True)
    assert 8 <= retry_after_seconds({"retry-after": in_ten}) <= 10
    assert retry_after_seconds({"retry-after": "soon"}) is None
    assert retry_after_seconds({}) is None


def test_backoff_grows_exponentially_with_jitter_up_to_a_cap():
    assert backoff_delay(0, rand=lambda: 0.0) == 0.5
    assert backoff_delay(2, rand=lambda: 0.0) == 2.0
    assert backoff_delay(10, rand=lambda: 0.0) == 8.0
    assert backoff_delay(1, rand=lambda: 1.0) == 0.75


def plan(err, retries_done=0, **kwargs):
    options = {"max_retries": 2, "max_delay": 20.0, "rand": lambda: 0.0, **kwargs}
    return plan_retry(err, retries_done, **options)


def test_it_honours_retry_after_within_the_maximum_and_gives_up_on_longer_waits():
    assert plan(ProviderRateLimited(retry_after=3.0)) == 3.0
    # Longer than we make a person wait: next route.
    assert plan(ProviderRateLimited(retry_after=60.0)) is None
    assert plan(ProviderRateLimited(retry_after=0.0)) == 0.5  # zero means "no opinion": our own backoff


def test_it_never_retries_quota_or_request_errors_and_stops_after_max_retries():
    assert plan(QuotaExceeded()) is None
    assert plan(ContextTooLong()) is None
    assert plan(UpstreamError(), retries_done=2) is None
    assert plan(UpstreamError(), retries_done=1) == 1.0


def test_x_should_retry_overrides_our_judgement_except_for_quota():
    no = UpstreamError()
    no.should_retry_header = False
    yes = BadRequest()
    yes.should_retry_header = True
    quota = QuotaExceeded()
    quota.should_retry_header = True
    assert plan(no) is None
    assert plan(yes) == 0.5
    assert plan(quota) is None


def test_x_should_retry_is_read_from_the_response():
    err = error_from_response(503, b"", {"x-should-retry": "false"})
    assert err.should_retry_header is False


def test_a_one_second_wait_is_singular():
    assert "Wait about 1 second and try again." in ProviderRateLimited(retry_after=0.8).user_message
    assert "Wait about 3 seconds and try again." in ProviderRateLimited(retry_after=3).user_message


@pytest.mark.parametrize(
    ("detail", "ending"),
    [
        ("The server had an error while processing your request. Sorry about that!", "Sorry about that!"),
        ("Is the model loaded?", "Is the model loaded?"),
        ("Bad gateway.", "Bad gateway."),
        ("Bad gateway", "Bad gateway."),
    ],
)
def test_an_upstream_detail_ends_its_sentence_once(detail, ending):
    message = errors.LLMError(detail, provider_name="OpenAI").user_message
    assert message.endswith(ending) and not message.endswith(("!.", "?.", ".."))
    said = errors.MidStreamError(detail, provider_name="OpenAI").user_message
    assert f"{ending} Try regenerating the answer." in said
