"""The SSE decoder on bytes: framing, splitting anywhere, chunk interpretation, in-stream errors.

Pure unit tests: no network, no database.
"""

from __future__ import annotations

import itertools
import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conversations.llm.errors import MidStreamError, QuotaExceeded
from conversations.llm.events import Finish, ReasoningDelta, RefusalDelta, TextDelta, Usage
from conversations.llm.sse import ServerSentEvent, SSEDecoder, StreamDecoder

NEWLINES = (b"\n", b"\r", b"\r\n")


def feed_all(decoder, pieces):
    out = []
    for piece in pieces:
        out.extend(decoder.feed(piece))
    out.extend(decoder.close())
    return out


def cut(data: bytes, points: list[int]) -> list[bytes]:
    bounds = [0, *sorted(set(points)), len(data)]
    return [data[a:b] for a, b in itertools.pairwise(bounds)]


def chunk(delta: dict | None = None, finish: str | None = None, **extra) -> bytes:
    choices = [{"index": 0, "delta": delta or {}, "finish_reason": finish}]
    return json.dumps(
        {"object": "chat.completion.chunk", "choices": choices, **extra}, ensure_ascii=False
    ).encode()


def sse(*payloads: bytes, nl: bytes = b"\n") -> bytes:
    return b"".join(b"data: " + p + nl + nl for p in payloads)


# --- Framing ---------------------------------------------------------------------------------------------------


def test_it_splits_events_on_every_blank_line_form():
    body = b"data: a\n\ndata: b\r\rdata: c\r\n\r\ndata: d\r\n\ndata: e\n\r\n"
    assert [e.data for e in feed_all(SSEDecoder(), [body])] == ["a", "b", "c", "d", "e"]


def test_it_joins_multi_line_data_with_newlines():
    events = feed_all(SSEDecoder(), [b"data: one\ndata:two\r\ndata:  three\r\n\n"])
    assert events == [ServerSentEvent("message", "one\ntwo\n three")]


def test_it_ignores_comments_and_counts_them():
    decoder = SSEDecoder()
    events = feed_all(decoder, [b": OPENROUTER PROCESSING\n\n:ping\n\ndata: x\n: inside\n\n"])
    assert events == [ServerSentEvent("message", "x")]
    assert decoder.comments == 3


def test_it_reads_event_types_and_ids():
    events = feed_all(SSEDecoder(), [b"event: error\nid: 7\ndata: {}\n\ndata: next\n\n"])
    assert events == [ServerSentEvent("error", "{}", "7"), ServerSentEvent("message", "next", "7")]


def test_a_cr_at_the_end_of_a_piece_and_lf_at_the_start_of_the_next_is_one_line_end():
    decoder = SSEDecoder()
    # If CR and LF counted as two line ends, the empty "line" between them would dispatch "a" alone.
    assert decoder.feed(b"data: a\r") == []
    assert decoder.feed(b"\ndata: b\r") == []
    assert decoder.feed(b"\n\r") == [ServerSentEvent("message", "a\nb")]
    assert decoder.feed(b"\n") == []  # the LF that completes the CRLF blank line, not another event


def test_a_lone_cr_followed_by_data_is_a_line_end():
    decoder = SSEDecoder()
    assert decoder.feed(b"data: a\r") == []
    assert decoder.feed(b"\r") == [ServerSentEvent("message", "a")]


def test_it_decodes_utf8_only_after_splitting():
    body = "data: héllo 世界 🙂\n\n".encode()
    pieces = [body[i : i + 1] for i in range(len(body))]  # every multi-byte character is cut
    assert feed_all(SSEDecoder(), pieces) == [ServerSentEvent("message", "héllo 世界 🙂")]


def test_it_strips_a_leading_byte_order_mark_even_when_split():
    assert feed_all(SSEDecoder(), [b"\xef", b"\xbb", b"\xbfdata: x\n\n"]) == [ServerSentEvent("message", "x")]


def test_it_flushes_an_unterminated_last_event_at_close():
    assert feed_all(SSEDecoder(), [b"data: [DONE]"]) == [ServerSentEvent("message", "[DONE]")]


# --- Property: any split gives the same events ------------------------------------------------------------------

line_text = st.text(st.characters(exclude_characters="\r\n", exclude_categories=("Cs",)), max_size=12)


