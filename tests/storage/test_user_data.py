"""Deletion and export: every table is covered, nothing of one user touches another."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from storage import Storage
from tests.helpers.postgres_files import compact, files_holding
from tests.helpers.storage import bury_in_index, file_contains, index_word
from tests.helpers.user_data import ALICE, BOB, GUILD_A, GUILD_B, fill_user

pytestmark = pytest.mark.both_backends


async def tables(storage: Storage) -> list[str]:
    return await storage.db.table_names()


async def rows_mentioning(storage: Storage, marker: str) -> dict[str, int]:
    found = {}
    for table in await tables(storage):
        rows = await storage.db.fetch_all(f"SELECT * FROM {table}")
        hits = sum(marker in json.dumps([str(v) for v in tuple(row)]) for row in rows)
        if hits:
            found[table] = hits
    return found


async def rows_of_user(storage: Storage, user_id: int) -> int:
    count = 0
    for table, column in (
        ("sessions", "user_id"),
        ("messages", "user_id"),
        ("facts", "user_id"),
        ("rate_windows", "user_id"),
        ("usage_members", "user_id"),
        ("queued_messages", "user_id"),
    ):
        row = await storage.db.fetch_one(
            f"SELECT COUNT(*) FROM {table} WHERE {column} = ?", (user_id,)
        )
        count += row[0]
    row = await storage.db.fetch_one(
        "SELECT COUNT(*) FROM usage_daily WHERE scope = 'user' AND scope_id = ?", (user_id,)
    )
    return count + row[0]


async def test_every_table_is_known_to_deletion(storage: Storage) -> None:
    # A new table holding user data must be added to delete_user_data and to this test.
    # Not user data: bot_state; the servers' own settings (server_settings, channel_settings,
    # role_rules, blocked_members: a server's moderation record); memory_pauses, a user's
    # choice that erasure keeps (test_erasure_keeps_the_pause).
    expected = [
        "blocked_members",
        "bot_state",
        "channel_settings",
        "fact_sources",
        "facts",
        "forgotten_messages",  # ids and times only, for a day: "Forget this" stays forgotten
        "identify_buckets",  # no user data: login slots per bucket
        "leases",  # no user data: session ids and process names
        "memory_pauses",
        "message_vectors",  # hybrid recall: each message's vector, deleted with the message
        "messages",
        "model_capabilities",  # no user data: which models see images
        "queued_messages",  # ids of messages waiting for their turn (deleted with the user's)
        "rate_windows",
        "role_rules",
        "schema_version",  # migration numbers only
        "server_settings",
        "sessions",
        "usage_daily",
        "usage_members",
        "user_erasures",  # ids and counters only: the fence that keeps erased data erased
    ]
    if storage.db.backend == "sqlite":  # the FTS5 index is tables there; on PostgreSQL a GIN index
        expected += [
            "messages_fts",  # the search index (external content: terms only) and its shadows
            "messages_fts_config",
            "messages_fts_data",
            "messages_fts_docsize",
            "messages_fts_idx",
        ]
    assert sorted(await tables(storage)) == sorted(expected)


async def test_erasure_keeps_the_pause(storage: Storage) -> None:
    await fill_user(storage, ALICE, "ALICE-MARKER")
    await storage.guild_settings.set_paused(ALICE, True, now=5.0)
    await storage.users.delete_user_data(ALICE)
    assert await storage.guild_settings.is_paused(ALICE)  # erasing must not resume remembering
    assert (await storage.users.export(ALICE))["memory_paused_since"] == 5.0


async def test_delete_everywhere_leaves_nothing_and_keeps_others(
    storage: Storage, db_path: Path, backend: str
) -> None:
    await fill_user(storage, ALICE, "ALICE-MARKER")
    await fill_user(storage, BOB, "BOB-MARKER")
    await bury_in_index(storage)
    before_bob = await rows_mentioning(storage, "BOB-MARKER")
    counts = await storage.users.delete_user_data(ALICE)
    assert (counts.messages, counts.summaries, counts.facts) == (8, 4, 4)
    await storage.recall.purge_deleted()  # as the engine does after every erasure
    assert await rows_mentioning(storage, "ALICE-MARKER") == {}
    assert await rows_of_user(storage, ALICE) == 0
    assert await rows_of_user(storage, BOB) > 0
    if backend == "sqlite":
        assert not file_contains(db_path, "ALICE-MARKER")  # not even in free pages or the WAL
    else:
        # After the compaction (within ERASURE_COMPACT_SECONDS): not in any table, toast
        # table, index (the recall index's words too) or catalog file (the WAL is the server's).
        assert await compact(storage) == "done"
        erased = ("ALICE-MARKER", index_word("ALICE-MARKER"))
        assert await files_holding(storage, *erased) == {}
    assert await rows_mentioning(storage, "BOB-MARKER") == before_bob
    assert await storage.db.integrity_ok()


async def test_admin_forget_is_limited_to_one_server(storage: Storage) -> None:
    await fill_user(storage, ALICE, "ALICE-MARKER")
    await fill_user(storage, BOB, "BOB-MARKER")
    counts = await storage.users.delete_member_in_guild(ALICE, GUILD_A)
    assert (counts.messages, counts.summaries, counts.facts) == (4, 2, 2)
    rows = await storage.db.fetch_all(
        "SELECT guild_id FROM usage_members WHERE user_id = ?", (ALICE,)
    )
    assert [row[0] for row in rows] == [GUILD_B]
    export = await storage.users.export(ALICE)
    assert {m["guild_id"] for m in export["messages"]} == {GUILD_B, None}
    assert {f["space_id"] for f in export["facts"]} == {GUILD_B, 0}
    assert {m["guild_id"] for m in export["messages_waiting_their_turn"]} == {GUILD_B, None}
    assert len((await storage.users.export(BOB))["messages"]) == 8
    assert len((await storage.users.export(BOB))["messages_waiting_their_turn"]) == 4


async def test_clear_one_conversation(storage: Storage) -> None:
    await fill_user(storage, ALICE, "ALICE-MARKER")
    counts = await storage.users.clear_session(10, ALICE)
    assert (counts.messages, counts.summaries, counts.facts) == (2, 1, 0)
    assert await storage.sessions.find(10, ALICE) is None
    assert await storage.sessions.find(11, ALICE) is not None


async def test_forget_fact_removes_its_history_only_for_owner(storage: Storage) -> None:
    await fill_user(storage, ALICE, "ALICE-MARKER")
    # Channels 10 and 11 each keep their nickname; where both may be used, the newer one.
    [fact] = await storage.facts.current(ALICE, GUILD_A, {10, 11})
    assert await storage.users.delete_fact(BOB, GUILD_A, fact.id) == 0  # not Bob's
    assert await storage.users.delete_fact(ALICE, GUILD_A, fact.id) == 2  # value and history
    assert [f.space_id for f in await storage.facts.history(ALICE)] == [GUILD_B, 0]


async def test_export_has_everything(storage: Storage) -> None:
    await fill_user(storage, ALICE, "ALICE-MARKER")
    export = await storage.users.export(ALICE)
    assert len(export["sessions"]) == 4 and len(export["messages"]) == 8
    assert len(export["facts"]) == 4
    assert all(f["sources"] for f in export["facts"])
    assert export["message_vectors"] == [{"model": "test-model", "messages": 4}]  # how many
    assert "ALICE-MARKER" not in json.dumps(export["message_vectors"])  # not their bytes
    assert json.dumps(export)  # plain JSON


async def test_export_has_the_counters_kept_about_the_user(storage: Storage) -> None:
    """Usage, the rate window, server blocks and erasure counters are about the user too: ids
    and numbers, in the export (a block without the admin who set it)."""
    await fill_user(storage, ALICE, "ALICE-MARKER")
    await fill_user(storage, BOB, "BOB-MARKER")
    await storage.guild_settings.set_blocked(GUILD_A, ALICE, True, by=BOB, now=9.0)
    await storage.users.clear_session(11, ALICE)  # one conversation erased: a counter
    export = await storage.users.export(ALICE)
    assert export["token_usage_by_day"] == [{"day": "2026-01-01", "tokens": 28}]
    assert sorted(
        (row["guild_id"], row["tokens"]) for row in export["token_usage_by_day_in_servers"]
    ) == [(GUILD_A, 14), (GUILD_B, 7)]
    assert export["message_rate_window"] == {"window_start": 60.0, "count": 1}
    assert export["blocked_in_servers"] == [{"guild_id": GUILD_A, "created_at": 9.0}]
    assert export["erasure_counters"] == [{"scope": "channel", "scope_id": 11, "generation": 1}]
    assert "blocked_by" not in json.dumps(export)


async def test_erasure_keeps_todays_budget_and_rate_window_until_they_expire(
    storage: Storage,
) -> None:
    """Counters kept against abuse (ids and numbers) survive `/memory clear everywhere` on
    their day, and expire with it; past days' counts go with the erasure."""
    now = 1_800_000_000.0  # 2027-01-15 08:00 UTC
    today, yesterday = "2027-01-15", "2027-01-14"
    window = now - now % 60
    await storage.usage.add(today, user_id=ALICE, guild_id=GUILD_A, tokens=500)
    await storage.usage.add(yesterday, user_id=ALICE, guild_id=None, tokens=9)
    assert await storage.fleet.count_message(ALICE, window_start=window) == 1
    await storage.users.delete_user_data(ALICE, now=now)
    assert await storage.usage.used(today, "user", ALICE) == 500
    assert await storage.usage.used(yesterday, "user", ALICE) == 0
    assert await storage.fleet.count_message(ALICE, window_start=window) == 2  # not reset
    assert await storage.usage.expire(before_day="2027-01-16", rate_before=window + 60) == 2
    assert await storage.usage.used(today, "user", ALICE) == 0
    assert await storage.usage.used(today, "guild", GUILD_A) == 500  # servers' counts stay
    assert await storage.fleet.count_message(ALICE, window_start=window + 60) == 1
