"""One module per format we read, each with `NAME`, `looks_like(item)` and `read(item, report, source,
header) -> Draft`. `detect` picks by shape; the order matters only where shapes overlap."""

from __future__ import annotations

from conversations.services.imports.formats import chatbotui, chatgpt, claude, librechat, openwebui, ours

READERS = (ours, chatgpt, claude, openwebui, librechat, chatbotui)
NAMES = "a Chatsite export, ChatGPT, Claude, Open WebUI, LibreChat or Chatbot UI (v1 and v2)"


def detect(item, header: dict | None = None):
    """The reader for one conversation object, or None."""
    if not isinstance(item, dict):
        return None
    if ours.looks_like(item, header):
        return ours
    for reader in READERS[1:]:
        if reader.looks_like(item):
            return reader
    return None
