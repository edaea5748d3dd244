"""Recall: full-text search over one user's stored messages in one space.

All recall SQL is here. On SQLite the index is the FTS5 table `messages_fts` (migration 0005),
kept in step with `messages` by triggers. The scope (user and space) is a token of its own
column, and it is part of the MATCH expression, so the index only ever yields the rows of that
user in that space: nothing is filtered afterwards. Every indexed word also carries a prefix
derived from the scope (see the migration: it keeps bm25's word counts to one scope's rows),
so the query's words carry it too.

A message's words are never put into the query as syntax: every term is a quoted FTS5 string
(doubled inner quotes), so `"`, `*`, `NEAR`, `-`, `:` or `AND` in a message are searched as
words, or dropped with the punctuation, and never change the query.
"""

from __future__ import annotations

import json
import re
from collections.abc import Collection, Sequence
from dataclasses import dataclass

from storage.database import Database
from storage.models import StoredMessage

MAX_QUERY_TERMS = 8
"""The longest OR-query: bm25 is computed for every row matching any term, so each term costs
time on every reply; past the first few content words a message adds little."""

RECENCY_DAYS = 180.0
"""Text relevance is divided by (1 + age / RECENCY_DAYS): half weight at half a year old,
enough to prefer the newer of two equally good matches without burying old evidence."""

CANDIDATE_FACTOR = 4
"""Best-by-text candidates read per wanted hit, before recency and de-duplication."""

MERGE_PAGES = 2000
"""Index pages rewritten per merge step after an erasure; other writers run between steps."""

# Words too common to say what a message is about (English chat; other languages' words
# are kept, where bm25's idf keeps their weight low anyway).
_STOPWORD_TEXT = """
    a about above after again against all also am an and any are aren as at be because been
    before being below between both but by can cannot could couldn did didn do does doesn doing
    don down during each few for from further had hadn has hasn have haven having he her here
    hers herself him himself his how i if in into is isn it its itself just let ll me more most
    mustn my myself no nor not now of off on once only or other ought our ours ourselves out over
    own re same shan she should shouldn so some such than that the their theirs them themselves
    then there these they this those through to too under until up ve very was wasn we were
    weren what when where which while who whom why will with won would wouldn you your yours
    yourself yourselves
    hi hey hello thanks thank please ok okay yes yeah yep no nope sure lol hmm oh well really
    like get got go going know think tell told say said remember recall ask asked mention
    mentioned again one thing things something anything maybe still back last time ever
"""
STOPWORDS = frozenset(_STOPWORD_TEXT.split())

_WORD = re.compile(r"[^\W_]+")  # letters and digits: FTS5's unicode61 splits on the rest
# The same split for ASCII text, by a byte table: every byte but a letter or digit becomes a
# space, capitals become small. The regular expression takes 2.5 times as long (15 µs for a
# message of 400 characters), and recall splits a dozen messages on every reply.
_ASCII_WORDS = bytes(
    byte + 32 if 65 <= byte <= 90 else byte if chr(byte).isalnum() and byte < 128 else 32
    for byte in range(256)
)


@dataclass(frozen=True, slots=True)
class RecallHit:
    message: StoredMessage
    score: float
    """Higher is better: text relevance (bm25) weighed by recency."""


def scope_token(user_id: int, space_id: int) -> str:
    """The index token of one user's messages in one space (the view in migration 0005)."""
    return f"u{user_id}s{space_id}"


_PREFIX_MODULUS = 2147483629


def word_prefix(user_id: int, space_id: int) -> str:
    """What the index puts before every word of this scope (the same arithmetic as the view
    in migration 0005: different scopes may share one; only the scope token separates rows)."""
    number = ((user_id % _PREFIX_MODULUS) * 31 + space_id % _PREFIX_MODULUS) % _PREFIX_MODULUS
    return f"z{number}q"


