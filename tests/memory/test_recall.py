"""Recall: older messages of the same user in the same space come back into the prompt, and
nothing else does; erasure and retention reach the search index, byte by byte."""

from __future__ import annotations

import random
import re
import string
from pathlib import Path

import pytest

from bot.engine.engine import MemoryEngine
from bot.memory.recall import (
    DUPLICATE_OVERLAP,
    collapse_duplicates,
    excerpt,
    near_duplicates,
    search_terms,
)
from bot.model.tokens import Tokenizer
from storage import Storage
from storage.models import SessionKey, StoredMessage
from storage.recall import RecallHit, match_expression, query_terms, split_words
from tests.fakes.discord import FakeDiscord
from tests.fakes.llm_server import FakeLLM
from tests.helpers.e2e import Bots, final_content, press, talk
from tests.helpers.engines import Engines, said
from tests.helpers.storage import bury_in_index, file_contains, index_word, store, summarize_all

GUILD_A, GUILD_B = 100, 200
ALICE, BOB = 1, 2
ALICE_A = SessionKey(GUILD_A, 10, ALICE)  # where the old messages were said
ALICE_A_LATER = SessionKey(GUILD_A, 11, ALICE)  # another channel of the same server
ALICE_B = SessionKey(GUILD_B, 20, ALICE)
ALICE_DM = SessionKey(None, 30, ALICE)
BOB_A = SessionKey(GUILD_A, 10, BOB)


async def plant_everywhere(storage: Storage) -> None:
    """The same question's answer, with a different marker in each scope."""
    await store(storage, ALICE_A, "my locker code at the gym is ALICE-GUILD-A-7731")
    await store(storage, ALICE_A, "noted, locker code ALICE-REPLY-A-7731", role="assistant")
    await store(storage, ALICE_B, "my locker code at the gym is ALICE-GUILD-B-5512")
    await store(storage, ALICE_DM, "my locker code at the gym is ALICE-DM-9090")
    await store(storage, BOB_A, "my locker code at the gym is BOB-GUILD-A-4242")
    for key in (ALICE_A, ALICE_B, ALICE_DM, BOB_A):
        await summarize_all(storage, key)


async def test_recall_stays_in_the_users_own_space(engines: Engines, fake_llm: FakeLLM) -> None:
    engine = await engines.start()
    await plant_everywhere(engine.storage)
    await engine.reply(said(ALICE_A, "what was my gym locker code again?"))
    prompt = fake_llm.prompt_texts()[-1]
    assert "ALICE-GUILD-A-7731" in prompt  # her own, in this server, from long ago
    assert "ALICE-REPLY-A-7731" in prompt  # the bot's own reply to her is searchable too
    for foreign in ("ALICE-GUILD-B-5512", "ALICE-DM-9090", "BOB-GUILD-A-4242"):
        assert foreign not in prompt
    assert "not instructions" in prompt
    # Another channel of the same server is the same space; DMs are one space of their own.
    await engine.reply(said(ALICE_A_LATER, "what was my gym locker code again?"))
    assert "ALICE-GUILD-A-7731" in fake_llm.prompt_texts()[-1]
    await engine.reply(said(SessionKey(None, 31, ALICE), "my gym locker code?"))
    dm_prompt = fake_llm.prompt_texts()[-1]
    assert "ALICE-DM-9090" in dm_prompt and "ALICE-GUILD-A-7731" not in dm_prompt


async def test_scope_is_inside_the_index_query(storage: Storage) -> None:
    await plant_everywhere(storage)
    # Alice's text holds Bob's scope token: it is a word of her content, never his scope.
    await store(storage, ALICE_A, "u2s100 locker code u2s100")
    terms = ["locker", "code", "u2s100"]
    found = await storage.recall.search(
        BOB, GUILD_A, terms, exclude_session_id=0, exclude_from_id=0, excluded_count=0,
        now=2000.0, limit=10,
    )  # fmt: skip
    assert {hit.message.user_id for hit in found} == {BOB}
    assert match_expression(BOB, GUILD_A, terms).startswith('scope : "u2s100" AND content : ("z')


async def test_window_messages_are_not_recalled_again(engines: Engines, fake_llm: FakeLLM) -> None:
    engine = await engines.start()
    await store(engine.storage, ALICE_A, "the boat is called PERSEPHONE-MARKER")
    await engine.reply(said(ALICE_A, "what is the boat called?"))
    prompt = fake_llm.prompt_texts()[-1]
    assert prompt.count("PERSEPHONE-MARKER") == 1  # in the window, not quoted again


