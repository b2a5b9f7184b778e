"""Markdown as plain text, for places that show text without rendering it: sidebar titles, search snippets."""

from __future__ import annotations

import re

# Markdown that plain text must not show: fences, images and links (their text kept), emphasis, code marks, heading,
# quote and list markers, table pipes, math delimiters.
_MARKDOWN_RULES = [
    (re.compile(r"```[^\n]*"), " "),
    (re.compile(r"!\[([^\]]*)\]\([^)]*\)"), r"\1"),
    (re.compile(r"\[([^\]]*)\]\([^)]*\)"), r"\1"),
    (re.compile(r"(?m)^\s{0,3}(?:#{1,6}\s+|>\s?|[-*+]\s+(?:\[[ xX]\]\s+)?|\d{1,3}[.)]\s+)"), ""),
    (re.compile(r"\\[()\[\]]|\$\$"), ""),
    (re.compile(r"~~|`|\||(?<!\w)[*_]+(?=\S)|(?<=\S)[*_]+(?!\w)"), ""),  # snake_case keeps its _
    (re.compile(r"(?m)^[\s:|-]*-{3,}[\s:|-]*$"), " "),  # table separators, rules
]


def plain_text(text: str) -> str:
    """`text` without Markdown syntax, on one line."""
    for pattern, replacement in _MARKDOWN_RULES:
        text = pattern.sub(replacement, text)
    return " ".join(text.split())
