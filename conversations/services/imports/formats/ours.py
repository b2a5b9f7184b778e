"""Our own export (services/export.py): {"format": "chatsite.conversations", "conversations": [...]}, every
message with its id and parent id, every figure, the settings and references to images in the zip. A round
trip keeps all of it, and the ids where they are free on this site."""

from __future__ import annotations

from conversations.services.imports.drafts import (
    Draft,
    DraftImage,
    DraftMessage,
    Report,
    Unreadable,
    money,
    number,
    text,
    when,
)
from conversations.services.imports.tree import Node, build

NAME = "Chatsite"
FORMAT = "chatsite.conversations"
ROLES = ("user", "assistant", "system")
STATUSES = ("complete", "cancelled", "error", "interrupted")


def looks_like(item: dict, header: dict | None = None) -> bool:
    if header and header.get("format") == FORMAT:
        return True
    messages = item.get("messages")
    return (
        isinstance(messages, list)
        and "current_leaf" in item
        and all(isinstance(m, dict) and "parent" in m for m in messages[:3])
    )


def read(item: dict, report: Report, source=None, header=None) -> Draft:
    if not isinstance(item.get("messages"), list):
        raise Unreadable("it has no list of messages")
    nodes = []
    for m in item["messages"]:
        if not isinstance(m, dict) or not isinstance(m.get("id"), str):
            report.skip("messages without an id")
            continue
        role = m.get("role")
        if role not in ROLES:
            report.skip("messages from unknown senders")
            role = None
        images = []
        for ref in m.get("attachments") or []:
            member = source.member(text(ref.get("file"))) if source and isinstance(ref, dict) else None
            if member:
                images.append(DraftImage(member))
            else:
                report.skip("images not in the file (import the zip to keep images)")
        status = m.get("status")
        message = (
            DraftMessage(
                key=m["id"],
                parent=None,
                role=role,
                content=text(m.get("content")),
                created_at=when(m.get("created_at")),
                status=status if status in STATUSES else ("interrupted" if status else "complete"),
                error=text(m.get("error")),
                finish_reason=text(m.get("finish_reason"), 32),
                model_name=text(m.get("model"), 200),
                provider_name=text(m.get("provider"), 100),
                prompt_tokens=number(m.get("prompt_tokens")),
                completion_tokens=number(m.get("completion_tokens")),
                cached_tokens=number(m.get("cached_tokens")),
                cost=money(m.get("cost")),
                ttft_ms=number(m.get("ttft_ms")),
                duration_ms=number(m.get("duration_ms")),
                images=images,
                public_id=m["id"],
            )
            if role
            else None
        )
        parent = m.get("parent") if isinstance(m.get("parent"), str) else None
        nodes.append(Node(m["id"], parent, message))
    built = build(nodes)
    if built.loops:
        report.skip("loops in parent links (broken, messages kept)", built.loops)
    config = item.get("settings") if isinstance(item.get("settings"), dict) else {}
    leaf = item.get("current_leaf")
    conversation_id = text(item.get("id"))
    return Draft(
        source_id=text(item.get("source")) or (f"chatsite:{conversation_id}" if conversation_id else ""),
        title=text(item.get("title"), 200),
        messages=built.messages,
        created_at=when(item.get("created_at")),
        updated_at=when(item.get("updated_at")),
        current_leaf=built.nearest.get(leaf) if isinstance(leaf, str) else None,
        pinned=bool(item.get("pinned")),
        archived=bool(item.get("archived")),
        system_prompt=text(config.get("system_prompt")),
        params=config.get("params") if isinstance(config.get("params"), dict) else {},
        model=config.get("model") if isinstance(config.get("model"), str) else None,
        public_id=conversation_id or None,
    )