def split_words(text: str) -> list[str]:
    """The words of `text`, case-folded, split where the index splits them (letters and
    digits; `_` and everything else separate)."""
    if text.isascii():
        return text.encode().translate(_ASCII_WORDS).decode().split()
    return _WORD.findall(text.casefold())


def query_terms(text: str, *, limit: int = MAX_QUERY_TERMS) -> list[str]:
    """The words of `text` worth searching for: lower-cased, no stopwords, each once."""
    terms: list[str] = []
    for word in split_words(text):
        if word in STOPWORDS or (len(word) < 2 and not word.isdigit()) or word in terms:
            continue
        terms.append(word)
        if len(terms) == limit:
            break
    return terms


def match_expression(user_id: int, space_id: int, terms: Sequence[str]) -> str:
    """The FTS5 query: this scope AND any of the terms, every term a quoted string."""
    prefix = word_prefix(user_id, space_id)
    alternatives = " OR ".join(_quoted(prefix + term) for term in terms)
    return f"scope : {_quoted(scope_token(user_id, space_id))} AND content : ({alternatives})"


def _quoted(term: str) -> str:
    return '"' + term.replace('"', '""') + '"'


_SEARCH = (
    "SELECT m.id, m.session_id, m.discord_id, m.guild_id, m.channel_id, m.user_id, m.role,"
    " m.content, m.tokens, m.created_at, m.place_id,"
    " -hit.rank / (1.0 + MAX(?5 - m.created_at, 0.0) / ?6) AS score"
    " FROM (SELECT rowid, rank FROM messages_fts WHERE messages_fts MATCH ?1"
    "       ORDER BY rank LIMIT ?2) AS hit"
    " JOIN messages m ON m.id = hit.rowid"
    " WHERE NOT (m.session_id = ?3 AND m.id >= ?4)"
    " ORDER BY score DESC LIMIT ?7"
)

# The same, among the messages said in the allowed places only (a JSON array of place ids):
# filtered before the candidates are cut, so private messages never crowd out public ones.
# Each matching row of the scope is looked up by its primary key for its place.
_SEARCH_IN_PLACES = (
    "SELECT m.id, m.session_id, m.discord_id, m.guild_id, m.channel_id, m.user_id, m.role,"
    " m.content, m.tokens, m.created_at, m.place_id,"
    " -hit.rank / (1.0 + MAX(?5 - m.created_at, 0.0) / ?6) AS score"
    " FROM (SELECT messages_fts.rowid AS rowid, messages_fts.rank AS rank FROM messages_fts"
    "       JOIN messages p ON p.id = messages_fts.rowid"
    "       WHERE messages_fts MATCH ?1"
    "       AND COALESCE(p.place_id, p.channel_id) IN (SELECT value FROM json_each(?8))"
    "       ORDER BY messages_fts.rank LIMIT ?2) AS hit"
    " JOIN messages m ON m.id = hit.rowid"
    " WHERE NOT (m.session_id = ?3 AND m.id >= ?4)"
    " ORDER BY score DESC LIMIT ?7"
)


# PostgreSQL: the same contract on the GIN index of migrations postgres/0005 and 0010, over
# each message's stored words (`content_words`). The words arrive as an array parameter and
# become a tsquery of quoted lexemes, never query syntax.
_PG_SEARCH = (
    "WITH q AS (SELECT to_tsquery('simple', string_agg(quote_literal(term), ' | ')) AS query"
    "           FROM unnest(?3::text[]) AS term),"
    " hit AS (SELECT m.id, ts_rank(m.content_words, q.query) AS rank"
    "         FROM messages m, q"
    "         WHERE m.user_id = ?1 AND COALESCE(m.guild_id, 0) = ?2"
    "         AND m.content_words @@ q.query"
    "         AND (?10::bigint[] IS NULL OR COALESCE(m.place_id, m.channel_id) = ANY(?10))"
    "         ORDER BY rank DESC LIMIT ?4)"
    " SELECT m.id, m.session_id, m.discord_id, m.guild_id, m.channel_id, m.user_id, m.role,"
    " m.content, m.tokens, m.created_at, m.place_id,"
    " hit.rank / (1.0 + GREATEST(?7 - m.created_at, 0.0) / ?8) AS score"
    " FROM hit JOIN messages m ON m.id = hit.id"
    " WHERE NOT (m.session_id = ?5 AND m.id >= ?6)"
    " ORDER BY score DESC LIMIT ?9"
)


