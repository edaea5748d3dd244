"""Faults end to end: the model failing in every documented way, Discord refusing or dropping,
an interaction that expired, and the database locked by another process.

Each test checks what the user sees, what is stored, what is sent again (nothing is retried in a
loop), and that the bot answers normally afterwards.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import threading
from pathlib import Path
from typing import Any

import pytest

from bot.client.bot import MemoryBot
from cogs.chat import STORAGE_ERROR
from tests.fakes.discord import FakeDiscord, FakeUser, RecordedRequest
from tests.fakes.llm_server import FakeLLM
from tests.helpers.e2e import Bots, ask, eventually, press, stored, take_tracebacks

WARNING_SIGN = "⚠️"


async def wait_stored(bot: MemoryBot, user: FakeUser, count: int) -> None:
    async def enough() -> bool:
        return len(await stored(bot, user)) >= count

    await eventually(enough, f"{count} stored messages")


async def wait_undelivered(caplog: pytest.LogCaptureFixture) -> None:
    """Until the engine has given up on storing an answer Discord refused."""

    async def given_up() -> bool:
        return any("was not delivered; not stored" in r.getMessage() for r in caplog.records)

    await eventually(given_up, "the undelivered answer to be dropped")


def chat_requests(fake_llm: FakeLLM) -> list[Any]:
    return [r for r in fake_llm.requests if r.path.endswith("/chat/completions")]


def message_posts(d: FakeDiscord, channel: int) -> list[RecordedRequest]:
    return [
        r for r in d.requests if r.method == "POST" and r.path == f"/channels/{channel}/messages"
    ]


# -- the model -------------------------------------------------------------------------------


async def test_429_with_retry_after_is_waited_out(
    bots: Bots, fake_discord: FakeDiscord, fake_llm: FakeLLM
) -> None:
    d = fake_discord
    await bots.start(llm_max_retries=1)
    fake_llm.fail_next("429_retry_after", seconds=1)
    assert await ask(d, d.alice, d.CHANNEL_ID, "patience please") == "echo: patience please"
    first, retry = chat_requests(fake_llm)
    assert retry.headers.get("x-stainless-retry-count") == "1"
    assert retry.time - first.time >= 0.9, "the SDK honoured Retry-After before retrying"


async def test_persistent_rate_limit_gives_a_clear_message(
    bots: Bots, fake_discord: FakeDiscord, fake_llm: FakeLLM
) -> None:
    d = fake_discord
    bot = await bots.start(llm_max_retries=1)
    fake_llm.fail_next("429_retry_after", count=2, seconds=0.2)
    text = await ask(d, d.alice, d.CHANNEL_ID, "MARKER-busy are you there?")
    assert text.startswith(WARNING_SIGN) and "rate-limited" in text and "try again" in text
    assert len(chat_requests(fake_llm)) == 2  # the call and its one configured retry
    assert await stored(bot, d.alice) == [("user", "MARKER-busy are you there?")]
    assert await ask(d, d.alice, d.CHANNEL_ID, "and now?") == "echo: and now?"
    assert len(chat_requests(fake_llm)) == 3
    assert "MARKER-busy" in fake_llm.prompt_texts()[-1]


async def test_quota_exhausted_fails_fast_without_a_retry_storm(
    bots: Bots, fake_discord: FakeDiscord, fake_llm: FakeLLM, caplog: pytest.LogCaptureFixture
) -> None:
    d = fake_discord
    await bots.start(llm_max_retries=1)
    fake_llm.fail_next("quota", count=10)
    texts = [
        await ask(d, d.alice, d.CHANNEL_ID, "hello"),
        await ask(d, d.alice, d.CHANNEL_ID, "hello again"),
        await ask(d, d.bob, d.OTHER_CHANNEL_ID, "me too"),
    ]
    for text in texts:
        assert text.startswith(WARNING_SIGN) and "quota is used up" in text
        assert "admin" in text
    # The first call and at most its one SDK retry reach the API; later turns fail fast.
    assert 1 <= len(chat_requests(fake_llm)) <= 2
    exhausted = [r for r in caplog.records if "quota is exhausted" in r.getMessage()]
    assert len(exhausted) == 1, "one log line, not one per message"


async def test_5xx_is_explained_and_the_next_turn_works(
    bots: Bots, fake_discord: FakeDiscord, fake_llm: FakeLLM
) -> None:
    d = fake_discord
    bot = await bots.start()
    fake_llm.fail_next("503")
    text = await ask(d, d.alice, d.CHANNEL_ID, "MARKER-503 first try")
    assert text == f"{WARNING_SIGN} The model service had an error. Please try again in a moment."
    assert await ask(d, d.alice, d.CHANNEL_ID, "second try") == "echo: second try"
    assert "MARKER-503" in fake_llm.prompt_texts()[-1]
    assert await stored(bot, d.alice) == [
        ("user", "MARKER-503 first try"),
        ("user", "second try"),
        ("assistant", "echo: second try"),
    ]


async def test_hanging_model_hits_the_reply_deadline(
    bots: Bots, fake_discord: FakeDiscord, fake_llm: FakeLLM
) -> None:
    d = fake_discord
    bot = await bots.start(reply_deadline_seconds=1.5, llm_timeout_seconds=30)
    fake_llm.fail_next("hang")
    await d.send_message(d.alice, d.CHANNEL_ID, "are you stuck?", mention_bot=True)
    async with asyncio.timeout(5):
        await fake_llm.wait_for_chat_calls(1)
    # Another conversation is not held up by the hanging one.
    assert await ask(d, d.bob, d.OTHER_CHANNEL_ID, "still alive?") == "echo: still alive?"
    text = await d.final_text(await d.next_bot_message(d.CHANNEL_ID), quiet=0.3)
    assert text.startswith(WARNING_SIGN) and "took too long" in text
    assert await ask(d, d.alice, d.CHANNEL_ID, "again") == "echo: again"
    assert [role for role, _ in await stored(bot, d.alice)] == ["user", "user", "assistant"]


@pytest.mark.parametrize(
    ("failure", "options", "notice"),
    [
        ("stream_cut", {"after": 2}, "broke mid-answer"),
        ("no_finish", {}, "cut off before it finished"),
    ],
)
async def test_broken_stream_is_shown_as_interrupted_and_not_remembered(
    bots: Bots,
    fake_discord: FakeDiscord,
    fake_llm: FakeLLM,
    failure: str,
    options: dict[str, Any],
    notice: str,
) -> None:
    d = fake_discord
    bot = await bots.start()
    words = [f"PARTIAL{i}" for i in range(12)]
    fake_llm.push_answers(" ".join(words))
    fake_llm.fail_next(failure, **options)
    text = await ask(d, d.alice, d.CHANNEL_ID, "tell me a story")
    shown, _, warning = text.rpartition("\n\n")
    arrived = words[:6] if failure == "stream_cut" else words
    assert shown.split() == arrived, "what arrived is kept on screen"
    assert warning.startswith(WARNING_SIGN) and notice in warning
    assert await stored(bot, d.alice) == [("user", "tell me a story")]

    await ask(d, d.alice, d.CHANNEL_ID, "go on")
    prompt = fake_llm.prompts()[-1]
    assert [m["role"] for m in prompt] == ["system", "user", "user"]
    assert "PARTIAL" not in fake_llm.prompt_texts()[-1]


# -- Discord ---------------------------------------------------------------------------------


async def test_403_on_sending_the_reply_is_logged_once_and_not_retried(
    bots: Bots, fake_discord: FakeDiscord, fake_llm: FakeLLM, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="bot.engine.engine")
    d = fake_discord
    bot = await bots.start()
    fake_llm.stream_chunk_delay = 0.05  # the answer keeps growing after the refused send
    fake_llm.push_answers(" ".join(f"word{i}" for i in range(30)))
    d.fail_next("POST", rf"/channels/{d.CHANNEL_ID}/messages", 403)
    await d.send_message(d.alice, d.CHANNEL_ID, "MARKER-403 are you allowed?", mention_bot=True)
    await wait_undelivered(caplog)  # the turn is over
    await d.expect_no_bot_message(d.CHANNEL_ID, wait=0.5)
    assert [r.status for r in message_posts(d, d.CHANNEL_ID)] == [403]
    assert not [r for r in d.requests if r.method == "PATCH"]
    refused = [r for r in caplog.records if "Could not deliver a reply" in r.getMessage()]
    assert len(refused) == 1 and refused[0].levelno == logging.WARNING
    # The answer the user never saw is not memory: only their own message is stored.
    assert await stored(bot, d.alice) == [("user", "MARKER-403 are you allowed?")]

    assert await ask(d, d.alice, d.CHANNEL_ID, "and now?") == "echo: and now?"
    assert "MARKER-403" in fake_llm.prompt_texts()[-1]


async def test_a_500_on_send_is_retried_by_discord_py_and_shown_once(
    bots: Bots, fake_discord: FakeDiscord
) -> None:
    d = fake_discord
    await bots.start()
    d.fail_next("POST", rf"/channels/{d.CHANNEL_ID}/messages", 500)
    assert await ask(d, d.alice, d.CHANNEL_ID, "hello") == "echo: hello"
    assert [r.status for r in message_posts(d, d.CHANNEL_ID)] == [500, 200]
    await d.expect_no_bot_message(d.CHANNEL_ID, wait=0.3)


async def test_a_503_on_send_is_given_up_once_and_the_bot_carries_on(
    bots: Bots, fake_discord: FakeDiscord, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="bot.engine.engine")
    d = fake_discord
    bot = await bots.start()
    d.fail_next("POST", rf"/channels/{d.CHANNEL_ID}/messages", 503)
    await d.send_message(d.alice, d.CHANNEL_ID, "first", mention_bot=True)
    await wait_undelivered(caplog)
    await d.expect_no_bot_message(d.CHANNEL_ID, wait=0.5)
    assert [r.status for r in message_posts(d, d.CHANNEL_ID)] == [503], "503 is not retried"
    assert len([r for r in caplog.records if "Could not deliver" in r.getMessage()]) == 1
    assert await ask(d, d.alice, d.CHANNEL_ID, "second") == "echo: second"
    assert [c for _, c in await stored(bot, d.alice)] == ["first", "second", "echo: second"]


async def test_gateway_drop_resume_answers_each_message_once(
    bots: Bots, fake_discord: FakeDiscord, fake_llm: FakeLLM
) -> None:
    d = fake_discord
    bot = await bots.start()
    before = await d.send_message(d.alice, d.CHANNEL_ID, "before the drop", mention_bot=True)
    await d.final_text(await d.next_bot_message(d.CHANNEL_ID), quiet=0.3)
    await d.drop_connection(replay="unacked", wait=False)
    # Sent while the bot is disconnected: replayed on resume, with the events after the bot's
    # last heartbeat (which may include "before the drop").
    await d.send_message(d.bob, d.CHANNEL_ID, "during the drop", mention_bot=True)
    await d.wait_for(lambda: True if d.resume_count == 1 else None, 10, "the resume")
    await d.wait_ready()
    reply = await d.next_bot_message(d.CHANNEL_ID, timeout=10)
    assert await d.final_text(reply, quiet=0.3) == "echo: during the drop"
    await d.redeliver(before)  # surely replayed once more
    await d.expect_no_bot_message(d.CHANNEL_ID, wait=0.8)
    assert d.identify_count == 1, "resumed, not re-identified"
    assert len(fake_llm.chat_calls) == 2
    assert await ask(d, d.alice, d.CHANNEL_ID, "after") == "echo: after"
    assert len(await stored(bot, d.bob)) == 2


async def test_invalidated_session_reidentifies_without_redoing_start_up(
    bots: Bots, fake_discord: FakeDiscord, fake_llm: FakeLLM
) -> None:
    d = fake_discord
    bot = await bots.start()
    engine, storage = bot.engine, bot.storage
    assert await ask(d, d.alice, d.CHANNEL_ID, "one") == "echo: one"
    await d.invalidate_session(resumable=False)
    await d.wait_identify(2, timeout=15)  # discord.py waits ~5 s before identifying again
    await asyncio.wait_for(bot.wait_until_ready(), 5)
    assert await ask(d, d.alice, d.CHANNEL_ID, "two") == "echo: two"
    assert len([r for r in d.requests if r.method == "PUT"]) == 1, "commands synced once"
    assert bot.engine is engine and bot.storage is storage, "setup_hook ran once"
    assert "one" in fake_llm.prompt_texts()[-1]


async def test_expired_interaction_is_survived_quietly(
    bots: Bots, fake_discord: FakeDiscord
) -> None:
    d = fake_discord
    await bots.start()
    unknown = {"message": "Unknown interaction", "code": 10062}
    d.fail_next("POST", r"/interactions/\d+/[^/]+/callback", 404, body=unknown)
    expired = await d.slash(d.alice, "memory", "show")
    await d.wait_for(
        lambda: True if any(r.injected for r in d.requests) else None, 5, "the late answer"
    )
    await asyncio.sleep(0.3)
    assert not expired.acknowledged
    # The bot keeps answering commands, in time (a late answer would be a 10062 too).
    response = await (await d.slash(d.alice, "memory", "show")).response()
    assert response["data"]["embeds"][0]["title"] == "Your memory in this conversation"
    tracebacks = take_tracebacks()
    assert not tracebacks, [r.getMessage() for r in tracebacks]


async def test_expired_button_press_is_survived_quietly(
    bots: Bots, fake_discord: FakeDiscord
) -> None:
    d = fake_discord
    bot = await bots.start()
    bot.get_cog("Memory").confirm_timeout = 1.0  # type: ignore[union-attr]
    await ask(d, d.alice, d.CHANNEL_ID, "keep me")
    interaction = await d.slash(d.alice, "memory", "clear")
    await interaction.response()
    unknown = {"message": "Unknown interaction", "code": 10062}
    d.fail_next("POST", r"/interactions/\d+/[^/]+/callback", 404, body=unknown)
    pressed = await press(d, d.alice, interaction, "Erase")
    await d.wait_for(
        lambda: True if any(r.injected for r in d.requests) else None, 5, "the late answer"
    )
    assert not pressed.acknowledged
    # Past the confirmation's timeout: the bot edits its buttons away (Timed out).
    await d.wait_for(
        lambda: (interaction.original is not None and not interaction.original.components) or None,
        5,
        "the confirmation to time out",
    )
    assert len(await stored(bot, d.alice)) == 2, "an unacknowledged press deletes nothing"
    tracebacks = take_tracebacks()
    assert not tracebacks, [r.getMessage() for r in tracebacks]


# -- the database ----------------------------------------------------------------------------


def hold_write_lock(path: Path, locked: threading.Event, release: threading.Event) -> None:
    """Another process's view: take SQLite's write lock and keep it until told (at most 15 s)."""
    conn = sqlite3.connect(path, timeout=1, isolation_level=None)
    try:
        conn.execute("BEGIN EXCLUSIVE")
        locked.set()
        release.wait(15)
        conn.execute("ROLLBACK")
    finally:
        conn.close()


async def test_database_locked_past_the_busy_timeout(
    bots: Bots, fake_discord: FakeDiscord, fake_llm: FakeLLM, db_path: Path
) -> None:
    d = fake_discord
    bot = await bots.start()
    assert await ask(d, d.alice, d.CHANNEL_ID, "MARKER-before") == "echo: MARKER-before"
    locked, release = threading.Event(), threading.Event()
    holder = asyncio.create_task(asyncio.to_thread(hold_write_lock, db_path, locked, release))
    try:
        assert await asyncio.to_thread(locked.wait, 5)
        await d.send_message(d.alice, d.CHANNEL_ID, "while locked", mention_bot=True)
        notice = await d.next_bot_message(d.CHANNEL_ID, timeout=10)  # busy timeout: 5 s
        assert await d.final_text(notice, quiet=0.3) == f"{WARNING_SIGN} {STORAGE_ERROR}"
    finally:
        release.set()
        await holder
    assert len(fake_llm.chat_calls) == 1, "no model call for a message that was not stored"
    assert await ask(d, d.alice, d.CHANNEL_ID, "after the lock") == "echo: after the lock"
    assert await stored(bot, d.alice) == [
        ("user", "MARKER-before"),
        ("assistant", "echo: MARKER-before"),
        ("user", "after the lock"),
        ("assistant", "echo: after the lock"),
    ]
    assert "MARKER-before" in fake_llm.prompt_texts()[-1]
