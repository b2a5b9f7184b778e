"""ChatGPT's data export: conversations.json, a list of conversations whose messages sit in a `mapping` of
nodes (id, parent, children, message). Real exports are full of things that are not answers: tool calls
(assistant messages addressed to a tool), tool output, hidden system scaffolding, reasoning summaries, custom
instructions, memory. Each is either turned into what it means here or skipped and counted for the report.
"""

from __future__ import annotations

import re

from conversations.services.imports import tree
from conversations.services.imports.drafts import (
    IMAGE_MISSING,
    Draft,
    DraftImage,
    DraftMessage,
    Report,
    Unreadable,
    text,
    when,
)

NAME = "ChatGPT"
FILE_ID = re.compile(r"(file[-_][A-Za-z0-9]+)")
STATUS = {"finished_partial_completion": "interrupted", "in_progress": "interrupted"}


def looks_like(item: dict) -> bool:
    return isinstance(item.get("mapping"), dict) or (
        "current_node" in item or ("conversation_id" in item and "create_time" in item)
    )


def tool_kind(name: str) -> str:
    n = (name or "").lower()
    if n.startswith(("browser", "web", "search", "bing")):
        return "web"
    if n.startswith(("python", "jupyter", "container")):
        return "code"
    if n.startswith(("dalle", "t2uay3k", "image_gen")) or "text2im" in n:
        return "image"
    if n.startswith("canmore"):
        return "canvas"
    if n in ("bio", "memory") or n.startswith("memory"):
        return "memory"
    return "plugin"


def _file_id(pointer) -> str:
    """file-service://file-AbC -> file-AbC; sediment://file_00ab -> file_00ab."""
    match = FILE_ID.match(pointer.rpartition("://")[2]) if isinstance(pointer, str) else None
    return match.group(1) if match else ""


def _instructions(message: dict) -> str:
    """Custom instructions: 2023's metadata.user_context_message_data, 2024's user_editable_context."""
    metadata = _dict(message.get("metadata"))
    data = metadata.get("user_context_message_data")
    pieces = []
    if isinstance(data, dict):
        about_user, about_model = text(data.get("about_user_message")), text(data.get("about_model_message"))
        if about_user.strip():
            pieces.append(f"About me:\n{about_user.strip()}")
        if about_model.strip():
            pieces.append(f"How to respond:\n{about_model.strip()}")
    content = _dict(message.get("content"))
    if content.get("content_type") == "user_editable_context":
        for key in ("user_profile", "user_instructions"):
            value = text(content.get(key)).strip()
            if value:
                pieces.append(value)
    return "\n\n".join(pieces)


def _scaffolding(message: dict) -> bool:
    """A message ChatGPT never shows: the system turn, the custom-instructions turn, hidden context."""
    metadata = _dict(message.get("metadata"))
    return (
        _dict(message.get("author")).get("role") == "system"
        or _dict(message.get("content")).get("content_type") == "user_editable_context"
        or bool(
            metadata.get("is_user_system_message") or metadata.get("is_visually_hidden_from_conversation")
        )
    )


def _dict(value) -> dict:
    return value if isinstance(value, dict) else {}


def _parts(message: dict, source, report: Report) -> tuple[str, list[DraftImage], bool]:
    """(text, images, had a generated image). User images are attachments when the zip holds them."""
    content = _dict(message.get("content"))
    kind = content.get("content_type")
    if kind == "code" and isinstance(content.get("text"), str):
        return (
            f"```{text(content.get('language')) if content.get('language') not in (None, 'unknown') else ''}\n{content['text']}\n```",
            [],
            False,
        )
    pieces: list[str] = []
    images: list[DraftImage] = []
    generated = False
    if isinstance(content.get("text"), str) and kind not in ("text", "multimodal_text"):
        pieces.append(content["text"])
    parts = content.get("parts")
    for part in parts if isinstance(parts, list) else []:
        if isinstance(part, str):
            pieces.append(part)
            continue
        if not isinstance(part, dict):
            continue
        part_type = part.get("content_type") or ""
        if part_type == "audio_transcription" or (part_type == "" and isinstance(part.get("text"), str)):
            pieces.append(text(part.get("text")))
        elif part_type == "image_asset_pointer" or ("asset_pointer" in part and "image" in part_type):
            meta = part.get("metadata") or {}
            if isinstance(meta, dict) and (meta.get("dalle") or meta.get("generation")):
                prompt = text((meta.get("dalle") or {}).get("prompt")).strip()
                pieces.append(f"[generated image: {prompt}]" if prompt else "[generated image]")
                generated = True
                continue
            member = source.find_file_id(_file_id(part.get("asset_pointer"))) if source else None
            if member:
                images.append(DraftImage(member))
            else:
                pieces.append(IMAGE_MISSING)
                report.skip("images not in the file (a placeholder marks each)")
        elif "audio" in part_type or "video" in part_type:
            report.skip("voice recordings (their transcripts were kept)")
    return "\n\n".join(p for p in pieces if p and p.strip()), images, generated