class RecallRepository:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def search(
        self,
        user_id: int,
        space_id: int,
        terms: Sequence[str],
        *,
        exclude_session_id: int,
        exclude_from_id: int,
        excluded_count: int,
        now: float,
        limit: int,
        places: Collection[int] | None = None,
    ) -> list[RecallHit]:
        """The user's messages in the space that best match any of `terms`, best first.

        With `places`, only the messages said in those places (`StoredMessage.place`): the
        audience rule of `bot.policy.audience`. None: the whole space (DMs).

        Messages of session `exclude_session_id` with id >= `exclude_from_id` (the window and
        the new message: `excluded_count` of them at most) are left out. One statement on the
        index; the text candidates are the best `CANDIDATE_FACTOR * limit` plus the excluded.
        """
        if not terms or limit <= 0:
            return []
        if self._db.backend == "postgres":
            rows = await self._db.fetch_all(
                _PG_SEARCH,
                (
                    user_id,
                    space_id,
                    list(terms),
                    CANDIDATE_FACTOR * limit + excluded_count,
                    exclude_session_id,
                    exclude_from_id,
                    now,
                    RECENCY_DAYS * 86400.0,
                    limit,
                    sorted(places) if places is not None else None,
                ),
            )
            return [RecallHit(StoredMessage(*row[:11]), float(row[11])) for row in rows]
        in_places = () if places is None else (json.dumps(sorted(places)),)
        rows = await self._db.fetch_all(
            _SEARCH if places is None else _SEARCH_IN_PLACES,
            (
                match_expression(user_id, space_id, terms),
                CANDIDATE_FACTOR * limit + excluded_count,
                exclude_session_id,
                exclude_from_id,
                now,
                RECENCY_DAYS * 86400.0,
                limit,
                *in_places,
            ),
        )
        return [RecallHit(StoredMessage(*row[:11]), float(row[11])) for row in rows]

    async def purge_deleted(self) -> int:
        """Rewrite the index so that no term of a deleted message is left in its pages.

        FTS5 on SQLite 3.40 (no 'secure-delete' option) deletes by adding tombstones; the old
        terms stay in their segment pages until segments are merged. An incremental merge of
        all segments into one drops both, in steps of MERGE_PAGES pages, each its own
        transaction, so replies keep being stored meanwhile. `secure_delete` zeroes the freed
        pages; the checkpoint then empties the WAL. Returns the number of merge steps.

        PostgreSQL: VACUUM removes a deleted row's entries from the GIN index's posting
        lists, but GIN never deletes a word from its entry tree, so the words stay in the
        index file until it is rebuilt. The checkpoint records the deletion; the compaction
        rewrites the table and every index of it within ERASURE_COMPACT_SECONDS (see
        storage.compaction).
        """
        if self._db.backend == "postgres":
            await self._db.checkpoint()
            return 0
        row = await self._db.fetch_one("SELECT COUNT(*) FROM messages_fts_data")
        pages = int(row[0]) if row else 0
        steps = 0
        for _ in range(pages // MERGE_PAGES + 2):  # bounded even while others write
            async with self._db.transaction() as tx:
                before = await tx.fetch_one("SELECT total_changes()")
                await tx.execute(
                    "INSERT INTO messages_fts (messages_fts, rank) VALUES ('merge', ?)",
                    (-MERGE_PAGES,),
                )
                after = await tx.fetch_one("SELECT total_changes()")
            steps += 1
            assert before is not None and after is not None
            if after[0] - before[0] < 2:  # FTS5's sign that there was nothing left to merge
                break
        await self._db.checkpoint()
        return steps
