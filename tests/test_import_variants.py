"""Imports of the layouts real exports come in beyond tests/data/imports/: ChatGPT's 2023 plugins era and its
2025 reasoning channels and nulls, Claude's per-chat API object, Open WebUI's first (bare) exports and its
`output` items and the images its messages carry inline, LibreChat's oldest messages, Chatbot UI v1 with its keys in another order, zips of per-chat
files, and timestamps in every unit. Each fixture is written here by hand, in the shape those apps write."""

from __future__ import annotations

import base64
import datetime as dt
import io
import json
import random

import pytest
from PIL import Image

from conversations.models import Conversation
from conversations.services.imports import jobs, writer
from conversations.services.imports.drafts import when
from tests.test_imports import path_to, png, reasons, upload, zipped

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _inline(monkeypatch, tmp_path, settings):
    monkeypatch.setattr(jobs, "RUN_INLINE", True)
    settings.CHAT_IMPORT_DIR = tmp_path / "imports"


# --- ChatGPT -----------------------------------------------------------------------------------------------------


def gpt_message(nid, role, content, t=None, *, recipient="all", name=None, metadata=None, channel=None):
    return {
        "id": nid,
        "author": {"role": role, "name": name, "metadata": {}},
        "create_time": t,
        "update_time": None,
        "content": content,
        "status": "finished_successfully",
        "end_turn": None,
        "weight": 1.0,
        "metadata": {} if metadata is None else metadata,
        "recipient": recipient,
        "channel": channel,
    }


def gpt_conversation(cid, title, chain, **extra) -> dict:
    """A ChatGPT conversation whose nodes form one chain, in the order given (None: an empty root)."""
    mapping, previous = {}, None
    for nid, message in chain:
        mapping[nid] = {"id": nid, "message": message, "parent": previous, "children": []}
        if previous:
            mapping[previous]["children"].append(nid)
        previous = nid
    return {
        "title": title,
        "create_time": 1690000000.25,
        "update_time": 1690000300.75,
        "mapping": mapping,
        "moderation_results": [],
        "current_node": previous,
        "plugin_ids": None,
        "conversation_id": cid,
        "conversation_template_id": None,
        "gizmo_id": None,
        "is_archived": False,
        "id": cid,
        **extra,
    }


def text_part(*parts):
    return {"content_type": "text", "parts": list(parts)}


def test_a_2023_chatgpt_export_with_plugins_and_code_keeps_only_the_conversation(client, alice):
    instructions = {"about_user_message": "I sail.", "about_model_message": "Use knots."}
    chat = gpt_conversation(
        "2023-a",
        "Wind",
        [
            ("root", None),
            (
                "sys",
                gpt_message(
                    "sys",
                    "system",
                    text_part(""),
                    metadata={"user_context_message_data": instructions, "is_user_system_message": True},
                ),
            ),
            ("q", gpt_message("q", "user", text_part("Wind at Lista?"), 1690000001)),
            (
                "call",
                gpt_message(
                    "call",
                    "assistant",
                    text_part('{"spot": "Lista"}'),
                    1690000002,
                    recipient="Windy.forecast",
                ),
            ),
            ("out", gpt_message("out", "tool", text_part('{"kn": 18}'), 1690000003, name="Windy.forecast")),
            (
                "code",
                gpt_message(
                    "code",
                    "assistant",
                    {"content_type": "code", "language": "unknown", "text": "18 * 0.514"},
                    1690000004,
                    recipient="python",
                ),
            ),
            (
                "result",
                gpt_message(
                    "result",
                    "tool",
                    {"content_type": "execution_output", "text": "9.252"},
                    1690000005,
                    name="python",
                ),
            ),
            (
                "a",
                gpt_message(
                    "a",
                    "assistant",
                    text_part("18 knots."),
                    1690000006,
                    metadata={
                        "model_slug": "gpt-4-plugins",
                        "finish_details": {"type": "stop", "stop_tokens": [1]},
                    },
                ),
            ),
        ],
    )
    job = upload(client, alice, json.dumps([chat]).encode())
    assert job["status"] == "done", job
    why = reasons(job)
    assert why["plugin or tool call"] == 1 and why["code run"] == 1
    assert why["results from tools (searches, code output, plugins)"] == 2
    wind = Conversation.objects.get(owner=alice, title="Wind")
    assert path_to(wind) == ["Wind at Lista?", "18 knots."]
    assert wind.system_prompt == "About me:\nI sail.\n\nHow to respond:\nUse knots."
    assert wind.messages.get(role="assistant").model_name == "gpt-4-plugins"


