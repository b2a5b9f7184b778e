"""Builds the import fixtures in this folder: files shaped like real exports of each app (fields, nesting,
nulls and the odd content types that real exports carry), written by hand for these tests, not copied.
Run `python tests/data/imports/make.py` after changing it; the JSON files are committed."""

from __future__ import annotations

import json
from pathlib import Path

HERE = Path(__file__).parent


def node(nid, parent, children, message):
    return {"id": nid, "message": message, "parent": parent, "children": children}


def msg(
    nid,
    role,
    parts,
    t,
    *,
    name=None,
    recipient="all",
    ctype="text",
    metadata=None,
    status="finished_successfully",
    **content,
):
    body = {"content_type": ctype, **content}
    if parts is not None:
        body["parts"] = parts
    return {
        "id": nid,
        "author": {"role": role, "name": name, "metadata": {}},
        "create_time": t,
        "update_time": None,
        "content": body,
        "status": status,
        "end_turn": None,
        "weight": 1.0,
        "metadata": metadata or {},
        "recipient": recipient,
        "channel": None,
    }


def chatgpt() -> list:
    """Three conversations and one broken one, in the 2024-25 layout."""
    T = 1717000000.0
    # 1. Custom instructions (2024 layout), a web search, a code run, a canvas edit, reasoning, a voice turn,
    #    a user image (its file is in the zip), a generated image, a branch, clock skew (answer before question).
    m = {}

    def add(nid, parent, message, children=()):
        m[nid] = node(nid, parent, list(children), message)

    add("r", None, None, ["sys"])
    add(
        "sys",
        "r",
        msg("sys", "system", [""], None, metadata={"is_visually_hidden_from_conversation": True}),
        ["ctx"],
    )
    add(
        "ctx",
        "sys",
        msg(
            "ctx",
            "user",
            None,
            None,
            ctype="user_editable_context",
            user_profile="The user provided the following information about themselves: I live in Oslo.",
            user_instructions="The user provided the additional info about how they would like you to respond: Be brief.",
            metadata={
                "is_visually_hidden_from_conversation": True,
                "user_context_message_data": {
                    "about_user_message": "I live in Oslo.",
                    "about_model_message": "Be brief.",
                },
            },
        ),
        ["u1"],
    )
    add("u1", "ctx", msg("u1", "user", ["Weather in Bergen tomorrow?"], T + 10), ["a1call"])
    add(
        "a1call",
        "u1",
        msg(
            "a1call",
            "assistant",
            None,
            T + 11,
            recipient="web.run",
            ctype="code",
            text='{"search_query": [{"q": "Bergen weather"}]}',
            language="unknown",
            metadata={"model_slug": "gpt-4o"},
        ),
        ["a1out"],
    )
    add(
        "a1out",
        "a1call",
        msg(
            "a1out",
            "tool",
            None,
            T + 12,
            name="web.run",
            ctype="tether_browsing_display",
            result="Rain, 9C",
            summary=None,
        ),
        ["a1think"],
    )
    add(
        "a1think",
        "a1out",
        msg(
            "a1think",
            "assistant",
            None,
            T + 12.5,
            ctype="thoughts",
            thoughts=[{"summary": "Reading", "content": "It rains."}],
            source_analysis_msg_id="x",
        ),
        ["a1recap"],
    )
    add(
        "a1recap",
        "a1think",
        msg("a1recap", "assistant", None, T + 12.6, ctype="reasoning_recap", content="Thought for 2 seconds"),
        ["a1"],
    )
    # clock skew: the answer is stamped before its question
    add(
        "a1",
        "a1recap",
        msg(
            "a1",
            "assistant",
            ["Rain and 9 °C."],
            T + 9.99,
            metadata={"model_slug": "gpt-4o", "finish_details": {"type": "stop"}},
        ),
        ["u2", "u2b"],
    )
    add(
        "u2",
        "a1",
        msg(
            "u2",
            "user",
            [
                {
                    "content_type": "image_asset_pointer",
                    "asset_pointer": "file-service://file-Ab12Cd34Ef56Gh78Ij90Kl",
                    "size_bytes": 100,
                    "width": 8,
                    "height": 6,
                    "metadata": {"dalle": None},
                },
                "Is this jacket enough?",
            ],
            T + 30,
            ctype="multimodal_text",
        ),
        ["a2code"],
    )
    add(
        "a2code",
        "u2",
        msg(
            "a2code",
            "assistant",
            None,
            T + 31,
            recipient="python",
            ctype="code",
            text="print(9 + 1)",
            language="unknown",
        ),
        ["a2out"],
    )
    add(
        "a2out",
        "a2code",
        msg("a2out", "tool", None, T + 32, name="python", ctype="execution_output", text="10"),
        ["a2"],
    )
    add(
        "a2",
        "a2out",
        msg("a2", "assistant", ["Yes, with a fleece."], T + 33, metadata={"model_slug": "gpt-4o"}),
        ["u3"],
    )
    add(
        "u3",
        "a2",
        msg(
            "u3",
            "user",
            [
                {
                    "content_type": "audio_transcription",
                    "text": "Draw me a rainy harbour.",
                    "direction": "in",
                },
                {
                    "content_type": "audio_asset_pointer",
                    "asset_pointer": "sediment://file_00000000aa",
                    "size_bytes": 5000,
                    "format": "wav",
                },
            ],
            T + 40,
            ctype="multimodal_text",
            metadata={"voice_mode_message": True},
        ),
        ["a3call"],
    )
    add(
        "a3call",
        "u3",
        msg(
            "a3call",
            "assistant",
            None,
            T + 41,
            recipient="dalle.text2im",
            ctype="code",
            text='{"prompt": "A rainy harbour"}',
            language="unknown",
        ),
        ["a3img"],
    )
    add(
        "a3img",
        "a3call",
        msg(
            "a3img",
            "tool",
            [
                {
                    "content_type": "image_asset_pointer",
                    "asset_pointer": "file-service://file-Gen00000000000000000001",
                    "width": 1024,
                    "height": 1024,
                    "metadata": {"dalle": {"gen_id": "g1", "prompt": "A rainy harbour at dusk", "seed": 1}},
                }
            ],
            T + 50,
            name="dalle.text2im",
            ctype="multimodal_text",
        ),
        ["a3canvas"],
    )
    add(
        "a3canvas",
        "a3img",
        msg(
            "a3canvas",
            "assistant",
            None,
            T + 51,
            recipient="canmore.create_textdoc",
            ctype="code",
            text='{"name": "poem"}',
            language="json",
        ),
        ["a3"],
    )
    add(
        "a3",
        "a3canvas",
        msg("a3", "assistant", ["Here is your harbour."], T + 52, metadata={"model_slug": "gpt-4o"}),
        [],
    )
    add("u2b", "a1", msg("u2b", "user", ["And Oslo?"], T + 60), ["a2b"])
    add("a2b", "u2b", msg("a2b", "assistant", ["Snow."], T + 61, metadata={"model_slug": "gpt-4o-mini"}), [])
    first = {
        "title": "Bergen weather",
        "create_time": T,
        "update_time": T + 61,
        "mapping": m,
        "moderation_results": [],
        "current_node": "a3",
        "plugin_ids": None,
        "conversation_id": "11111111-1111-4111-8111-111111111111",
        "conversation_template_id": None,
        "gizmo_id": None,
        "is_archived": False,
        "safe_urls": [],
        "default_model_slug": "gpt-4o",
        "id": "11111111-1111-4111-8111-111111111111",
    }

    # 2. 2023 layout: custom instructions in a hidden system message's metadata; archived.
    T2 = 1690000000.0
    m2 = {
        "root2": node("root2", None, ["ci"], None),
        "ci": node(
            "ci",
            "root2",
            ["q"],
            msg(
                "ci",
                "system",
                [""],
                T2,
                metadata={
                    "user_context_message_data": {
                        "about_user_message": "I teach maths.",
                        "about_model_message": "Use simple words.",
                    },
                    "is_user_system_message": True,
                },
            ),
        ),
        "q": node("q", "ci", ["a"], msg("q", "user", ["What is a prime?"], T2 + 5)),
        "a": node(
            "a",
            "q",
            [],
            msg(
                "a",
                "assistant",
                ["A number with exactly two divisors."],
                T2 + 6,
                metadata={"model_slug": "text-davinci-002-render-sha"},
            ),
        ),
    }
    second = {
        "title": "Primes",
        "create_time": T2,
        "update_time": T2 + 6,
        "mapping": m2,
        "current_node": "a",
        "conversation_id": "22222222-2222-4222-8222-222222222222",
        "id": "22222222-2222-4222-8222-222222222222",
        "is_archived": True,
        "default_model_slug": None,
    }
    # 3. No mapping at all: skipped, the rest imports.
    broken = {
        "title": "Broken chat",
        "create_time": T2,
        "update_time": T2,
        "conversation_id": "33333333-3333-4333-8333-333333333333",
        "current_node": None,
    }
    # 4. Its nodes listed children-first (order in the file must not matter).
    m4 = {
        "z3": node("z3", "z2", [], msg("z3", "assistant", ["Second answer"], T2 + 30)),
        "z2": node("z2", "z1", ["z3"], msg("z2", "user", ["Second question"], T2 + 20)),
        "z1": node("z1", "z0", ["z2"], msg("z1", "assistant", ["First answer"], T2 + 10)),
        "z0": node("z0", None, ["z1"], msg("z0", "user", ["First question"], T2)),
    }
    fourth = {
        "title": "Backwards",
        "create_time": T2,
        "update_time": T2 + 30,
        "mapping": m4,
        "current_node": "z3",
        "conversation_id": "44444444-4444-4444-8444-444444444444",
        "id": "44444444-4444-4444-8444-444444444444",
    }
    return [first, second, broken, fourth]


