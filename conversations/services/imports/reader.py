"""Reading conversations out of the JSON one at a time, with ijson: memory holds one conversation, never the
file. The top level may be a list of conversations (ChatGPT, Claude, Open WebUI, Chatbot UI's first exports),
an object holding such a list (ours: "conversations"; Chatbot UI: "history"; Chatbot UI v2's storage dump:
"conversationHistory", a JSON string), or a single conversation object (per-chat exporters, LibreChat)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import BinaryIO

import ijson

from conversations.services.imports.archive import refuse

LISTS = ("conversations", "history", "chats", "items")  # keys whose list is streamed item by item
STARTS, ENDS = ("start_map", "start_array"), ("end_map", "end_array")


def _first_char(stream: BinaryIO) -> bytes:
    head = stream.read(64)
    stream.seek(0)
    stripped = head.lstrip(b"\xef\xbb\xbf \t\r\n")
    return stripped[:1]


def _build(events: Iterator, event: str, value):
    builder = ijson.ObjectBuilder()
    builder.event(event, value)
    depth = 1 if event in STARTS else 0
    while depth:
        _, event, value = next(events)
        builder.event(event, value)
        if event in STARTS:
            depth += 1
        elif event in ENDS:
            depth -= 1
    return builder.value


def conversations(stream: BinaryIO) -> Iterator[tuple[dict, object]]:
    """(header, item) pairs: `header` holds the top-level object's other keys seen so far (ours: format,
    version). Raises InvalidInput for a file that is not JSON or holds no conversations at all."""
    first = _first_char(stream)
    if first not in (b"[", b"{"):
        refuse("it is not a JSON file or a zip.")
    events = iter(ijson.parse(stream, use_float=True))
    header: dict = {}
    try:
        if first == b"[":
            next(events)  # start_array
            for _, event, value in events:
                if event == "end_array":
                    return
                yield header, _build(events, event, value)
            return
        next(events)  # start_map
        streamed = False
        for prefix, event, value in events:
            if prefix == "" and event == "end_map":
                break
            if event != "map_key":
                continue
            key = value
            _, event, value = next(events)
            if key in LISTS and event == "start_array":
                streamed = True
                for _, item_event, item_value in events:
                    if item_event == "end_array":
                        break
                    yield header, _build(events, item_event, item_value)
            else:
                header[key] = _build(events, event, value)
        if not streamed:
            stored = header.get("conversationHistory")  # Chatbot UI v2's dump of the browser's storage
            if isinstance(stored, str):
                try:
                    items = json.loads(stored)
                except ValueError:
                    items = None
                if isinstance(items, list):
                    for item in items:
                        yield header, item
                    return
            yield {}, header  # a single conversation object
    except ijson.common.IncompleteJSONError as exc:
        refuse(f"it is not valid JSON ({str(exc).splitlines()[0][:80]}).")
    except ijson.JSONError as exc:
        refuse(f"it is not valid JSON ({str(exc).splitlines()[0][:80]}).")
