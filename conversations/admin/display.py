"""Small formatters for change-list cells: lists must fit a 1280 px window (static/css/admin.css does the rest).

Whatever a cell shortens, its title attribute keeps in full, so hovering shows the exact value.
"""

from __future__ import annotations

from datetime import datetime

from django.utils import dateformat, timezone
from django.utils.html import format_html
from django.utils.safestring import SafeString
from django.utils.text import Truncator


def clipped(text: str, chars: int) -> str | SafeString:
    """`text` cut to `chars` characters with an ellipsis, the whole of it in the title; as is when it fits."""
    text = str(text or "")
    if len(text) <= chars:
        return text
    return format_html('<span title="{}">{}</span>', text, Truncator(text).chars(chars))


def compact_count(value: int | None) -> str | SafeString:
    """1,234 as is; 98,765 as 98.8K; 987,654,321 as 987.7M; the exact number in the title."""
    value = value or 0
    if value < 10_000:
        return f"{value:,}"
    # The largest unit that shows at most "999.9" (so 999,999 reads 1M, not 1000K).
    size, suffix = next((s, x) for s, x in ((10**9, "B"), (10**6, "M"), (10**3, "K")) if value >= s * 0.99995)
    short = f"{value / size:.1f}".removesuffix(".0") + suffix
    return format_html('<span title="{}">{}</span>', f"{value:,}", short)


def with_note(main, note) -> SafeString:
    """A cell with a quieter second line (e.g. a model id under its name)."""
    return format_html('{}<span class="sub">{}</span>', main, note)


def when(moment: datetime | None) -> str | SafeString:
    """A short local time for a list cell ("22 Nov, 04:52"; "22 Nov 2025" for other years), the full one in the
    title."""
    if moment is None:
        return "—"
    local = timezone.localtime(moment)
    short = dateformat.format(local, "j M, H:i" if local.year == timezone.localtime().year else "j M Y")
    full = dateformat.format(local, "Y-m-d H:i:s T")
    return format_html('<time datetime="{}" title="{}">{}</time>', local.isoformat(), full, short)