def claude() -> list:
    return [
        {
            "uuid": "c1a0d000-0000-4000-8000-000000000001",
            "name": "Sourdough",
            "created_at": "2024-05-01T10:00:00.000000Z",
            "updated_at": "2024-05-01T10:05:00.000000Z",
            "account": {"uuid": "acc"},
            "chat_messages": [
                {
                    "uuid": "m1",
                    "text": "How long to proof?",
                    "content": [{"type": "text", "text": "How long to proof?", "citations": []}],
                    "sender": "human",
                    "created_at": "2024-05-01T10:00:00Z",
                    "updated_at": "2024-05-01T10:00:00Z",
                    "attachments": [],
                    "files": [],
                },
                {
                    "uuid": "m2",
                    "text": "",
                    "content": [
                        {"type": "thinking", "thinking": "Depends."},
                        {"type": "tool_use", "name": "web_search", "input": {"query": "proof"}},
                        {"type": "tool_result", "name": "web_search", "content": []},
                        {"type": "text", "text": "About 4 hours at room temperature."},
                    ],
                    "sender": "assistant",
                    "created_at": "2024-05-01T10:00:05Z",
                    "updated_at": "2024-05-01T10:00:05Z",
                    "attachments": [],
                    "files": [],
                },
                {
                    "uuid": "m3",
                    "text": "Here is my recipe",
                    "content": [{"type": "text", "text": "Here is my recipe"}],
                    "sender": "human",
                    "created_at": "2024-05-01T10:01:00Z",
                    "attachments": [
                        {
                            "file_name": "recipe.txt",
                            "file_size": 20,
                            "file_type": "txt",
                            "extracted_content": "500 g flour",
                        }
                    ],
                    "files": [{"file_name": "photo.jpg"}],
                },
                {
                    "uuid": "m4",
                    "text": "Looks good.",
                    "content": None,
                    "sender": "assistant",
                    "created_at": "2024-05-01T10:01:05Z",
                    "attachments": [],
                    "files": [],
                },
            ],
        },
        {
            "uuid": "c1a0d000-0000-4000-8000-000000000002",
            "name": "",
            "created_at": "2024-05-02T10:00:00Z",
            "updated_at": None,
            "account": {"uuid": "acc"},
            "chat_messages": [],
        },
    ]


