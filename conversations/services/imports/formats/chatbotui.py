"""Chatbot UI. Version 1 (the legacy app) exported {version, history: [{id, name, messages: [{role, content}],
model, prompt, temperature, folderId}], folders, prompts} (its first versions: the bare list). Version 2's
"export old data" button saves the browser's storage: {"conversationHistory": "<the same list, as a JSON
string>", ...}. Messages have no ids: each conversation is one chain."""

from __future__ import annotations

from conversations.services.imports.drafts import Draft, DraftMessage, Report, Unreadable, text, when
from conversations.services.imports.tree import Node, build

NAME = "Chatbot UI"


def looks_like(item: dict) -> bool:
    messages = item.get("messages")
    return (
        isinstance(messages, list)
        and "name" in item
        and all(isinstance(m, dict) and "parent" not in m and "messageId" not in m for m in messages[:3])
    )


def read(item: dict, report: Report, source=None, header=None) -> Draft:
    if not isinstance(item.get("messages"), list):
        raise Unreadable("it has no messages")
    rows = [m for m in item["messages"] if isinstance(m, dict)]
    if any(isinstance(m.get("sequence_number"), int) for m in rows):  # v2's database rows
        rows.sort(key=lambda m: m["sequence_number"] if isinstance(m.get("sequence_number"), int) else 0)
    nodes = []
    previous = None
    for index, m in enumerate(rows):
        key = f"#{index}"
        role = m.get("role") if m.get("role") in ("user", "assistant") else None
        body = text(m.get("content"))
        message = (
            DraftMessage(key, None, role, body, created_at=when(m.get("created_at")))
            if role and body.strip()
            else None
        )
        if not role:
            report.skip("messages from unknown senders")
        nodes.append(Node(key, previous, message))
        previous = key
    model = item.get("model")
    conversation_id = text(item.get("id"))
    return Draft(
        source_id=f"chatbotui:{conversation_id}" if conversation_id else "",
        title=text(item.get("name"), 200),
        messages=build(nodes).messages,
        created_at=when(item.get("created_at")),
        updated_at=when(item.get("updated_at")),
        system_prompt=text(item.get("prompt")),
        model=text(model.get("id") if isinstance(model, dict) else model) or None,
        params={"temperature": item["temperature"]}
        if isinstance(item.get("temperature"), int | float) and not isinstance(item.get("temperature"), bool)
        else {},
    )
