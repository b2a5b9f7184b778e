"""Claude.ai's data export: conversations.json, a list of {uuid, name, created_at, chat_messages: [{uuid,
sender: human|assistant, text, content: [{type: text|thinking|tool_use|tool_result, ...}], created_at,
parent_message_uuid?, attachments, files}]}. Older exports have no parent ids: the messages form one chain."""

from __future__ import annotations

from conversations.services.imports.drafts import Draft, DraftMessage, Report, Unreadable, text, when
from conversations.services.imports.tree import Node, build

NAME = "Claude"
ROOT = "00000000-0000-4000-8000-000000000000"  # Claude's parent of a first message


def looks_like(item: dict) -> bool:
    return "chat_messages" in item or ("uuid" in item and "name" in item and "account" in item)


def _tool_kind(name: str) -> str:
    if "search" in name or "fetch" in name:
        return "web"
    if name == "artifacts":  # side documents, as ChatGPT's canvas
        return "artifact"
    if name in ("repl", "analysis_tool") or "code" in name:
        return "code"
    return "plugin"


def _body(m: dict, report: Report) -> str:
    pieces = []
    blocks = m.get("content")
    if isinstance(blocks, list) and blocks:
        for block in blocks:
            if not isinstance(block, dict):
                continue
            kind = block.get("type")
            if kind in ("text", "voice_note"):  # a voice note carries its transcript
                pieces.append(text(block.get("text")))
            elif kind in ("thinking", "redacted_thinking"):
                report.skip("reasoning summaries (the model's thinking)")
            elif kind == "tool_use":
                report.tools[_tool_kind(text(block.get("name")).lower())] += 1
            elif kind in ("image", "document"):
                pieces.append(
                    "[image not included in export]" if kind == "image" else "[file not included in export]"
                )
                report.skip("images not in the file (a placeholder marks each)")
            elif kind == "tool_result":
                report.skip("results from tools (searches, code output, plugins)")
    else:
        pieces.append(text(m.get("text")))
    attachments = m.get("attachments")
    for attachment in attachments if isinstance(attachments, list) else []:
        if isinstance(attachment, dict):
            name = text(attachment.get("file_name")) or "a file"
            extracted = text(attachment.get("extracted_content"))
            pieces.append(f"[attached: {name}]\n\n{extracted}" if extracted else f"[attached: {name}]")
    files = m.get("files") or m.get("files_v2")
    for file in files if isinstance(files, list) else []:
        if isinstance(file, dict):
            pieces.append(f"[file not included in export: {text(file.get('file_name')) or 'image'}]")
            report.skip("images not in the file (a placeholder marks each)")
    return "\n\n".join(p for p in pieces if p.strip())


def read(item: dict, report: Report, source=None, header=None) -> Draft:
    messages = item.get("chat_messages")
    if not isinstance(messages, list):
        raise Unreadable("it has no messages")
    nodes = []
    previous = None
    model = text(item.get("model"), 200)  # per-chat exporters (the API's object) name the model
    linear = not any(isinstance(m, dict) and m.get("parent_message_uuid") for m in messages)
    for index, m in enumerate(messages):
        if not isinstance(m, dict):
            continue
        key = text(m.get("uuid")) or f"#{index}"
        role = {"human": "user", "user": "user", "assistant": "assistant"}.get(m.get("sender"))
        body = _body(m, report)
        message = None
        if role and body.strip():
            message = DraftMessage(
                key,
                None,
                role,
                body,
                created_at=when(m.get("created_at")),
                model_name=model if role == "assistant" else "",
                status="cancelled" if m.get("stop_reason") == "user_canceled" else "complete",
            )
        elif not role:
            report.skip("messages from unknown senders")
        parent = previous if linear else m.get("parent_message_uuid")
        nodes.append(Node(key, parent if parent != ROOT else None, message))
        previous = key
    built = build(nodes)
    leaf = item.get("current_leaf_message_uuid")
    conversation_id = text(item.get("uuid"))
    created = when(item.get("created_at"))
    return Draft(
        source_id=f"claude:{conversation_id}" if conversation_id else "",
        title=text(item.get("name"), 200),
        messages=built.messages,
        created_at=created,
        updated_at=when(item.get("updated_at"), created),
        current_leaf=built.nearest.get(leaf) if isinstance(leaf, str) else None,
        pinned=bool(item.get("is_starred")),
        model=model or None,
    )
