"""LibreChat's conversation export: {conversationId, title, endpoint, options, messages: [...]} with
parentMessageId links, or `messagesTree` (with `recursive`: each message holds its `children`)."""

from __future__ import annotations

from conversations.services.imports.drafts import (
    Draft,
    DraftMessage,
    Report,
    Unreadable,
    number,
    text,
    when,
)
from conversations.services.imports.tree import Node, build

NAME = "LibreChat"
NO_PARENT = "00000000-0000-0000-0000-000000000000"


def looks_like(item: dict) -> bool:
    return "conversationId" in item and ("messages" in item or "messagesTree" in item)


def _flatten(messages: list) -> list[tuple[dict, str | None]]:
    """(message, parent id) for a nested tree, without recursion (trees can be thousands deep)."""
    out = []
    stack = [(m, None) for m in reversed(messages)]
    while stack:
        m, parent = stack.pop()
        if not isinstance(m, dict):
            continue
        out.append((m, parent if parent is not None else m.get("parentMessageId")))
        stack.extend((child, m.get("messageId")) for child in reversed(m.get("children") or []))
    return out


def _body(m: dict, report: Report) -> str:
    parts = m.get("content")
    if isinstance(parts, list) and parts:
        pieces = []
        for part in parts:
            if not isinstance(part, dict):
                continue
            kind = part.get("type")
            value = part.get(kind) if kind else None
            if kind == "text":
                value = part.get("text")
                pieces.append(text(value.get("value") if isinstance(value, dict) else value))
            elif kind == "think":
                report.skip("reasoning summaries (the model's thinking)")
            elif kind == "tool_call":
                call = value if isinstance(value, dict) else {}
                name = f"{text(call.get('name'))} {text(call.get('type'))}".lower()
                report.tools["web" if "search" in name else "code" if "code" in name else "plugin"] += 1
            elif kind in ("image_file", "image_url"):
                pieces.append("[image not included in export]")
                report.skip("images not in the file (a placeholder marks each)")
        body = "\n\n".join(p for p in pieces if p.strip())
        if body:
            return body
    body = text(m.get("text"))
    files = m.get("files")  # a user's images: their files stay on the LibreChat server
    for file in files if isinstance(files, list) else []:
        if isinstance(file, dict) and text(file.get("type")).startswith("image"):
            body = f"[image not included in export]\n\n{body}".strip()
            report.skip("images not in the file (a placeholder marks each)")
    return body


def _from_user(m: dict) -> bool:
    """isCreatedByUser; the oldest messages only say so in `sender`."""
    if isinstance(m.get("isCreatedByUser"), bool):
        return m["isCreatedByUser"]
    return text(m.get("sender")).lower() == "user"


def read(item: dict, report: Report, source=None, header=None) -> Draft:
    tree_rows = item.get("messagesTree")
    if isinstance(tree_rows, list) and (
        item.get("recursive") or any(isinstance(m, dict) and m.get("children") for m in tree_rows)
    ):
        rows = _flatten(tree_rows)
    elif isinstance(item.get("messages") or tree_rows, list):
        rows = [
            (m, m.get("parentMessageId")) for m in (item.get("messages") or tree_rows) if isinstance(m, dict)
        ]
    else:
        raise Unreadable("it has no messages")
    options = item.get("options") if isinstance(item.get("options"), dict) else {}
    nodes = []
    for index, (m, parent) in enumerate(rows):
        key = text(m.get("messageId")) or f"#{index}"
        role = "user" if _from_user(m) else "assistant"
        body = _body(m, report)
        message = None
        if body.strip():
            message = DraftMessage(
                key,
                None,
                role,
                body,
                created_at=when(m.get("createdAt")),
                model_name=text(m.get("model"), 200) if role == "assistant" else "",
                status="error" if m.get("error") else ("interrupted" if m.get("unfinished") else "complete"),
                completion_tokens=number(m.get("tokenCount")) if role == "assistant" else None,
            )
        nodes.append(Node(key, parent if isinstance(parent, str) and parent != NO_PARENT else None, message))
    built = build(nodes)
    conversation_id = text(item.get("conversationId"))
    first = next((m.created_at for m in built.messages if m.created_at), None)
    return Draft(
        source_id=f"librechat:{conversation_id}" if conversation_id else "",
        title=text(item.get("title"), 200),
        messages=built.messages,
        created_at=when(item.get("createdAt"), first),
        updated_at=when(item.get("updatedAt")),
        system_prompt=text(options.get("promptPrefix") or options.get("system")),
        model=text(options.get("model")) or None,
    )