def test_a_visible_question_carrying_the_custom_instructions_is_kept(client, alice):
    instructions = {"about_user_message": "I sail.", "about_model_message": ""}
    chat = gpt_conversation(
        "2023-b",
        "Knots",
        [
            ("root", None),
            (
                "q",
                gpt_message(
                    "q",
                    "user",
                    text_part("What is a knot?"),
                    1690000001,
                    metadata={"user_context_message_data": instructions},
                ),
            ),
            ("a", gpt_message("a", "assistant", text_part("A nautical mile per hour."), 1690000002)),
        ],
    )
    job = upload(client, alice, json.dumps([chat]).encode())
    knots = Conversation.objects.get(owner=alice, title="Knots")
    assert job["status"] == "done"
    assert path_to(knots) == ["What is a knot?", "A nautical mile per hour."]
    assert knots.system_prompt == "About me:\nI sail."


def test_chatgpt_reasoning_channels_and_nulls_in_2025_exports(client, alice):
    chat = gpt_conversation(
        "2025-a",
        None,  # untitled chats export a null title
        [
            ("root", None),
            ("broken", {"id": "broken", "author": None, "content": None, "metadata": None}),
            ("q", gpt_message("q", "user", text_part(None, "Is 91 prime?"), None)),
            (
                "thoughts",
                gpt_message(
                    "thoughts",
                    "assistant",
                    {"content_type": "thoughts", "thoughts": [{"summary": "Divide", "content": "7*13"}]},
                    1740000001,
                    channel="analysis",
                ),
            ),
            (
                "cot",
                gpt_message(
                    "cot", "assistant", text_part("7 times 13 is 91."), 1740000002, channel="analysis"
                ),
            ),
            (
                "recap",
                gpt_message(
                    "recap", "assistant", {"content_type": "reasoning_recap", "content": "Thought for 3s"}
                ),
            ),
            (
                "a",
                gpt_message(
                    "a",
                    "assistant",
                    text_part("No: 7 x 13."),
                    "2025-02-19T21:20:05.123Z",
                    channel="final",
                    metadata=None,
                ),
            ),
        ],
        create_time=None,
        update_time=None,
        is_archived=None,
    )
    job = upload(
        client, alice, json.dumps(chat).encode(), "conversation.json"
    )  # one object, per-chat exporters
    assert job["status"] == "done", job
    [imported] = Conversation.objects.filter(owner=alice)
    assert path_to(imported) == ["Is 91 prime?", "No: 7 x 13."]
    assert not imported.archived
    answer = imported.messages.get(role="assistant")
    assert answer.created_at == dt.datetime(2025, 2, 19, 21, 20, 5, 123000, tzinfo=dt.UTC)
    assert reasons(job)["reasoning summaries (the model's thinking)"] == 2


def test_a_conversation_of_unknown_shape_is_skipped_and_the_rest_imports(client, alice):
    good = gpt_conversation(
        "ok",
        "Fine",
        [
            ("root", None),
            ("q", gpt_message("q", "user", text_part("Hi"), 1)),
            ("a", gpt_message("a", "assistant", text_part("Hello"), 2)),
        ],
    )
    job = upload(client, alice, json.dumps([{"title": "Odd one", "id": "x"}, good]).encode())
    assert job["status"] == "done", job
    assert job["report"]["conversations"] == 1 and job["report"]["format"] == "ChatGPT"
    assert reasons(job)["conversations that could not be read"] == 1
    assert any("Odd one" in p for p in job["report"]["problems"])


