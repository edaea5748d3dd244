"""Hybrid recall in the engine: messages embedded in the background, the question's vector on
the reply path, fused with the word search. The real openai SDK over HTTP to the loopback
model (FakeLLM) for the chat and to the loopback embeddings server (real all-MiniLM-L6-v2
vectors, FakeEmbeddings) through EMBEDDING_BASE_URL, on both backends."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator

import numpy as np
import pytest

from bot.engine.engine import IncomingMessage, MemoryEngine, Outcome
from bot.memory.vectors import VectorRecall
from bot.policy.access import ChannelView
from bot.policy.audience import Audience
from storage import Storage
from storage.models import SessionKey
from storage.vectors import ToEmbed
from tests.fakes.embeddings import MODEL, FakeEmbeddings
from tests.fakes.llm_server import FakeLLM
from tests.helpers.engines import Engines, said
from tests.helpers.storage import file_contains, store, summarize_all
from tests.helpers.user_data import vector_of

pytestmark = pytest.mark.both_backends

ALICE_A = SessionKey(100, 10, 1)
WEDDING = "Marie gets married in June and I am her maid of honour"
LOCKER = "my locker code at the gym is 7731"
OTHERS = (
    "my bike tyre went flat on the way to work",
    "I'm cooking lasagna tonight for the neighbours",
    "the quarterly report is due on Friday",
    LOCKER,
    "the cat knocked my coffee off the desk again",
    "we repainted the kitchen a pale green",
)
PARAPHRASE = "what did I tell you about my sister's wedding?"


@pytest.fixture
async def fake_embeddings() -> AsyncIterator[FakeEmbeddings]:
    async with FakeEmbeddings() as server:
        yield server


async def plant(storage: Storage) -> None:
    """Old messages of Alice's, out of the window (folded into a summary long ago)."""
    for text in (WEDDING, *OTHERS):
        await store(storage, ALICE_A, text)
        await store(storage, ALICE_A, "noted", role="assistant")
    await summarize_all(storage, ALICE_A)


async def plant_and_embed(engine: MemoryEngine) -> None:
    """`plant`, and the background embedding a turn would have scheduled, done."""
    await plant(engine.storage)
    session = await engine.storage.sessions.find(ALICE_A.channel_id, ALICE_A.user_id)
    assert session is not None
    engine.learning.schedule_embedding(session.id)
    await engine.jobs.idle()


async def with_vectors(
    engines: Engines, fake_embeddings: FakeEmbeddings, *, model: str = MODEL, **overrides: object
) -> MemoryEngine:
    """An engine with hybrid recall, its start-up embedding done. The query's vector may take
    5 s (a loaded test machine must not turn a question into words only), unless told."""
    overrides = {"embedding_timeout_seconds": 5.0, **overrides}
    engine = await engines.start(
        embedding_model=model,
        embedding_base_url=fake_embeddings.base_url,
        retention_days=0,  # the planted messages are old: no retention pass may take them
        **overrides,
    )
    await engine.jobs.idle()
    return engine


async def test_a_paraphrase_finds_its_evidence_only_with_vectors(
    engines: Engines, fake_llm: FakeLLM, fake_embeddings: FakeEmbeddings
) -> None:
    words_only = await engines.start(retention_days=0)
    await plant(words_only.storage)
    await words_only.reply(said(ALICE_A, PARAPHRASE))
    assert "Marie gets married" not in fake_llm.prompt_texts()[-1]  # no word in common
    await engines.stop(words_only)

    engine = await with_vectors(engines, fake_embeddings)
    assert await engine.storage.vectors.count(MODEL) == 2 * (1 + len(OTHERS)) + 2
    result = await engine.reply(said(ALICE_A, PARAPHRASE))
    assert result.outcome is Outcome.ANSWERED
    assert "Marie gets married" in fake_llm.prompt_texts()[-1]
    last = await engine.last_recall(ALICE_A)  # `/memory why` shows it
    assert last is not None and any("Marie" in item.text for item in last.excerpts)
    assert fake_llm.embedding_calls == []  # the chat server was never asked for vectors