@pytest.mark.parametrize(
    "nasty",
    [
        'locker" OR scope : "u2s100',
        "locker* NEAR(code gym, 2) -code",
        "scope: u2s100 content: locker ^code",
        "AND OR NOT ( ) { } [ ] \" ' : * - + ^ ~ NEAR",
        '"""',
        "code:locker AND NOT gym",
        "\x00 locker \ufffd code",
    ],
)
async def test_fts_syntax_in_a_message_is_just_words(storage: Storage, nasty: str) -> None:
    await plant_everywhere(storage)
    terms = query_terms(nasty)
    found = await storage.recall.search(
        ALICE, GUILD_A, terms, exclude_session_id=0, exclude_from_id=0, excluded_count=0,
        now=2000.0, limit=10,
    )  # fmt: skip
    assert all(hit.message.user_id == ALICE and hit.message.guild_id == GUILD_A for hit in found)
    assert all('"' not in term for term in terms)


async def test_an_edited_message_is_found_by_its_new_text(storage: Storage) -> None:
    old = await store(storage, ALICE_A, "we meet at the lighthouse")
    assert old.discord_id is not None
    await storage.messages.edit(old.discord_id, "we meet at the observatory", 7)

    async def found(word: str) -> list[int]:
        hits = await storage.recall.search(
            ALICE, GUILD_A, [word], exclude_session_id=0, exclude_from_id=0, excluded_count=0,
            now=2000.0, limit=5,
        )  # fmt: skip
        return [hit.message.id for hit in hits]

    assert await found("observatory") == [old.id]
    assert await found("lighthouse") == []
    async with storage.db.transaction() as tx:  # raises if the index and the text disagree
        await tx.execute("INSERT INTO messages_fts (messages_fts) VALUES ('integrity-check')")


async def test_migration_indexes_messages_stored_before_it(db_path: Path) -> None:
    store_ = await Storage.open(db_path)
    await store(store_, ALICE_A, "the key is under the GERANIUM pot")
    # A database from before recall: drop the index, then migrate again.
    async with store_.db.transaction() as tx:
        for name in ("insert", "delete", "unindex", "reindex"):
            await tx.execute(f"DROP TRIGGER messages_fts_{name}")
        await tx.execute("DROP TABLE messages_fts")
        await tx.execute("DROP VIEW recall_source")
        await tx.execute("DELETE FROM schema_version WHERE version = 5")
    await store_.close()
    migrated = await Storage.open(db_path)
    try:
        hits = await migrated.recall.search(
            ALICE, GUILD_A, ["geranium"], exclude_session_id=0, exclude_from_id=0,
            excluded_count=0, now=2000.0, limit=5,
        )  # fmt: skip
        assert [hit.message.content for hit in hits] == ["the key is under the GERANIUM pot"]
    finally:
        await migrated.close()


# -- erasure reaches the index ------------------------------------------------------------


async def planted_marker(engine: MemoryEngine, key: SessionKey, marker: str) -> StoredMessage:
    """A message holding the marker and its index word, buried in an older index segment."""
    stored = await store(engine.storage, key, f"remember {marker} {index_word(marker)} please")
    await bury_in_index(engine.storage)
    assert file_contains(engine.storage.db.path, marker)
    return stored


async def test_clear_conversation_leaves_no_word_in_the_index(engines: Engines) -> None:
    engine = await engines.start()
    await planted_marker(engine, ALICE_A, "CLEAR-MARKER")
    await engine.clear_conversation(ALICE_A)
    assert not file_contains(engine.storage.db.path, "CLEAR-MARKER")


async def test_forget_user_leaves_no_word_in_the_index(engines: Engines) -> None:
    engine = await engines.start()
    await planted_marker(engine, ALICE_DM, "FORGET-MARKER")
    await engine.forget_user(ALICE)
    assert not file_contains(engine.storage.db.path, "FORGET-MARKER")


async def test_admin_forget_leaves_no_word_in_the_index(engines: Engines) -> None:
    engine = await engines.start()
    await planted_marker(engine, ALICE_A, "ADMIN-MARKER")
    await engine.forget_member(ALICE, GUILD_A)
    assert not file_contains(engine.storage.db.path, "ADMIN-MARKER")


async def test_deleted_message_leaves_no_word_in_the_index(engines: Engines) -> None:
    engine = await engines.start()
    stored = await planted_marker(engine, ALICE_A, "DELETED-MARKER")
    assert stored.discord_id is not None
    assert await engine.message_deleted(stored.discord_id)
    await engine.jobs.idle()  # the index merge runs in the background, coalesced
    assert not file_contains(engine.storage.db.path, "DELETED-MARKER")
    hits = await engine.storage.recall.search(
        ALICE, GUILD_A, ["deleted"], exclude_session_id=0, exclude_from_id=0, excluded_count=0,
        now=2000.0, limit=5,
    )  # fmt: skip
    assert hits == []


async def test_retention_leaves_no_word_in_the_index(engines: Engines) -> None:
    engine = await engines.start(retention_days=30)
    await planted_marker(engine, ALICE_A, "EXPIRED-MARKER")  # stored at t=1000 s
    await summarize_all(engine.storage, ALICE_A)
    assert await engine.purge_expired() > 0
    assert not file_contains(engine.storage.db.path, "EXPIRED-MARKER")


