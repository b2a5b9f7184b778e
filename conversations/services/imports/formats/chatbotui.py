"""Chatbot UI. Version 1 (the legacy app) exported {version, history: [{id, name, messages: [{role, content}],
model, prompt, temperature, folderId}], folders, prompts} (its first versions: the bare list). Version 2's
"export old data" button saves the browser's storage: {"conversationHistory": "<the same list, as a JSON
string>", ...}. Messages have no ids: each conversation is one chain."""

from __future__ import annotations

from conversations.services.imports.drafts import Draft, DraftMessage, Report, Unreadable, text
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
    nodes = []
    previous = None
    for index, m in enumerate(item["messages"]):
        if not isinstance(m, dict):
            continue
        key = f"#{index}"
        role = m.get("role") if m.get("role") in ("user", "assistant") else None
        body = text(m.get("content"))
        message = DraftMessage(key, None, role, body) if role and body.strip() else None
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
        system_prompt=text(item.get("prompt")),
        model=text(model.get("id") if isinstance(model, dict) else model) or None,
        params={"temperature": item["temperature"]}
        if isinstance(item.get("temperature"), int | float) and not isinstance(item.get("temperature"), bool)
        else {},
    )