@st.composite
def sse_streams(draw):
    """A valid stream with mixed line endings, comments and multi-line data, plus the events it encodes."""
    lines: list[bytes] = []
    expected: list[ServerSentEvent] = []
    for _ in range(draw(st.integers(1, 6))):
        for comment in draw(st.lists(line_text, max_size=2)):
            lines.append(b":" + comment.encode())
        event_type = draw(st.none() | st.sampled_from(["error", "message", "ping", "ünïcode"]))
        if event_type is not None:
            lines.append(b"event: " + event_type.encode())
        data = draw(st.lists(line_text, min_size=1, max_size=3))
        lines.extend(b"data: " + d.encode() for d in data)
        lines.append(b"")  # the blank line that dispatches
        expected.append(ServerSentEvent(event_type or "message", "\n".join(data)))
    endings = draw(st.lists(st.sampled_from(NEWLINES), min_size=len(lines), max_size=len(lines)))
    out = b""
    previous = b""
    for line, ending in zip(lines, endings, strict=True):
        if not line and previous == b"\r" and ending == b"\n":
            ending = b"\r\n"  # "\r" then "\n" would read as one CRLF, not as a blank line
        out += line + ending
        previous = ending
    return out, expected


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(data=st.data())
def test_any_split_of_a_valid_stream_yields_the_same_events(data):
    body, expected = data.draw(sse_streams())
    points = data.draw(st.lists(st.integers(0, len(body)), max_size=len(body)))
    assert feed_all(SSEDecoder(), cut(body, points)) == expected


@st.composite
def chat_streams(draw):
    nl = draw(st.sampled_from(NEWLINES))
    keepalive = draw(st.booleans())
    tokens = draw(st.lists(st.text(min_size=1, max_size=6), min_size=1, max_size=8))
    reasoning = draw(st.lists(st.text(min_size=1, max_size=6), max_size=3))
    parts = [chunk({"role": "assistant", "content": ""})]
    expected: list = []
    for r in reasoning:
        parts.append(chunk({"reasoning": r}))
        expected.append(ReasoningDelta(r))
    for t in tokens:
        parts.append(chunk({"content": t}))
        expected.append(TextDelta(t))
    parts.append(chunk({}, "stop"))
    expected.append(Finish("stop"))
    parts.append(json.dumps({"choices": [], "usage": {"prompt_tokens": 9, "completion_tokens": 4}}).encode())
    expected.append(Usage(9, 4))
    body = b""
    for part in [*parts, b"[DONE]"]:
        if keepalive:
            body += b": ping" + nl + nl
        body += b"data: " + part + nl + nl
    return body, expected


@settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(data=st.data())
def test_any_split_of_a_chat_stream_yields_the_same_typed_events(data):
    body, expected = data.draw(chat_streams())
    points = data.draw(st.lists(st.integers(0, len(body)), max_size=40))
    decoder = StreamDecoder()
    assert feed_all(decoder, cut(body, points)) == expected
    assert decoder.finished and decoder.done


@pytest.mark.parametrize("nl", NEWLINES)
def test_one_byte_pieces_give_the_same_events_as_the_whole_body(nl):
    body = sse(
        chunk({"role": "assistant", "content": ""}),
        chunk({"content": "né 世"}),
        chunk({"content": "🙂\r\n"}),
        chunk({}, "stop"),
        b"[DONE]",
        nl=nl,
    )
    whole = feed_all(StreamDecoder(), [body])
    bytewise = feed_all(StreamDecoder(), [body[i : i + 1] for i in range(len(body))])
    assert whole == bytewise == [TextDelta("né 世"), TextDelta("🙂\r\n"), Finish("stop")]


# --- Chunk interpretation --------------------------------------------------------------------------------------


def test_it_reports_reasoning_refusal_and_content_separately():
    body = sse(
        chunk({"reasoning_content": "hmm"}),
        chunk({"reasoning": "so"}),
        chunk({"refusal": "I can't"}),
        chunk({"content": "ok"}),
    )
    assert feed_all(StreamDecoder(), [body]) == [
        ReasoningDelta("hmm"),
        ReasoningDelta("so"),
        RefusalDelta("I can't"),
        TextDelta("ok"),
    ]


def test_it_keeps_reading_after_the_finish_chunk_for_usage_with_cached_tokens():
    usage = {
        "prompt_tokens": 100,
        "completion_tokens": 5,
        "prompt_tokens_details": {"cached_tokens": 64},
        "completion_tokens_details": {"reasoning_tokens": 2},
    }
    body = sse(
        chunk({"content": "hi"}, usage=None),
        chunk({}, "length"),
        json.dumps({"choices": [], "usage": usage}).encode(),
    )
    decoder = StreamDecoder()
    events = feed_all(decoder, [body + b"data: [DONE]\n\n"])
    assert events == [TextDelta("hi"), Finish("length"), Usage(100, 5, 64, 2)]
    assert decoder.usage == Usage(100, 5, 64, 2)


def test_it_accepts_usage_on_the_finish_chunk_like_llama_cpp():
    body = sse(chunk({"content": "x"}, "stop", usage={"prompt_tokens": 3, "completion_tokens": 1}), b"[DONE]")
    assert feed_all(StreamDecoder(), [body]) == [TextDelta("x"), Finish("stop"), Usage(3, 1)]


def test_it_tolerates_empty_data_frames_and_a_missing_finish_reason_before_done():
    body = b"data:\n\ndata: \n\n" + sse(chunk({"content": "a"}, ""), b"[DONE]")
    decoder = StreamDecoder()
    assert feed_all(decoder, [body]) == [TextDelta("a"), Finish("stop")]
    assert decoder.finished