def openwebui() -> list:
    return [
        {
            "id": "ow-1",
            "user_id": "u",
            "title": "Regenerated",
            "chat": {
                "id": "",
                "title": "Regenerated",
                "models": ["llama3.1:8b"],
                "params": {"system": "You are terse."},
                "history": {
                    "currentId": "b2",
                    "messages": {
                        "b2": {
                            "id": "b2",
                            "parentId": "q1",
                            "childrenIds": [],
                            "role": "assistant",
                            "content": '<details type="reasoning" done="true"><summary>Thought</summary>hmm</details>Second try.',
                            "model": "llama3.1:8b",
                            "timestamp": 1700000020,
                        },
                        "q1": {
                            "id": "q1",
                            "parentId": None,
                            "childrenIds": ["b1", "b2"],
                            "role": "user",
                            "content": "Say hi",
                            "timestamp": 1700000000,
                            "files": [{"type": "image", "url": "data:image/png;base64,iVBOR"}],
                        },
                        "b1": {
                            "id": "b1",
                            "parentId": "q1",
                            "childrenIds": [],
                            "role": "assistant",
                            "content": "First try.",
                            "model": "llama3.1:8b",
                            "timestamp": 1700000010,
                        },
                    },
                },
                "messages": [],
                "timestamp": 1700000000000,
            },
            "updated_at": 1700000020,
            "created_at": 1700000000,
            "share_id": None,
            "archived": False,
            "pinned": True,
            "meta": {},
            "folder_id": None,
        }
    ]


