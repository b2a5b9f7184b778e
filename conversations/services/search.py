"""Search a user's conversations by title and message text, with a highlighted snippet per result.

One entry point, `search(user, query)`, and one backend per database: SQLite uses the FTS5 table
`conversations_message_fts` (bm25 rank, snippet()), PostgreSQL the generated `search_vector` column with its
GIN index (ts_rank, ts_headline); both are created by migration 0005, and since 0015 hold settled messages
only (an answer still being written is found once it ends: its checkpoints no longer re-index it). Only the user's own, non-deleted
conversations are searched. On SQLite a word found in more than RANK_WINDOW of a user's messages is ranked
among the newest RANK_WINDOW of them, which keeps a search of 200,000 messages well under 100 ms. Snippets are safe HTML: the text is escaped piece by piece here and the only tags
are the <mark> elements built around the matches, whatever the message contains.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

from django.contrib.postgres.search import SearchHeadline, SearchQuery, SearchRank, SearchVectorField
from django.db import connection
from django.db.models.expressions import RawSQL
from django.utils.html import escape

from conversations.models import Conversation, Message
from conversations.services.plaintext import plain_text

LIMIT = 20
CANDIDATES = 200  # best-ranked messages looked at to find LIMIT conversations
SNIPPET_WORDS = 16
RANK_WINDOW = 5000  # SQLite: matches ranked at most (the newest); rarer words are ranked in full
# Private-use characters mark the matches inside a database snippet; the text between them is escaped.
START, STOP = "\ue000", "\ue001"
WORD = re.compile(r"\w+", re.UNICODE)


@dataclass
class Hit:
    conversation_id: str
    title: str
    message_id: str | None
    snippet: str  # safe HTML: escaped text and <mark> elements ("" for a title match without one)
    rank: float
    title_html: str = ""  # safe HTML: the title, its matches marked

    def to_dict(self) -> dict:
        return {
            "id": self.conversation_id,
            "title": self.title,
            "title_html": self.title_html or escape(self.title),
            "message": self.message_id,
            "snippet": self.snippet,
        }


def marked_html(text: str) -> str:
    """Text with START/STOP marks around matches, as escaped HTML with <mark> elements."""
    out, inside = [], False
    for piece in re.split(f"([{START}{STOP}])", text):
        if piece == START:
            if not inside:
                out.append("<mark>")
                inside = True
        elif piece == STOP:
            if inside:
                out.append("</mark>")
                inside = False
        else:
            out.append(escape(piece))
    if inside:
        out.append("</mark>")
    return "".join(out)


def terms(query: str) -> list[str]:
    return WORD.findall(query.lower())[:10]


def _mark_terms(text: str, words: list[str]) -> str:
    """Mark every word of `text` that starts with one of `words` (titles, which are not indexed)."""
    if not words:
        return escape(text)
    pattern = re.compile(r"\b(" + "|".join(re.escape(w) for w in words) + r")\w*", re.IGNORECASE)
    return marked_html(
        pattern.sub(lambda m: f"{START}{m.group(0)}{STOP}", text.replace(START, "").replace(STOP, ""))
    )


def _fold(text: str) -> str:
    """Lower case without accents: how the FTS5 tokenizer (remove_diacritics) compares words."""
    return "".join(c for c in unicodedata.normalize("NFKD", text.lower()) if not unicodedata.combining(c))


def highlight(text: str, words: list[str], size: int = SNIPPET_WORDS) -> str:
    """About `size` words of `text` around the first match, matches marked, as safe HTML."""
    folded = [_fold(w) for w in words]
    # As plain text: "## Install **pandas**" reads "Install pandas" in a list of results.
    text = plain_text(text.replace(START, "").replace(STOP, ""))  # marks in the text would pass for matches
    tokens = list(WORD.finditer(text))
    hits = [i for i, t in enumerate(tokens) if any(_fold(t.group()).startswith(w) for w in folded)]
    if not tokens:
        return escape(text[:200])
    first = hits[0] if hits else 0
    start = max(0, first - size // 3)
    end = min(len(tokens), start + size)
    start = max(0, end - size)
    out = "…" if start > 0 else ""
    position = tokens[start].start() if start > 0 else 0
    for i in range(start, end):
        token = tokens[i]
        out += text[position : token.start()]
        out += f"{START}{token.group()}{STOP}" if i in hits else token.group()
        position = token.end()
    out += text[position:] if end == len(tokens) else "…"
    return marked_html(" ".join(out.split()))


def _title_hits(user, words: list[str]) -> list[Hit]:
    rows = Conversation.objects.filter(owner=user, deleted_at__isnull=True)
    for word in words:
        rows = rows.filter(title__icontains=word)
    return [
        Hit(str(c.public_id), c.title, None, "", rank=-1e9, title_html=_mark_terms(c.title, words))
        for c in rows.only("public_id", "title").order_by("-updated_at")[:LIMIT]
    ]


def _sqlite_hits(user, words: list[str]) -> list[Hit]:
    """Three queries: where the newest RANK_WINDOW matches start, the best CANDIDATES of those by bm25 (joined
    to live conversations), and the text of the ones kept, for their snippets."""
    # Every word must match in the text; the last one as a prefix, so results come while the user is typing.
    # Quoted, so FTS5 operators in the query are plain words. The owner token keeps it to this user's messages.
    terms = [f'content : "{w}"' for w in words[:-1]] + [f'content : "{words[-1]}"*']
    match = f'owner : "u{user.pk}" AND ' + " AND ".join(terms)
    with connection.cursor() as cursor:
        # A word in most messages would mean scoring all of them: rank the newest RANK_WINDOW matches only.
        cursor.execute(
            "SELECT rowid FROM conversations_message_fts WHERE conversations_message_fts MATCH %s "
            "ORDER BY rowid DESC LIMIT 1 OFFSET %s",
            [match, RANK_WINDOW - 1],
        )
        row = cursor.fetchone()
        floor = row[0] if row else 0
        cursor.execute(
            """
            SELECT c.public_id, c.title, m.public_id, m.id, f.rank
            FROM (
                SELECT rowid, rank FROM conversations_message_fts
                WHERE conversations_message_fts MATCH %s AND rowid >= %s
                ORDER BY rank LIMIT %s
            ) AS f
            JOIN conversations_message m ON m.id = f.rowid
            JOIN conversations_conversation c ON c.id = m.conversation_id
            WHERE c.deleted_at IS NULL
            ORDER BY f.rank
            """,
            [match, floor, CANDIDATES],
        )
        best: dict[str, tuple] = {}
        for cid, title, mid, pk, rank in cursor.fetchall():  # bm25: lower is better, best first
            best.setdefault(cid, (cid, title, mid, pk, rank))
        kept = list(best.values())[:LIMIT]
    # FTS5's snippet() re-reads a prefix term's whole doclist for every row (about 5 ms each for a common
    # prefix): cutting the snippet here from the kept messages' text is one cheap query.
    texts = dict(Message.objects.filter(pk__in=[row[3] for row in kept]).values_list("pk", "content"))
    return [
        Hit(_uuid_text(cid), title, _uuid_text(mid), highlight(texts.get(pk, ""), words), rank=float(rank))
        for cid, title, mid, pk, rank in kept
    ]


def _postgres_hits(user, words: list[str]) -> list[Hit]:
    tsquery = " & ".join(f"{w}:*" for w in words)
    query = SearchQuery(tsquery, search_type="raw", config="english")
    vector = RawSQL('"conversations_message"."search_vector"', [], output_field=SearchVectorField())
    rows = (
        Message.objects.filter(conversation__owner=user, conversation__deleted_at__isnull=True)
        .annotate(vector=vector)
        .filter(vector=query)
        .annotate(
            rank=SearchRank(vector, query),
            headline=SearchHeadline(
                "content",
                query,
                config="english",
                start_sel=START,
                stop_sel=STOP,
                max_words=30,
                min_words=12,
                max_fragments=1,
                fragment_delimiter="…",
            ),
        )
        .order_by("-rank", "-id")
        .values_list("conversation__public_id", "conversation__title", "public_id", "headline", "rank")[
            : LIMIT * 5
        ]
    )
    # ts_rank is higher-is-better: negate so both backends sort ascending.
    return [
        Hit(str(cid), title, str(mid), marked_html(plain_text(headline)), rank=-float(rank))
        for cid, title, mid, headline, rank in rows
    ]


def _uuid_text(value) -> str:
    """SQLite returns UUIDField columns from raw SQL as 32 hex digits."""
    text = str(value)
    if len(text) == 32:
        return f"{text[:8]}-{text[8:12]}-{text[12:16]}-{text[16:20]}-{text[20:]}"
    return text


def backend() -> str:
    return connection.vendor


def search(user, query: str) -> list[dict]:
    """The best matches, at most one per conversation: title matches first, then message matches by rank.
    Three queries at most, whatever the number of conversations."""
    words = terms(query)
    if not words:
        return []
    hits = _title_hits(user, words)
    if connection.vendor == "sqlite":
        hits += _sqlite_hits(user, words)
    elif connection.vendor == "postgresql":
        hits += _postgres_hits(user, words)
    seen: dict[str, Hit] = {}
    for hit in hits:  # each list is best first
        if hit.conversation_id not in seen:
            seen[hit.conversation_id] = hit
        elif seen[hit.conversation_id].message_id is None and hit.message_id is not None:
            # A title match: open it at the best matching message and show that message's snippet.
            seen[hit.conversation_id].message_id = hit.message_id
            seen[hit.conversation_id].snippet = hit.snippet
    return [hit.to_dict() for hit in list(seen.values())[:LIMIT]]