def read(item: dict, report: Report, source=None, header=None) -> Draft:
    mapping = item.get("mapping")
    source_key = text(item.get("conversation_id") or item.get("id"))
    title = text(item.get("title"), 200)
    if not isinstance(mapping, dict):
        raise Unreadable("it has no messages (no mapping)")
    created = when(item.get("create_time"))
    system_prompt = ""
    nodes: list[tree.Node] = []
    for node_id, node in mapping.items():
        if not isinstance(node, dict):
            continue
        key = text(node.get("id") or node_id)
        parent = node.get("parent") if isinstance(node.get("parent"), str) else None
        message = node.get("message")
        kept = None
        if isinstance(message, dict):
            instructions = _instructions(message)
            if instructions:
                system_prompt = instructions
            if not instructions or not _scaffolding(message):
                kept = _message(key, message, source, report)
        nodes.append(tree.Node(key, parent, kept))
    built = tree.build(nodes)
    if built.loops:
        report.skip("loops in parent links (broken, messages kept)", built.loops)
    leaf = built.nearest.get(item.get("current_node")) if isinstance(item.get("current_node"), str) else None
    return Draft(
        source_id=f"chatgpt:{source_key}" if source_key else "",
        title=title,
        messages=built.messages,
        created_at=created,
        updated_at=when(item.get("update_time"), created),
        current_leaf=leaf,
        archived=bool(item.get("is_archived")),
        system_prompt=system_prompt,
        model=text(item.get("default_model_slug")) or None,
    )


def _message(key: str, message: dict, source, report: Report) -> DraftMessage | None:
    """The message as it will be kept, or None (counted in the report unless it is invisible scaffolding)."""
    role = _dict(message.get("author")).get("role")
    metadata = _dict(message.get("metadata"))
    kind = _dict(message.get("content")).get("content_type")
    recipient = message.get("recipient") or "all"
    if kind in ("thoughts", "reasoning_recap"):
        if kind == "thoughts":
            report.skip("reasoning summaries (the model's thinking)")
        return None
    if role == "assistant" and recipient == "all" and message.get("channel") == "analysis":
        # Reasoning models' chain of thought (the "analysis" channel): ChatGPT shows only the final channel.
        report.skip("reasoning summaries (the model's thinking)")
        return None
    if kind == "model_editable_context" or metadata.get("is_visually_hidden_from_conversation"):
        return None  # memory and hidden scaffolding: never shown in ChatGPT either
    if role == "system":
        return None
    if role == "assistant" and recipient != "all":
        report.tools[tool_kind(recipient)] += 1
        return None
    body, images, generated = _parts(message, source, report)
    if role == "tool":
        if not generated:
            report.skip("results from tools (searches, code output, plugins)")
            return None
        role = "assistant"  # a generated image: a placeholder where it was
    if role not in ("user", "assistant"):
        report.skip("messages from unknown senders")
        return None
    if not body.strip() and not images:
        return None  # an empty turn: nothing to show
    status = STATUS.get(text(message.get("status")), "complete")
    finish = _dict(metadata.get("finish_details"))
    return DraftMessage(
        key=key,
        parent=None,
        role=role,
        content=body,
        created_at=when(message.get("create_time")),
        status=status,
        finish_reason=text(finish.get("type"), 32),
        model_name=text(metadata.get("model_slug"), 200) if role == "assistant" else "",
        images=images,
    )