async def test_the_words_still_find_what_they_find(
    engines: Engines, fake_llm: FakeLLM, fake_embeddings: FakeEmbeddings
) -> None:
    engine = await with_vectors(engines, fake_embeddings)
    await plant_and_embed(engine)
    await engine.reply(said(ALICE_A, "what was my gym locker code?"))
    assert "7731" in fake_llm.prompt_texts()[-1]


@pytest.mark.parametrize("failure", ["hang", "slow", "500"])
async def test_a_failing_or_slow_embeddings_server_leaves_recall_to_the_words(
    engines: Engines, fake_llm: FakeLLM, fake_embeddings: FakeEmbeddings, failure: str
) -> None:
    # REPLY_DEADLINE_SECONDS is 10 in the tests: a reply that waited for the hanging or
    # 60-second vector would fail; it is answered, its query vector cut at 0.3 s.
    engine = await with_vectors(engines, fake_embeddings, embedding_timeout_seconds=0.3)
    await plant_and_embed(engine)
    if failure == "slow":
        fake_embeddings.latency = 60.0
    else:
        fake_embeddings.fail_next(failure)
    calls = len(fake_embeddings.calls)
    result = await engine.reply(said(ALICE_A, "what was my gym locker code?"))
    assert result.outcome is Outcome.ANSWERED
    assert len(fake_embeddings.calls) == calls + 1  # asked once (no retry on the reply path)
    assert engine.vectors is not None and engine.vectors.skipped == 1
    assert "7731" in fake_llm.prompt_texts()[-1]  # found by its words


async def test_messages_are_embedded_in_the_background_after_a_turn(
    engines: Engines, fake_embeddings: FakeEmbeddings
) -> None:
    engine = await with_vectors(engines, fake_embeddings)
    await engine.reply(said(ALICE_A, WEDDING))
    await engine.jobs.idle()
    session = await engine.storage.sessions.find(ALICE_A.channel_id, ALICE_A.user_id)
    assert session is not None
    assert await engine.storage.vectors.missing(session.id, MODEL, limit=10) == []
    assert await engine.storage.vectors.count(MODEL) == 2  # the message and its answer
    batched = [call for call in fake_embeddings.calls if len(call["input"]) == 2]
    assert batched  # one request for both


async def test_an_edit_embeds_the_new_text(
    engines: Engines, fake_embeddings: FakeEmbeddings
) -> None:
    engine = await with_vectors(engines, fake_embeddings)
    message = said(ALICE_A, "my favourite colour is blue")
    await engine.reply(message)
    await engine.jobs.idle()
    assert await engine.message_edited(message.discord_id, WEDDING, user_id=ALICE_A.user_id)
    await engine.jobs.idle()
    row = await engine.storage.db.fetch_one(
        "SELECT v.vector FROM message_vectors v JOIN messages m ON m.id = v.message_id"
        " WHERE m.discord_id = ?",
        (message.discord_id,),
    )
    assert row is not None
    stored = np.frombuffer(bytes(row[0]), dtype="<f4")
    [expected] = await fake_embeddings.embed([WEDDING])
    assert float(stored @ expected) > 0.999


async def test_a_new_model_embeds_again_and_never_mixes(
    engines: Engines, fake_llm: FakeLLM, fake_embeddings: FakeEmbeddings
) -> None:
    first = await with_vectors(engines, fake_embeddings, model="model-one")
    await plant_and_embed(first)
    stored = await first.storage.vectors.count("model-one")
    assert stored > 0
    # A search with another model reads none of model-one's vectors.
    other = VectorRecall(first.storage, first.llm, "model-two", timeout=5.0)
    [query] = await fake_embeddings.embed([PARAPHRASE])
    near = await other.nearest(1, 100, query, exclude_session_id=0, exclude_from_id=0, limit=5)
    assert near.ranked == [] and other.cached_scopes == 0
    await engines.stop(first)

    second = await with_vectors(engines, fake_embeddings, model="model-two")
    assert await second.storage.vectors.count("model-two") == stored  # all embedded again
    assert await second.storage.vectors.count("model-one") == 0  # replaced
    models = {call["model"] for call in fake_embeddings.calls}
    assert models == {"model-one", "model-two"}
    await second.reply(said(ALICE_A, PARAPHRASE))
    assert "Marie gets married" in fake_llm.prompt_texts()[-1]