# -- the pieces -----------------------------------------------------------------------------


def test_query_terms_drop_stopwords_and_repeats() -> None:
    assert query_terms("What was the NAME of the library you recommended? The library!") == [
        "name",
        "library",
        "recommended",
    ]
    assert query_terms("ok thanks") == []


def test_a_short_follow_up_borrows_the_previous_turn(tokenizer: Tokenizer) -> None:
    before = [
        StoredMessage(2, 1, None, 1, 1, 1, "assistant", "Lisbon sounds lovely in June", 6, 2.0),
        StoredMessage(1, 1, 1, 1, 1, 1, "user", "planning the Lisbon trip", 4, 1.0),
    ]
    terms = search_terms("when was that?", before)
    assert "lisbon" in terms and "trip" in terms


def test_near_duplicates_collapse() -> None:
    def hit(index: int, text: str) -> RecallHit:
        return RecallHit(StoredMessage(index, 1, None, 1, 1, 1, "user", text, 5, 1.0), 1.0)

    hits = [
        hit(1, "my flight to Oslo is on May 3"),
        hit(2, "My flight to Oslo is on May 3!"),
        hit(3, "the Oslo hotel is booked"),
    ]
    assert [h.message.id for h in collapse_duplicates(hits)] == [1, 3]


def test_excerpt_centres_on_the_match() -> None:
    text = "filler " * 200 + "the password hint is TEAPOT " + "more " * 200
    cut = excerpt(text, ["teapot"], limit=120)
    assert "TEAPOT" in cut and cut.startswith("…") and cut.endswith("…") and len(cut) < 130


# -- what users see ------------------------------------------------------------------------


async def test_memory_why_shows_only_ones_own_recall_and_is_erased(
    bots: Bots, fake_discord: FakeDiscord, fake_llm: FakeLLM
) -> None:
    d = fake_discord
    await bots.start(recall_max_tokens=800)
    await talk(d, d.alice, d.OTHER_CHANNEL_ID, "my bike lock combination is WHY-MARKER-1234")
    await talk(d, d.bob, d.CHANNEL_ID, "my bike lock combination is BOB-MARKER-9876")
    await talk(d, d.alice, d.CHANNEL_ID, "what is my bike lock combination?")
    assert "WHY-MARKER-1234" in fake_llm.prompt_texts()[-1]
    assert "BOB-MARKER-9876" not in fake_llm.prompt_texts()[-1]

    why = await (await d.slash(d.alice, "memory", "why")).response()
    assert why["data"]["flags"] & 64  # ephemeral
    assert "WHY-MARKER-1234" in why["data"]["content"]
    bobs = await (await d.slash(d.bob, "memory", "why")).response()
    assert "WHY-MARKER" not in bobs["data"]["content"]

    show = await (await d.slash(d.alice, "memory", "show")).response()
    fields = {f["name"]: f["value"] for f in show["data"]["embeds"][0]["fields"]}
    recall_tokens = int(fields["Prompt tokens"].split("recall ")[1].split()[0])
    assert recall_tokens > 0

    clear = await d.slash(d.alice, "memory", "clear", {"scope": "everywhere"})
    await clear.response()
    await press(d, d.alice, clear, "Erase")
    assert (await final_content(clear)).startswith("Done.")
    after = await (await d.slash(d.alice, "memory", "why")).response()
    assert "WHY-MARKER" not in after["data"]["content"]


@pytest.mark.parametrize("seed", range(5))
def test_the_duplicate_test_by_sizes_agrees_with_the_overlap(seed: int) -> None:
    """The shortcut (sizes first, the intersection only when they allow it) decides as the
    Jaccard overlap itself does, on sets of every size relation."""
    rng = random.Random(seed)
    vocabulary = [f"w{i}" for i in range(30)]
    for _ in range(2000):
        a = frozenset(rng.sample(vocabulary, rng.randint(0, 12)))
        b = frozenset(rng.sample(vocabulary, rng.randint(0, 12)))
        union = len(a | b)
        jaccard = len(a & b) / union if union else 1.0
        assert near_duplicates(a, b) == (jaccard >= DUPLICATE_OVERLAP), (a, b)


@pytest.mark.parametrize("seed", range(5))
def test_words_are_split_by_letters_and_digits_in_any_script(seed: int) -> None:
    """The byte table for ASCII text splits exactly as the Unicode rule does (letters and
    digits form words, case-folded; `_` and the rest separate), and other text keeps the rule."""
    rng = random.Random(seed)
    alphabet = string.printable + "éÉßİıΣς٣日本_—’"
    for _ in range(3000):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 80)))
        if rng.random() < 0.5:
            text = "".join(char for char in text if char.isascii())
        assert split_words(text) == re.findall(r"[^\W_]+", text.casefold()), text
