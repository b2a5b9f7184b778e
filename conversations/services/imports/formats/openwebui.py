"""Open WebUI's chat export: a list of {id, title, chat: {history: {messages: {id: {id, parentId, childrenIds,
role, content, timestamp, model}}, currentId}}, created_at, updated_at, archived, pinned}. Every branch is in
history.messages; older chats have only chat.messages, a list with parentId links. Its first exports (Ollama
WebUI) listed the chat objects themselves: {id, title, models, history, messages, timestamp}. Newer answers
may keep their text only in `output` (Responses-style items), beside an empty `content`.

A user's images travel inline, as `data:` URLs: in the message's `files` ({"type": "image", "url": ...}) and/or
as content parts ({"type": "image_url", "image_url": {"url": ...}}). They become attachments (the writer decodes
and checks them); an image only linked (http(s), or a path on the Open WebUI server) is never fetched: a
placeholder marks it, as it does any image of an answer."""

from __future__ import annotations

import re

from conversations.services.imports.drafts import (
    IMAGE_MISSING,
    Draft,
    DraftImage,
    DraftMessage,
    Report,
    Unreadable,
    number,
    text,
    when,
)
from conversations.services.imports.tree import Node, build

NAME = "Open WebUI"
# Open WebUI keeps reasoning and tool calls inside the answer's text, as <details type="..."> blocks.
DETAILS = re.compile(r"<details\s+type=\"(?P<kind>[^\"]*)\"[^>]*>.*?</details>\s*", re.S)


def _is_chat(chat) -> bool:
    return isinstance(chat, dict) and (
        (isinstance(chat.get("history"), dict) and isinstance(chat["history"].get("messages"), dict))
        or (isinstance(chat.get("messages"), list) and "models" in chat)
    )


def looks_like(item: dict) -> bool:
    chat = item.get("chat")
    if isinstance(chat, dict):
        return "history" in chat or "messages" in chat
    return _is_chat(item)  # the bare chat object of the first exports


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


def _image_urls(m: dict) -> list[str]:
    """The URLs of a message's images, from its `files` and its content parts, each once, in order."""
    urls: list[str] = []
    files = m.get("files")
    for file in files if isinstance(files, list) else []:
        if isinstance(file, dict) and (file.get("type") == "image" or "image" in text(file.get("url"))[:20]):
            urls.append(text(file.get("url")))
    content = m.get("content")
    for part in content if isinstance(content, list) else []:
        if isinstance(part, dict) and part.get("type") == "image_url":
            image_url = part.get("image_url")
            urls.append(text(image_url.get("url") if isinstance(image_url, dict) else image_url))
    return list(dict.fromkeys(urls))  # the same image in both places is one image


def _images(m: dict, role: str | None, report: Report) -> tuple[list[DraftImage], int]:
    """(a user's inline images, how many images stay placeholders). Nothing is decoded here."""
    images: list[DraftImage] = []
    missing = 0
    for url in _image_urls(m):
        if role == "user" and url[:5].lower() == "data:":
            images.append(DraftImage(inline=url))
        else:  # only linked (never fetched), or an answer's
            missing += 1
            report.skip("images not in the file (a placeholder marks each)")
    return images, missing


def _output_text(output) -> str:
    """The answer's text from its `output` items (type "message"); reasoning and tool items are left out."""
    pieces = []
    for entry in output if isinstance(output, list) else []:
        if isinstance(entry, dict) and entry.get("type") == "message":
            parts = entry.get("content")
            for part in parts if isinstance(parts, list) else []:
                if isinstance(part, dict) and part.get("type") in ("output_text", "text"):
                    pieces.append(text(part.get("text")))
    return "\n\n".join(p for p in pieces if p.strip())


def _output_extras(output, report: Report) -> None:
    for entry in output if isinstance(output, list) else []:
        kind = entry.get("type") if isinstance(entry, dict) else None
        if kind == "reasoning":
            report.skip("reasoning summaries (the model's thinking)")
        elif kind == "function_call":
            report.tools["plugin"] += 1


def read(item: dict, report: Report, source=None, header=None) -> Draft:
    chat = item.get("chat") if isinstance(item.get("chat"), dict) else item
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
        if not body.strip() and role == "assistant":
            body = _output_text(m.get("output"))
            if body:
                _output_extras(m.get("output"), report)
        images, missing = _images(m, role, report)
        body = "\n\n".join([IMAGE_MISSING] * missing + [body]).strip()
        message = None
        if role and (body or images):
            usage = m.get("usage") if isinstance(m.get("usage"), dict) else {}
            error = m.get("error")
            message = DraftMessage(
                key,
                None,
                role,
                body,
                created_at=when(m.get("timestamp")),
                model_name=text(m.get("model"), 200) if role == "assistant" else "",
                status="error" if error else "complete",
                error=text(error.get("content") if isinstance(error, dict) else ""),
                prompt_tokens=number(usage.get("prompt_tokens", usage.get("input_tokens"))),
                completion_tokens=number(usage.get("completion_tokens", usage.get("output_tokens"))),
                images=images,
            )
        elif not role:
            report.skip("messages from unknown senders")
        parent = m.get("parentId") if isinstance(m.get("parentId"), str) else None
        nodes.append(Node(key, parent, message))
    built = build(nodes)
    current = history.get("currentId")
    created = when(item.get("created_at"), when(chat.get("timestamp")))
    models = chat.get("models")
    params = chat.get("params")
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
        system_prompt=text(params.get("system") if isinstance(params, dict) else ""),
        model=text(models[0]) if isinstance(models, list) and models and models[0] else None,
    )