def test_a_stream_without_finish_or_done_is_not_finished():
    decoder = StreamDecoder()
    feed_all(decoder, [sse(chunk({"content": "a"})) + b'data: {"choices": [{"del'])
    assert not decoder.finished


def test_a_finish_reason_without_done_counts_as_finished():
    decoder = StreamDecoder()
    feed_all(decoder, [sse(chunk({"content": "a"}), chunk({}, "content_filter"))])
    assert decoder.finished and decoder.finish_reason == "content_filter" and not decoder.done


def test_it_ignores_everything_after_done():
    events = feed_all(StreamDecoder(), [sse(chunk({}, "stop"), b"[DONE]", chunk({"content": "late"}))])
    assert events == [Finish("stop")]


def test_an_openai_error_object_in_the_stream_raises_a_typed_error():
    error = {
        "error": {"message": "The server had an error", "type": "server_error", "param": None, "code": None}
    }
    decoder = StreamDecoder("gpt-4o")
    with pytest.raises(MidStreamError) as caught:
        feed_all(decoder, [sse(chunk({"content": "a"}), json.dumps(error).encode())])
    assert caught.value.detail == "The server had an error"
    assert caught.value.model_id == "gpt-4o"


def test_an_openrouter_error_with_finish_reason_error_raises_a_typed_error():
    payload = chunk({"content": ""}, "error", error={"code": 502, "message": "Provider returned error"})
    with pytest.raises(MidStreamError) as caught:
        feed_all(StreamDecoder(), [sse(payload)])
    assert caught.value.status == 502


def test_an_openrouter_out_of_credits_error_mid_stream_keeps_its_meaning():
    payload = json.dumps({"error": {"code": 402, "message": "Insufficient credits"}}).encode()
    with pytest.raises(QuotaExceeded):
        feed_all(StreamDecoder(), [sse(payload)])


def test_an_old_vllm_flat_error_raises_a_typed_error():
    payload = json.dumps({"object": "error", "message": "boom", "type": "InternalServerError", "code": 500})
    with pytest.raises(MidStreamError, match="boom"):
        feed_all(StreamDecoder(), [sse(payload.encode())])


def test_an_error_event_type_raises_a_typed_error():
    with pytest.raises(MidStreamError, match="overloaded"):
        feed_all(StreamDecoder(), [b'event: error\ndata: {"message": "overloaded"}\n\n'])


def test_a_non_json_event_is_skipped_unless_it_looks_like_an_error():
    assert feed_all(StreamDecoder(), [b"data: hello\n\n" + sse(chunk({"content": "a"}))]) == [TextDelta("a")]
    with pytest.raises(MidStreamError):
        feed_all(StreamDecoder(), [b"data: error: out of memory\n\n"])


def _chunk(obj) -> bytes:
    return b"data: " + json.dumps(obj).encode() + b"\n\n"


def test_an_error_after_text_in_one_piece_comes_after_that_text():
    # One socket read can hold the last tokens and the error that ended the answer: the tokens first.
    decoder = StreamDecoder("gpt-4o")
    text = _chunk({"choices": [{"delta": {"content": "Hello"}}]})
    error = _chunk({"error": {"message": "The server had an error", "type": "server_error"}})
    assert decoder.feed(text + error) == [TextDelta("Hello")]
    with pytest.raises(MidStreamError):
        decoder.raise_pending()
    decoder.raise_pending()  # raised once


def test_an_error_kept_back_is_raised_by_the_next_feed_or_close():
    for finish in ("feed", "close"):
        decoder = StreamDecoder("gpt-4o")
        piece = _chunk({"choices": [{"delta": {"content": "Hi"}}]}) + _chunk({"error": {"message": "boom"}})
        assert decoder.feed(piece) == [TextDelta("Hi")]
        with pytest.raises(MidStreamError):
            decoder.feed(b"data: [DONE]\n\n") if finish == "feed" else decoder.close()


def test_an_error_alone_in_a_piece_is_raised_at_once():
    decoder = StreamDecoder("gpt-4o")
    with pytest.raises(MidStreamError):
        decoder.feed(_chunk({"error": {"message": "boom"}}))


def test_chunks_the_fast_parser_refuses_are_read_as_the_standard_library_reads_them():
    """llm/sse.py parses with orjson and falls back to json: a lone surrogate escape (a model cut mid-emoji),
    an integer past 64 bits and NaN are all still text and usage, as before."""
    body = sse(
        b'{"choices":[{"index":0,"delta":{"content":"half \\ud83d"},"finish_reason":null}]}',
        b'{"id":123456789012345678901234567890,"choices":[{"index":0,"delta":{"content":"big"}}]}',
        b'{"choices":[{"index":0,"delta":{"content":"nan"},"logprob":NaN,"finish_reason":"stop"}],'
        b'"usage":{"prompt_tokens":3,"completion_tokens":2}}',
        b"[DONE]",
    )
    assert feed_all(StreamDecoder(), [body]) == [
        TextDelta("half \ud83d"),
        TextDelta("big"),
        TextDelta("nan"),
        Finish("stop"),
        Usage(3, 2),
    ]