def test_a_file_of_no_conversation_we_know_is_refused_with_the_formats_we_read(client, alice):
    job = upload(client, alice, json.dumps([{"foo": 1}, 2, "three"]).encode())
    assert job["status"] == "failed"
    assert "We read a Chatsite export, ChatGPT, Claude, Open WebUI, LibreChat or Chatbot UI" in job["error"]
    assert not Conversation.objects.filter(owner=alice).exists()


# --- Claude -------------------------------------------------------------------------------------------------------


def test_claudes_per_chat_object_keeps_branches_the_star_voice_notes_and_reports_artifacts(client, alice):
    root = "00000000-0000-4000-8000-000000000000"
    chat = {
        "uuid": "cl-api-1",
        "name": "Packing list",
        "summary": "",
        "model": "claude-sonnet-4-20250514",
        "created_at": "2025-06-01T08:00:00.000000+00:00",
        "updated_at": "2025-06-01T08:10:00.000000+00:00",
        "is_starred": True,
        "current_leaf_message_uuid": "a2",
        "settings": {"enabled_web_search": True},
        "chat_messages": [
            {
                "uuid": "q",
                "text": "",
                "content": [{"type": "text", "text": "Packing list for a week?", "citations": []}],
                "sender": "human",
                "index": 0,
                "created_at": "2025-06-01T08:00:01.000000+00:00",
                "parent_message_uuid": root,
                "attachments": [],
                "files": [],
                "files_v2": [{"file_kind": "image", "file_uuid": "f", "file_name": "bag.jpg"}],
            },
            {
                "uuid": "a1",
                "text": "",
                "content": [
                    {"type": "thinking", "thinking": "List it.", "summaries": [{"summary": "Listing"}]},
                    {
                        "type": "tool_use",
                        "name": "artifacts",
                        "input": {"id": "list", "command": "create", "content": "- socks"},
                    },
                    {"type": "tool_result", "name": "artifacts", "content": [{"type": "text", "text": "OK"}]},
                    {"type": "text", "text": "Here is a list.", "citations": []},
                ],
                "sender": "assistant",
                "index": 1,
                "created_at": "2025-06-01T08:00:05.000000+00:00",
                "parent_message_uuid": "q",
            },
            {
                "uuid": "a2",
                "text": None,
                "content": [{"type": "voice_note", "title": "Reply", "text": "Socks, shirts, a jacket."}],
                "sender": "assistant",
                "index": 2,
                "created_at": "2025-06-01T08:01:00.000000+00:00",
                "parent_message_uuid": "q",
                "stop_reason": "user_canceled",
            },
        ],
    }
    job = upload(client, alice, json.dumps(chat).encode(), "claude-chat.json")
    assert job["status"] == "done", job
    packing = Conversation.objects.get(owner=alice, title="Packing list")
    assert packing.pinned
    assert path_to(packing) == [
        "Packing list for a week?\n\n[file not included in export: bag.jpg]",
        "Socks, shirts, a jacket.",
    ]
    assert packing.messages.get(content="Here is a list.").parent.role == "user"  # the other branch
    answer = packing.messages.get(content="Socks, shirts, a jacket.")
    assert answer.model_name == "claude-sonnet-4-20250514" and answer.status == "cancelled"
    why = reasons(job)
    assert why["artifact edit"] == 1 and why["reasoning summaries (the model's thinking)"] == 1


# --- Open WebUI ----------------------------------------------------------------------------------------------


def test_open_webuis_first_exports_list_the_chat_objects_themselves(client, alice):
    chats = [
        {
            "id": "owui-old",
            "title": "Llamas",
            "models": ["llama2:latest"],
            "history": {
                "messages": {
                    "m2": {
                        "id": "m2",
                        "parentId": "m1",
                        "childrenIds": [],
                        "role": "assistant",
                        "content": "Camelids.",
                        "model": "llama2:latest",
                        "timestamp": 1700000001,
                        "done": True,
                    },
                    "m1": {
                        "id": "m1",
                        "parentId": None,
                        "childrenIds": ["m2"],
                        "role": "user",
                        "content": "Llamas?",
                        "timestamp": 1700000000,
                    },
                },
                "currentId": "m2",
            },
            "messages": [],
            "tags": [],
            "timestamp": 1700000000000,
        }
    ]
    job = upload(client, alice, json.dumps(chats).encode(), "chat-export-1700000000000.json")
    assert job["status"] == "done", job
    llamas = Conversation.objects.get(owner=alice, title="Llamas")
    assert path_to(llamas) == ["Llamas?", "Camelids."]
    assert llamas.created_at == dt.datetime(2023, 11, 14, 22, 13, 20, tzinfo=dt.UTC)  # from milliseconds


