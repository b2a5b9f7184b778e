"""Token estimates without a tokenizer or the network, for trimming context and reserving budget.

Estimates lean high on purpose: reserving a little too much is harmless, sending a prompt that overflows the
context window is a failed turn. Text: ASCII runs at ~4 characters per token (English averages ~4.2 with
o200k/cl100k), other characters at ~1 token each (CJK is close to 1; accented Latin is cheaper, which only
makes us err high). Images: OpenAI's published tile arithmetic.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable

from conversations.llm.request import ChatMessage, ImagePart

# From OpenAI's cookbook: each message costs a few tokens of framing, and the reply is primed with 3 more.
TOKENS_PER_MESSAGE = 4
TOKENS_PER_REPLY = 3

LOW_DETAIL_TOKENS = 85
TILE_TOKENS = 170
BASE_TOKENS = 85
# gpt-4o-mini bills images at a much higher multiplier.
MINI_BASE_TOKENS = 2833
MINI_TILE_TOKENS = 5667

_NON_ASCII = re.compile(r"[^\x00-\x7f]")


def estimate_text_tokens(text: str) -> int:
    if not text:
        return 0
    non_ascii = len(_NON_ASCII.findall(text)) if not text.isascii() else 0
    return math.ceil((len(text) - non_ascii) / 4) + non_ascii


def image_tokens(width: int, height: int, detail: str = "auto", model_id: str = "") -> int:
    """Tokens OpenAI bills for one image. "auto" is counted as "high" (the worst case)."""
    mini = "gpt-4o-mini" in model_id
    if detail == "low":
        return MINI_BASE_TOKENS if mini else LOW_DETAIL_TOKENS
    tiles = image_tiles(width, height)
    if mini:
        return MINI_BASE_TOKENS + MINI_TILE_TOKENS * tiles
    return BASE_TOKENS + TILE_TOKENS * tiles


def image_tiles(width: int, height: int) -> int:
    """512px tiles after OpenAI's scaling: fit within 2048x2048, then shortest side down to 768."""
    if width <= 0 or height <= 0:
        return 1
    w, h = float(width), float(height)
    if max(w, h) > 2048:
        scale = 2048 / max(w, h)
        w, h = w * scale, h * scale
    if min(w, h) > 768:
        scale = 768 / min(w, h)
        w, h = w * scale, h * scale
    return math.ceil(w / 512) * math.ceil(h / 512)


def estimate_image_part(image: ImagePart, model_id: str = "") -> int:
    if image.width and image.height:
        return image_tokens(image.width, image.height, image.detail, model_id)
    # Size unknown: assume the largest high-detail image (2048x768 after scaling: 4x2 tiles).
    return image_tokens(2048, 768, image.detail, model_id)


def estimate_message_tokens(message: ChatMessage, model_id: str = "") -> int:
    return (
        TOKENS_PER_MESSAGE
        + estimate_text_tokens(message.text)
        + sum(estimate_image_part(image, model_id) for image in message.images)
    )


def estimate_prompt_tokens(messages: Iterable[ChatMessage], model_id: str = "") -> int:
    """Tokens the whole prompt will cost, including the reply priming."""
    return TOKENS_PER_REPLY + sum(estimate_message_tokens(m, model_id) for m in messages)
