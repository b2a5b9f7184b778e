"""Open WebUI's chat export: a list of {id, title, chat: {history: {messages: {id: {id, parentId, childrenIds,
role, content, timestamp, model}}, currentId}}, created_at, updated_at, archived, pinned}. Every branch is in
history.messages; older chats have only chat.messages, a list with parentId links."""

from __future__ import annotations

import re

from conversations.services.imports.drafts import Draft, DraftMessage, Report, Unreadable, text, when
from conversations.services.imports.tree import Node, build

NAME = "Open WebUI"
# Open WebUI keeps reasoning and tool calls inside the answer's text, as <details type="..."> blocks.
DETAILS = re.compile(r"<details\s+type=\"(?P<kind>[^\"]*)\"[^>]*>.*?</details>\s*", re.S)


def looks_like(item: dict) -> bool:
    chat = item.get("chat")
    return isinstance(chat, dict) and ("history" in chat or "messages" in chat)


def _clean(content, report: Report) -> str:
    if isinstance(content, list):  # content parts, as the API takes them
        content = "\n\n".join(text(p.get("text")) for p in content if isinstance(p, dict))
    body = text(content)

    def drop(match: re.Match) -> str:
        kind = match.group("kind")
        if kind == "reasoning":
            report.skip("reasoning summaries (the model's thinking)")
        elif kind in ("tool_calls", "code_interpreter"):
            report.tools["code" if kind == "code_interpreter" else "plugin"] += 1
        return ""

    return DETAILS.sub(drop, body).strip() if "<details" in body else body


def read(item: dict, report: Report, source=None, header=None) -> Draft:
    chat = item.get("chat") if isinstance(item.get("chat"), dict) else {}
    history = chat.get("history") if isinstance(chat.get("history"), dict) else {}
    table = history.get("messages")
    if isinstance(table, dict) and table:
        rows = [dict(m, id=m.get("id") or key) for key, m in table.items() if isinstance(m, dict)]
    elif isinstance(chat.get("messages"), list):
        rows = [m for m in chat["messages"] if isinstance(m, dict)]
    else:
        raise Unreadable("it has no messages")
    nodes = []
    for index, m in enumerate(rows):
        key = text(m.get("id")) or f"#{index}"
        role = m.get("role") if m.get("role") in ("user", "assistant", "system") else None
        body = _clean(m.get("content"), report)
        for file in m.get("files") or []:
            if isinstance(file, dict) and (
                file.get("type") == "image" or "image" in text(file.get("url"))[:20]
            ):
                body = f"[image not included in export]\n\n{body}".strip()
                report.skip("images not in the file (a placeholder marks each)")
        message = None
        if role and body:
            message = DraftMessage(
                key,
                None,
                role,
                body,
                created_at=when(m.get("timestamp")),
                model_name=text(m.get("model"), 200) if role == "assistant" else "",
                status="error" if m.get("error") else "complete",
                error=text((m.get("error") or {}).get("content") if isinstance(m.get("error"), dict) else ""),
            )
        elif not role:
            report.skip("messages from unknown senders")
        parent = m.get("parentId") if isinstance(m.get("parentId"), str) else None
        nodes.append(Node(key, parent, message))
    built = build(nodes)
    current = history.get("currentId")
    created = when(item.get("created_at"), when(chat.get("timestamp")))
    models = chat.get("models")
    conversation_id = text(item.get("id") or chat.get("id"))
    return Draft(
        source_id=f"openwebui:{conversation_id}" if conversation_id else "",
        title=text(item.get("title") or chat.get("title"), 200),
        messages=built.messages,
        created_at=created,
        updated_at=when(item.get("updated_at"), created),
        current_leaf=built.nearest.get(current) if isinstance(current, str) else None,
        pinned=bool(item.get("pinned")),
        archived=bool(item.get("archived")),
        system_prompt=text(
            (chat.get("params") or {}).get("system") if isinstance(chat.get("params"), dict) else ""
        ),
        model=text(models[0]) if isinstance(models, list) and models else None,
    )