def test_an_open_webui_answer_kept_only_in_its_output_items_is_imported_with_its_usage(client, alice):
    answer = {
        "id": "r",
        "parentId": "q",
        "childrenIds": [],
        "role": "assistant",
        "content": "",
        "model": "gpt-4o",
        "timestamp": 1745000005,
        "done": True,
        "usage": {"prompt_tokens": 12, "completion_tokens": 4, "total_tokens": 16},
        "output": [
            {"type": "reasoning", "content": [{"type": "output_text", "text": "Hmm."}]},
            {"type": "function_call", "name": "get_time", "arguments": "{}"},
            {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "Noon."}]},
        ],
    }
    question = {
        "id": "q",
        "parentId": None,
        "childrenIds": ["r"],
        "role": "user",
        "content": "Time?",
        "timestamp": 1745000000,
    }
    export = [
        {
            "id": "owui-new",
            "user_id": "u",
            "title": "Clock",
            "chat": {
                "title": "Clock",
                "models": ["gpt-4o"],
                "history": {"messages": {"q": question, "r": answer}, "currentId": "r"},
            },
            "created_at": 1745000000,
            "updated_at": 1745000005,
            "archived": True,
            "pinned": None,
            "meta": {"tags": []},
            "folder_id": None,
        }
    ]
    job = upload(client, alice, json.dumps(export).encode())
    assert job["status"] == "done", job
    clock = Conversation.objects.get(owner=alice, title="Clock")
    assert clock.archived and not clock.pinned
    assert path_to(clock) == ["Time?", "Noon."]
    noon = clock.messages.get(content="Noon.")
    assert (noon.prompt_tokens, noon.completion_tokens, noon.imported_by_id is not None) == (12, 4, True)
    assert reasons(job)["plugin or tool call"] == 1


def data_url(data: bytes, mime="image/png") -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode()}"


def noise_png(side: int) -> bytes:
    """A real PNG of about side * side * 3 bytes (noise doesn't compress)."""
    out = io.BytesIO()
    Image.frombytes("RGB", (side, side), random.Random(side).randbytes(side * side * 3)).save(out, "PNG")
    return out.getvalue()


def owui_message(mid, parent, role, content, t, **extra) -> dict:
    return {
        "id": mid,
        "parentId": parent,
        "childrenIds": [],
        "role": role,
        "content": content,
        "timestamp": t,
    } | extra


def owui_export(cid, title, chain) -> list[dict]:
    messages, previous = {}, None
    for message in chain:
        message["parentId"] = previous
        if previous:
            messages[previous]["childrenIds"].append(message["id"])
        messages[message["id"]] = message
        previous = message["id"]
    return [
        {
            "id": cid,
            "user_id": "u",
            "title": title,
            "chat": {
                "title": title,
                "models": ["llava:7b"],
                "history": {"messages": messages, "currentId": previous},
                "messages": list(messages.values()),
            },
            "created_at": 1730000000,
            "updated_at": 1730000100,
            "archived": False,
            "pinned": False,
            "meta": {"tags": []},
            "folder_id": None,
        }
    ]