async def test_erasure_takes_the_vectors_and_the_cached_matrix(
    engines: Engines, fake_embeddings: FakeEmbeddings
) -> None:
    engine = await with_vectors(engines, fake_embeddings)
    await plant_and_embed(engine)
    await engine.reply(said(ALICE_A, PARAPHRASE))
    assert engine.vectors is not None and engine.vectors.cached_scopes == 1
    await engine.forget_user(ALICE_A.user_id)
    assert await engine.storage.vectors.count() == 0
    assert engine.vectors.cached_scopes == 0


async def test_without_an_embedding_model_nothing_is_asked_or_written(
    engines: Engines, fake_llm: FakeLLM
) -> None:
    engine = await engines.start(retention_days=0)
    assert engine.vectors is None
    await plant(engine.storage)
    for text in (WEDDING, PARAPHRASE, "what was my gym locker code?"):
        await engine.reply(said(ALICE_A, text))
    await engine.jobs.idle()
    assert fake_llm.embedding_calls == []
    assert await engine.storage.vectors.count() == 0


async def stored_vector_marker(engine: MemoryEngine, marker: str) -> int:
    """A message of Alice's whose stored vector's bytes spell `marker`; its Discord id."""
    message = await store(engine.storage, ALICE_A, f"a message about {marker.lower()}")
    await summarize_all(engine.storage, ALICE_A)
    item = ToEmbed(message.id, message.content)
    assert await engine.storage.vectors.save(MODEL, [(item, vector_of(marker))]) == 1
    assert message.discord_id is not None
    return message.discord_id


@pytest.mark.parametrize("change", ["delete", "edit", "retention"])
async def test_a_deleted_edited_or_expired_message_leaves_no_vector_bytes(
    engines: Engines, fake_embeddings: FakeEmbeddings, backend: str, change: str
) -> None:
    # No retention pass of its own at start-up (it would race the test's).
    engine = await engines.start(
        embedding_model=MODEL, embedding_base_url=fake_embeddings.base_url, retention_days=0
    )
    discord_id = await stored_vector_marker(engine, "VECTOR-MARKER-0042")
    if change == "delete":
        assert await engine.message_deleted(discord_id) is not None
    elif change == "edit":
        assert await engine.message_edited(discord_id, "new words", user_id=ALICE_A.user_id)
    else:
        # The retention pass's deletion (stored at t=1000 s, summarized), as purge_expired runs it.
        assert await engine.storage.messages.delete_expired(older_than=2000.0) == 1
    await engine.jobs.idle()
    rows = await engine.storage.db.fetch_all("SELECT vector FROM message_vectors")
    assert all(b"VECTOR-MARKER" not in bytes(row[0]) for row in rows)
    if change == "edit":  # the new text was embedded again
        assert len(rows) == 1
    if backend == "sqlite":
        await engine.storage.db.checkpoint()
        assert not file_contains(engine.storage.db.path, "VECTOR-MARKER-0042")


async def test_a_private_channels_meaning_never_reaches_a_public_prompt(
    engines: Engines, fake_llm: FakeLLM, fake_embeddings: FakeEmbeddings
) -> None:
    """The audience rule holds for vectors as for words: what Alice said in a private
    channel is found by meaning there, never in a public channel of the same server."""
    private, public = SessionKey(100, 20, 1), SessionKey(100, 10, 1)
    engine = await with_vectors(engines, fake_embeddings)
    for text in (WEDDING, *OTHERS):
        await store(engine.storage, private, text)
        await store(engine.storage, private, "noted", role="assistant")
    await summarize_all(engine.storage, private)
    session = await engine.storage.sessions.find(private.channel_id, private.user_id)
    assert session is not None
    engine.learning.schedule_embedding(session.id)
    await engine.jobs.idle()
    public_places = frozenset({public.channel_id})

    def asked(key: SessionKey) -> IncomingMessage:
        audience = Audience(key.channel_id, public=public_places)
        return dataclasses.replace(said(key, PARAPHRASE), view=ChannelView(audience=audience))

    await engine.reply(asked(public))
    assert "Marie gets married" not in fake_llm.prompt_texts()[-1]
    await engine.reply(asked(private))
    assert "Marie gets married" in fake_llm.prompt_texts()[-1]
