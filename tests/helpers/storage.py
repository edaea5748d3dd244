"""Writing straight into a Storage, and looking for a word in the database files."""

from __future__ import annotations

import itertools
from pathlib import Path

from storage import Storage
from storage.models import SessionKey, StoredMessage

_discord_ids = itertools.count(10_000)


def next_discord_id() -> int:
    """A Discord message id no other message of this test process has."""
    return next(_discord_ids)


async def store(
    storage: Storage, key: SessionKey, text: str, *, role: str = "user", now: float = 1000.0
) -> StoredMessage:
    stored = await storage.messages.add(
        key,
        role=role,  # type: ignore[arg-type]
        content=text,
        tokens=len(text.split()) + 2,
        discord_id=next_discord_id() if role == "user" else None,
        now=now,
    )
    assert stored is not None
    return stored


async def summarize_all(storage: Storage, key: SessionKey) -> None:
    """Mark every stored message of the session as folded into its summary (out of the
    window), as the summarizer would have done long ago."""
    session = await storage.sessions.find(key.channel_id, key.user_id)
    assert session is not None
    [newest] = await storage.messages.newest(session.id, after_id=0, limit=1)
    saved = await storage.sessions.save_summary(
        session.id,
        expected_through=session.summarized_through,
        new_through=newest.id,
        summary="They talked about many things.",
        tokens=6,
        now=2000.0,
    )
    assert saved


def index_word(marker: str) -> str:
    """The marker as one word of the search index: 'ALICE-MARKER' -> 'qjalicemarker'. No
    other word of the tests starts with 'q', which matters for `file_contains`."""
    return "qj" + marker.lower().replace("-", "")


async def bury_in_index(storage: Storage, batches: int = 64) -> None:
    """Store others' messages in many transactions, as a busy bot does: the search index
    merges its segments as it grows, so what was indexed first ends in an older, bigger
    segment, where a deletion only adds a tombstone unless the index is merged again."""
    key = SessionKey(100, 99, 9)  # in server 100, as in the tests that use it
    for batch in range(batches):
        for n in range(16):
            await storage.messages.add(
                key,
                role="user",
                content=f"filler {batch} {n} w{batch}x{n} about the weather",
                tokens=5,
                discord_id=None,
                now=1.0,
            )


def file_contains(path: Path, marker: str) -> bool:
    """The marker, or its index word, anywhere in the database files (WAL included). The
    index stores a word after the prefix it shares with the word before it; the word before
    the marker's never starts with 'q', so all but its first letter are always there."""
    return _file_contains(path, marker.encode()) or _file_contains(
        path, index_word(marker)[1:].encode()
    )


def _file_contains(path: Path, needle: bytes) -> bool:
    return any(
        needle in candidate.read_bytes()
        for candidate in path.parent.iterdir()
        if candidate.name.startswith(path.name)
    )