def test_open_webui_images_carried_inline_become_attachments_of_the_users_message(
    client, alice, settings, monkeypatch
):
    settings.CHAT_MAX_IMAGE_BYTES = 1024 * 1024
    red, blue, big = png("red"), png("blue"), noise_png(600)
    assert len(big) > 1024 * 1024
    decoded = []
    real_decode = base64.b64decode
    monkeypatch.setattr(
        writer.base64, "b64decode", lambda s, **kw: decoded.append(len(s)) or real_decode(s, **kw)
    )
    red_file = {"type": "image", "url": data_url(red)}
    export = owui_export(
        "owui-pics",
        "Colours",
        [
            # Older versions: the image in `files`; the same one again as a content part counts once.
            owui_message(
                "q1",
                None,
                "user",
                [
                    {"type": "text", "text": "What colour?"},
                    {"type": "image_url", "image_url": {"url": red_file["url"]}},
                ],
                1730000000,
                files=[red_file],
            ),
            owui_message("a1", None, "assistant", "Red.", 1730000001, model="llava:7b"),
            # OpenAI-style content parts only, no text: a message of images alone.
            owui_message(
                "q2",
                None,
                "user",
                [
                    {"type": "image_url", "image_url": {"url": data_url(blue)}},
                    {"type": "image_url", "image_url": {"url": data_url(big)}},  # over the limit
                    {"type": "image_url", "image_url": {"url": data_url(b"GIF89a but not really")}},  # fake
                    {"type": "image_url", "image_url": {"url": "data:image/png;base64,%%not base64%%"}},
                    {
                        "type": "image_url",
                        "image_url": {"url": "https://example.com/cat.png"},
                    },  # never fetched
                ],
                1730000002,
            ),
            # An answer's image: a placeholder, as before.
            owui_message(
                "a2",
                None,
                "assistant",
                "Blue, and a drawing.",
                1730000003,
                files=[{"type": "image", "url": data_url(red)}],
            ),
        ],
    )
    job = upload(client, alice, json.dumps(export).encode())
    assert job["status"] == "done", job
    assert job["report"]["images"] == 2
    why = reasons(job)
    assert why["images not in the file (a placeholder marks each)"] == 2  # the link and the answer's
    assert why["images larger than 1 MB (a placeholder marks each)"] == 1
    assert why["files that were not images this site reads (a placeholder marks each)"] == 1
    assert why["images whose data was damaged (a placeholder marks each)"] == 1
    assert decoded and max(decoded) < len(data_url(big)) - 30  # the oversized one was measured, never decoded

    colours = Conversation.objects.get(owner=alice, title="Colours")
    placeholder = "[image not included in export]"
    assert path_to(colours) == [
        "What colour?",
        "Red.",
        "\n\n".join([placeholder] * 4),  # the link (from the reader), then the three refused
        f"{placeholder}\n\nBlue, and a drawing.",
    ]
    q1 = colours.messages.get(content="What colour?")
    [first] = q1.attachments.all()
    assert (first.mime, first.width, first.height) == ("image/png", 8, 6)
    q2 = colours.messages.get(role="user", content__startswith=placeholder)
    [second] = q2.attachments.all()
    with second.file.open() as stored, Image.open(stored) as image:
        assert image.getpixel((0, 0)) == (0, 0, 255)

    again = upload(client, alice, json.dumps(export).encode())
    assert again["report"]["already_here"] == 1 and again["report"]["images"] == 0


# --- LibreChat and Chatbot UI -----------------------------------------------------------------------------------


def test_librechats_oldest_messages_say_user_in_sender_and_images_leave_a_placeholder(client, alice):
    export = {
        "conversationId": "lc-old",
        "endpoint": "openAI",
        "title": "Colours",
        "exportAt": "10:00:00 GMT+0200 (Central European Summer Time)",
        "branches": False,
        "recursive": False,
        "options": {"model": "gpt-3.5-turbo", "promptPrefix": None, "endpoint": "openAI"},
        "messages": [
            {
                "messageId": "u1",
                "parentMessageId": "00000000-0000-0000-0000-000000000000",
                "sender": "User",
                "text": "What colour is this?",
                "createdAt": "2023-09-01T10:00:00.000Z",
                "files": [
                    {
                        "file_id": "f",
                        "filepath": "/images/u/f.png",
                        "type": "image/png",
                        "width": 8,
                        "height": 8,
                    }
                ],
            },
            {
                "messageId": "a1",
                "parentMessageId": "u1",
                "sender": "GPT-3.5",
                "text": "",
                "content": [
                    {
                        "type": "tool_call",
                        "tool_call": {
                            "id": "c",
                            "type": "code_interpreter",
                            "code_interpreter": {"input": "x"},
                        },
                    },
                    {"type": "text", "text": {"value": "Red.", "annotations": []}},
                ],
                "isCreatedByUser": False,
                "createdAt": "2023-09-01T10:00:02.000Z",
            },
        ],
    }
    job = upload(client, alice, json.dumps(export).encode())
    assert job["status"] == "done", job
    colours = Conversation.objects.get(owner=alice, title="Colours")
    assert path_to(colours) == ["[image not included in export]\n\nWhat colour is this?", "Red."]
    assert colours.messages.get(content="Red.").role == "assistant"
    assert reasons(job)["code run"] == 1


