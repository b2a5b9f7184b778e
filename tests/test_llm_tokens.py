"""Token estimates without a tokenizer: text heuristics and OpenAI's image tile arithmetic."""

from __future__ import annotations

import pytest

from conversations.llm.request import ChatMessage, ImagePart
from conversations.llm.tokens import (
    estimate_message_tokens,
    estimate_prompt_tokens,
    estimate_text_tokens,
    image_tiles,
    image_tokens,
)


@pytest.mark.parametrize(
    ("width", "height", "detail", "tokens"),
    [
        (1024, 1024, "high", 765),  # OpenAI's worked example: 768x768 -> 4 tiles
        (2048, 4096, "high", 1105),  # -> 1024x2048 -> 768x1536: 2x3 tiles
        (512, 512, "high", 255),  # small images are not scaled up: 1 tile
        (4000, 3000, "auto", 765),  # auto counts as high: 2048x1536 -> 1024x768: 2x2 tiles
        (4000, 3000, "low", 85),
    ],
)
def test_image_tokens_follow_the_tile_arithmetic(width, height, detail, tokens):
    assert image_tokens(width, height, detail) == tokens


def test_gpt_4o_mini_multiplies_image_tokens():
    assert image_tokens(1024, 1024, "high", "gpt-4o-mini") == 2833 + 5667 * 4
    assert image_tokens(1024, 1024, "low", "gpt-4o-mini-2024-07-18") == 2833


def test_degenerate_sizes_count_as_one_tile():
    assert image_tiles(0, 100) == 1


def test_text_estimates_lean_high_for_non_latin_scripts():
    assert estimate_text_tokens("") == 0
    assert estimate_text_tokens("Hello world, how are you?") == 7  # 25 chars / 4
    assert estimate_text_tokens("你好世界") == 4


def test_messages_add_framing_and_images():
    text_only = ChatMessage("user", "abcd")
    with_image = ChatMessage("user", "abcd", (ImagePart("u", "low"), ImagePart("u", "high", 1024, 1024)))
    assert estimate_message_tokens(text_only) == 4 + 1
    assert estimate_message_tokens(with_image) == 4 + 1 + 85 + 765
    assert estimate_prompt_tokens([text_only, text_only]) == 3 + 2 * 5


def test_an_image_of_unknown_size_is_counted_as_the_worst_case():
    assert estimate_message_tokens(ChatMessage("user", "", (ImagePart("u"),))) == 4 + 85 + 170 * 8