def librechat_flat() -> dict:
    return {
        "conversationId": "lc-1",
        "title": "Flat branches",
        "endpoint": "openAI",
        "options": {"model": "gpt-4o", "promptPrefix": "Speak French."},
        "messages": [
            {
                "messageId": "l3",
                "parentMessageId": "l1",
                "text": "Bonjour (bis)",
                "sender": "GPT-4o",
                "isCreatedByUser": False,
                "createdAt": "2024-03-01T10:00:09.000Z",
                "model": "gpt-4o",
                "tokenCount": 5,
            },
            {
                "messageId": "l1",
                "parentMessageId": "00000000-0000-0000-0000-000000000000",
                "text": "Hello",
                "sender": "User",
                "isCreatedByUser": True,
                "createdAt": "2024-03-01T10:00:00.000Z",
            },
            {
                "messageId": "l2",
                "parentMessageId": "l1",
                "text": "",
                "content": [{"type": "think", "think": "..."}, {"type": "text", "text": "Bonjour"}],
                "sender": "GPT-4o",
                "isCreatedByUser": False,
                "createdAt": "2024-03-01T10:00:05.000Z",
                "model": "gpt-4o",
            },
        ],
    }


def librechat_tree() -> dict:
    return {
        "conversationId": "lc-2",
        "title": "Tree",
        "endpoint": "openAI",
        "recursive": True,
        "options": {},
        "messagesTree": [
            {
                "messageId": "t1",
                "parentMessageId": "00000000-0000-0000-0000-000000000000",
                "text": "Q",
                "isCreatedByUser": True,
                "createdAt": "2024-03-02T10:00:00Z",
                "children": [
                    {
                        "messageId": "t2",
                        "parentMessageId": "t1",
                        "text": "A1",
                        "isCreatedByUser": False,
                        "createdAt": "2024-03-02T10:00:01Z",
                        "children": [],
                    },
                    {
                        "messageId": "t3",
                        "parentMessageId": "t1",
                        "text": "A2",
                        "isCreatedByUser": False,
                        "createdAt": "2024-03-02T10:00:02Z",
                        "children": [
                            {
                                "messageId": "t4",
                                "parentMessageId": "t3",
                                "text": "Thanks",
                                "isCreatedByUser": True,
                                "createdAt": "2024-03-02T10:00:03Z",
                                "children": [],
                            }
                        ],
                    },
                ],
            }
        ],
    }


def chatbotui_v1() -> dict:
    return {
        "version": 4,
        "history": [
            {
                "id": "cb-1",
                "name": "Poem",
                "messages": [
                    {"role": "user", "content": "A poem"},
                    {"role": "assistant", "content": "Roses..."},
                ],
                "model": {"id": "gpt-3.5-turbo", "name": "GPT-3.5", "maxLength": 12000, "tokenLimit": 4000},
                "prompt": "You are a poet.",
                "temperature": 0.7,
                "folderId": None,
            },
        ],
        "folders": [],
        "prompts": [],
    }


def chatbotui_v2() -> dict:
    history = [
        {
            "id": "cb-2",
            "name": "Old chat",
            "messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"}],
            "model": {"id": "gpt-4"},
            "prompt": "",
            "folderId": None,
        }
    ]
    return {
        "conversationHistory": json.dumps(history),
        "folders": "[]",
        "selectedConversation": json.dumps(history[0]),
        "apiKey": "",
    }


if __name__ == "__main__":
    files = {
        "chatgpt_conversations.json": chatgpt(),
        "claude_conversations.json": claude(),
        "openwebui_export.json": openwebui(),
        "librechat_messages.json": librechat_flat(),
        "librechat_tree.json": librechat_tree(),
        "chatbotui_v1.json": chatbotui_v1(),
        "chatbotui_v2.json": chatbotui_v2(),
    }
    for name, data in files.items():
        (HERE / name).write_text(json.dumps(data, indent=1, ensure_ascii=False) + "\n")