def test_chatbot_ui_v1_with_its_folders_before_its_history(client, alice):
    export = {
        "folders": [{"id": "f", "name": "Work", "type": "chat"}],
        "prompts": [],
        "version": 4,
        "history": [
            {
                "id": "cb-1",
                "name": "Greeting",
                "messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"}],
                "model": {"id": "gpt-4", "name": "GPT-4", "maxLength": 24000, "tokenLimit": 8000},
                "prompt": "Be kind.",
                "temperature": 0.7,
                "folderId": "f",
            }
        ],
    }
    job = upload(client, alice, json.dumps(export).encode(), "chatbot_ui_history.json")
    assert job["status"] == "done", job
    greeting = Conversation.objects.get(owner=alice, title="Greeting")
    assert path_to(greeting) == ["Hi", "Hello!"] and greeting.system_prompt == "Be kind."


# --- Zips of per-chat files, and timestamps -------------------------------------------------------------------------


def test_a_zip_of_per_chat_json_files_imports_each_and_skips_a_broken_one(client, alice):
    def chat(cid, title):
        return gpt_conversation(
            cid,
            title,
            [
                ("root", None),
                ("q", gpt_message("q", "user", text_part(f"{title}?"), 1)),
                ("a", gpt_message("a", "assistant", text_part("Yes."), 2)),
            ],
        )

    body = zipped(
        {
            "ChatGPT/Alpha.json": json.dumps(chat("c-a", "Alpha")).encode(),
            "ChatGPT/Beta.json": json.dumps([chat("c-b", "Beta")]).encode(),
            "ChatGPT/Broken.json": b'{"title": "Bro',
            "user.json": b'{"email": "a@example.com"}',
        }
    )
    job = upload(client, alice, body, "chatgpt-export-json.zip")
    assert job["status"] == "done", job
    assert sorted(Conversation.objects.filter(owner=alice).values_list("title", flat=True)) == [
        "Alpha",
        "Beta",
    ]
    assert reasons(job)["conversations that could not be read"] == 1
    assert any(p.startswith("Broken.json: it is not valid JSON") for p in job["report"]["problems"])


def test_a_zip_of_json_files_none_of_which_can_be_read_imports_nothing(client, alice):
    job = upload(client, alice, zipped({"a.json": b"{oops", "b.json": b'[{"x": 1}]'}), "chats.zip")
    assert job["status"] == "failed" and "We read a Chatsite export, ChatGPT" in job["error"], job


@pytest.mark.parametrize(
    "value",
    [
        1700000000,
        1700000000.0,
        "1700000000",
        1700000000000,  # milliseconds (JavaScript)
        1700000000000000,  # microseconds
        1700000000000000000,  # nanoseconds
        "2023-11-14T22:13:20Z",
        "2023-11-14T22:13:20.000Z",
        "2023-11-14T22:13:20.000000+00:00",
        "2023-11-14 23:13:20+01:00",
    ],
)
def test_timestamps_are_read_in_every_unit_and_iso_form(value):
    assert when(value) == dt.datetime(2023, 11, 14, 22, 13, 20, tzinfo=dt.UTC)


@pytest.mark.parametrize("value", [None, "", "Infinity", "NaN", "Tue Apr 09 2024", True, {"a": 1}, 10**30])
def test_a_timestamp_that_cant_be_read_falls_back(value):
    fallback = dt.datetime(2020, 1, 1, tzinfo=dt.UTC)
    assert when(value, fallback) == fallback
