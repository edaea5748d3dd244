"""The bot as a process: SIGTERM, fatal gateway closes, and SIGKILL at random moments."""

from __future__ import annotations

import asyncio
import json
import random
import re
import signal
import sqlite3
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from tests.fakes.discord import FakeDiscord
from tests.fakes.llm_server import FakeLLM, message_text
from tests.helpers.llm import is_summary_call, labelled_ids
from tests.helpers.processes import BotLauncher, BotProcess

pytestmark = pytest.mark.slow


@pytest.fixture
async def launch(
    fake_discord: FakeDiscord, fake_llm: FakeLLM, db_path: Path, tmp_path: Path
) -> AsyncIterator[Callable[..., Any]]:
    launcher = BotLauncher(fake_discord, fake_llm, f"sqlite:///{db_path}", tmp_path)

    async def start(wait_identify: bool = True, **settings: str) -> BotProcess:
        identified = fake_discord.identify_count
        bot = await launcher.start(settings=settings)
        if wait_identify:
            await fake_discord.wait_identify(identified + 1, timeout=30)
        return bot

    yield start
    await launcher.close()


def summary_folds(db_path: Path) -> list[str]:
    with sqlite3.connect(db_path) as conn:
        row = conn.execute("SELECT summary FROM sessions").fetchone()
    return re.findall(r"folded-(\d+)", row[0] if row else "")


def stored_discord_ids(db_path: Path) -> set[int]:
    with sqlite3.connect(db_path) as conn:
        return {row[0] for row in conn.execute("SELECT discord_id FROM messages WHERE role='user'")}


async def test_sigterm_finishes_the_reply_in_flight_and_exits_0(
    launch: Callable[..., Any], fake_discord: FakeDiscord, fake_llm: FakeLLM, db_path: Path
) -> None:
    d = fake_discord
    bot = await launch()
    fake_llm.latency = 1.0
    sent = await d.send_message(d.alice, d.CHANNEL_ID, "answer me before you go", mention_bot=True)
    await asyncio.wait_for(fake_llm.wait_for_chat_calls(1), 10)
    stop = time.monotonic()
    bot.process.send_signal(signal.SIGTERM)
    code, stderr = await bot.wait(seconds=12)
    assert code == 0, stderr
    assert time.monotonic() - stop < 10
    reply = await d.next_bot_message(d.CHANNEL_ID)
    assert reply.content == "echo: answer me before you go"
    assert int(sent["id"]) in stored_discord_ids(db_path)
    assert "Traceback" not in stderr


@pytest.mark.parametrize(
    ("code", "expected"),
    [(4004, "DISCORD_TOKEN"), (4014, "Message Content intent")],
)
async def test_fatal_gateway_close_exits_with_one_clear_line(
    launch: Callable[..., Any], fake_discord: FakeDiscord, code: int, expected: str
) -> None:
    bot = await launch()
    await fake_discord.close_gateway(code)
    status, stderr = await bot.wait(seconds=15)
    assert status == 2
    lines = [line for line in stderr.splitlines() if line.startswith("mnemo:")]
    assert len(lines) == 1 and expected in lines[0], stderr
    assert fake_discord.identify_count == 1  # no reconnect loop


# 200 messages through 21 process starts, each waiting out Discord's 5 s between logins:
# a few minutes on a loaded 2-core machine, past the suite's 60 s default.
@pytest.mark.timeout(300)
async def test_sigkill_at_random_moments_loses_nothing(
    launch: Callable[..., Any], fake_discord: FakeDiscord, fake_llm: FakeLLM, db_path: Path
) -> None:
    """200 messages, the process killed 20 times at random moments and restarted each time."""
    d = fake_discord
    rng = random.Random(20261124)
    fake_llm.stream_chunk_delay = 0.005

    def respond(body: dict[str, Any]) -> str:
        if is_summary_call(body):
            folded = re.findall(
                r"msg-(\d+)", message_text(body["messages"][-1]).split("New messages")[1]
            )
            previous = re.search(
                r"<summary>\n(.*)\n</summary>", message_text(body["messages"][-1]), re.S
            )
            before = previous.group(1) if previous and previous.group(1) != "(empty)" else ""
            return (before + " " + " ".join(f"folded-{n}" for n in sorted(set(folded)))).strip()
        return "reply " + " ".join(["words"] * 30)

    def extract(body: dict[str, Any]) -> str:
        facts = [
            {
                "attribute": "lucky_number",
                "value": text.split("lucky number is ")[1].split()[0],
                "sources": [mid],
            }
            for text, mid in labelled_ids(body).items()
            if "lucky number is" in text
        ]
        return json.dumps({"facts": facts})

    fake_llm.responder = respond
    fake_llm.json_responder = extract
    settings = {
        "SUMMARY_TRIGGER_TOKENS": "300",
        "SUMMARY_KEEP_RECENT_TOKENS": "60",
        "FACTS_BATCH_MESSAGES": "3",
        # A killed process's job leases lapse, and the sweep takes its work over, within 5 s,
        # not the default 60 (the final wait for a summary was up to a minute of the test).
        "JOB_LEASE_SECONDS": "5",
    }
    kill_at = sorted(rng.sample(range(5, 200), 20))
    bot = await launch(**settings)
    sent: list[dict[str, Any]] = []
    kills = 0
    for n in range(200):
        text = f"msg-{n} my lucky number is {n}" if n % 7 == 0 else f"msg-{n} tell me more"
        sent.append(await d.send_message(d.alice, d.CHANNEL_ID, text, mention_bot=True))
        if n in kill_at:
            await asyncio.sleep(rng.uniform(0.0, 0.3))  # mid-reply, mid-summary, or idle
            bot.kill()
            await bot.process.wait()
            kills += 1
            bot = await launch(**settings)
        else:
            await d.final_text(await d.next_bot_message(d.CHANNEL_ID), quiet=0.05)
    # Let background work land: a summary streams for a while and yields to every reply, so
    # it completes once the user is quiet; wait for that, not for a fixed time.
    await d.wait_for(lambda: summary_folds(db_path) or None, 60, "a summary to be stored")
    bot.process.send_signal(signal.SIGTERM)
    code, stderr = await bot.wait(seconds=15)
    assert code == 0, stderr

    acknowledged = {
        m.reply_to_id for m in d.bot_messages(d.CHANNEL_ID) if m.reply_to_id is not None
    }
    stored = stored_discord_ids(db_path)
    assert acknowledged <= stored, f"lost: {sorted(acknowledged - stored)}"
    with sqlite3.connect(db_path) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        summary = conn.execute("SELECT summary FROM sessions").fetchone()[0]
        fact_rows = conn.execute("SELECT value FROM facts ORDER BY id").fetchall()
        sources = conn.execute(
            "SELECT message_id, COUNT(*) FROM fact_sources GROUP BY message_id HAVING COUNT(*) > 1"
        ).fetchall()
    folded = re.findall(r"folded-(\d+)", summary)
    assert len(folded) == len(set(folded)), "a fold was written twice"
    assert folded, "no summary survived"
    values = [row[0] for row in fact_rows]
    assert len(values) == len(set(values)), "a fact was written twice"
    assert sources == []
    print(
        f"\nkills: {kills}; sent {len(sent)}; acknowledged {len(acknowledged)}; "
        f"stored {len(stored)}; folded {len(folded)}; facts {len(values)}"
    )


async def test_a_message_stored_but_not_answered_is_answered_after_a_crash(
    launch: Callable[..., Any], fake_discord: FakeDiscord, fake_llm: FakeLLM, db_path: Path
) -> None:
    d = fake_discord
    bot = await launch(MODEL_PARALLEL="2")
    fake_llm.latency = 30.0  # the answer is still being generated when the process dies
    sent = await d.send_message(d.alice, d.CHANNEL_ID, "are you still there?", mention_bot=True)
    failed = await d.send_message(d.bob, d.CHANNEL_ID, "this one fails", mention_bot=True)
    await asyncio.wait_for(fake_llm.wait_for_chat_calls(2), 15)
    assert {int(sent["id"]), int(failed["id"])} <= stored_discord_ids(db_path)
    bot.kill()
    await bot.process.wait()
    assert not d.bot_messages(d.CHANNEL_ID)  # nothing was answered before the crash

    # Bob's message was answered with an error notice by a first process…
    with sqlite3.connect(db_path) as conn:
        conn.execute("UPDATE messages SET reply_pending = 0 WHERE discord_id = ?", (failed["id"],))
    fake_llm.latency = 0.0
    bot = await launch(MODEL_PARALLEL="2")
    reply = await d.next_bot_message(d.CHANNEL_ID, timeout=20)
    assert reply.reply_to_id == int(sent["id"])
    assert await d.final_text(reply) == "echo: are you still there?"
    await d.expect_no_bot_message(d.CHANNEL_ID, wait=1.5)  # …so it is not answered again
    with sqlite3.connect(db_path) as conn:
        rows = conn.execute("SELECT role, content, reply_pending FROM messages ORDER BY id")
        stored = [tuple(row) for row in rows]
    assert ("assistant", "echo: are you still there?", 0) in stored
    assert all(pending == 0 for _, _, pending in stored)

    # A restart now answers nothing twice.
    bot.kill()
    await bot.process.wait()
    bot = await launch()
    await d.expect_no_bot_message(d.CHANNEL_ID, wait=2.0)
    assert len([m for m in d.bot_messages(d.CHANNEL_ID) if m.reply_to_id == int(sent["id"])]) == 1


def queued_ids(db_path: Path) -> set[int]:
    with sqlite3.connect(db_path) as conn:
        return {row[0] for row in conn.execute("SELECT discord_id FROM queued_messages")}


async def test_messages_queued_behind_an_answer_survive_a_crash(
    launch: Callable[..., Any], fake_discord: FakeDiscord, fake_llm: FakeLLM, db_path: Path
) -> None:
    """A user's follow-ups wait for the answer in progress before they are stored; killed
    meanwhile, the process answers them after its restart, in order and once each, as they
    are on Discord then (one was deleted while the bot was down)."""
    d = fake_discord
    bot = await launch()
    fake_llm.latency = 30.0  # the first answer is still being generated when the process dies
    first = await d.send_message(d.alice, d.CHANNEL_ID, "first question", mention_bot=True)
    await asyncio.wait_for(fake_llm.wait_for_chat_calls(1), 15)
    second = await d.send_message(d.alice, d.CHANNEL_ID, "second question", mention_bot=True)
    third = await d.send_message(d.alice, d.CHANNEL_ID, "third question", mention_bot=True)
    deleted = await d.send_message(d.alice, d.CHANNEL_ID, "never mind this", mention_bot=True)
    follow_ups = {int(m["id"]) for m in (second, third, deleted)}
    await d.wait_for(lambda: queued_ids(db_path) == follow_ups or None, 15, "3 queued")
    assert stored_discord_ids(db_path) == {int(first["id"])}  # queued ones are not stored yet
    bot.kill()
    await bot.process.wait()
    await d.delete_user_message(deleted)

    fake_llm.latency = 0.0
    bot = await launch()
    answers = [await d.next_bot_message(d.CHANNEL_ID, timeout=20) for _ in range(3)]
    assert [a.reply_to_id for a in answers] == [int(m["id"]) for m in (first, second, third)]
    assert [await d.final_text(a, quiet=0.3) for a in answers] == [
        "echo: first question",
        "echo: second question",
        "echo: third question",
    ]
    await d.expect_no_bot_message(d.CHANNEL_ID, wait=1.5)  # nothing for the deleted one
    assert queued_ids(db_path) == set()
    with sqlite3.connect(db_path) as conn:
        rows = conn.execute("SELECT role, content FROM messages ORDER BY id").fetchall()
    assert [content for _, content in rows] == [
        "first question",
        "echo: first question",
        "second question",
        "echo: second question",
        "third question",
        "echo: third question",
    ]

    # Another restart answers nothing again.
    bot.kill()
    await bot.process.wait()
    await launch()
    await d.expect_no_bot_message(d.CHANNEL_ID, wait=2.0)


async def test_messages_queued_at_a_graceful_stop_are_answered_at_the_next_start(
    launch: Callable[..., Any], fake_discord: FakeDiscord, fake_llm: FakeLLM, db_path: Path
) -> None:
    """SIGTERM gives the answer in progress a few seconds; one that takes longer, and the
    messages waiting behind it, are answered after the restart."""
    d = fake_discord
    bot = await launch()
    fake_llm.latency = 30.0
    first = await d.send_message(d.alice, d.CHANNEL_ID, "slow question", mention_bot=True)
    await asyncio.wait_for(fake_llm.wait_for_chat_calls(1), 15)
    second = await d.send_message(d.alice, d.CHANNEL_ID, "quick follow-up", mention_bot=True)
    await d.wait_for(lambda: queued_ids(db_path) == {int(second["id"])} or None, 15, "queued")
    bot.process.send_signal(signal.SIGTERM)
    code, stderr = await bot.wait(seconds=15)
    assert code == 0, stderr
    assert queued_ids(db_path) == {int(second["id"])}  # kept for the next start

    fake_llm.latency = 0.0
    await launch()
    answers = [await d.next_bot_message(d.CHANNEL_ID, timeout=20) for _ in range(2)]
    assert [a.reply_to_id for a in answers] == [int(first["id"]), int(second["id"])]
    assert await d.final_text(answers[1], quiet=0.3) == "echo: quick follow-up"
    await d.wait_for(lambda: not queued_ids(db_path) or None, 10, "the queue emptied")


async def test_queued_messages_resumed_are_not_admitted_twice_nor_lost_to_another_stop(
    launch: Callable[..., Any], fake_discord: FakeDiscord, fake_llm: FakeLLM, db_path: Path
) -> None:
    """Left in the queue by a crash, then by a stop during their resumption, then answered:
    they count once against the user's rate (they were admitted when they arrived), and a
    message stored just before a crash whose queue row was not yet cleared is answered once."""
    d = fake_discord
    rate = {"USER_MESSAGES_PER_MINUTE": "3"}  # the three messages below, and not one more
    bot = await launch(**rate)
    fake_llm.latency = 30.0
    first = await d.send_message(d.alice, d.CHANNEL_ID, "question one", mention_bot=True)
    await asyncio.wait_for(fake_llm.wait_for_chat_calls(1), 15)
    second = await d.send_message(d.alice, d.CHANNEL_ID, "question two", mention_bot=True)
    third = await d.send_message(d.alice, d.CHANNEL_ID, "question three", mention_bot=True)
    waiting = {int(second["id"]), int(third["id"])}
    await d.wait_for(lambda: queued_ids(db_path) == waiting or None, 15, "2 queued")
    bot.kill()
    await bot.process.wait()
    with sqlite3.connect(db_path) as conn:  # as if it died between storing and clearing
        conn.execute(
            "INSERT INTO queued_messages (discord_id, guild_id, channel_id, user_id, fence,"
            " arrived_at) VALUES (?, ?, ?, ?, 0, ?)",
            (int(first["id"]), d.GUILD_ID, d.CHANNEL_ID, d.alice.id, time.time() - 1),
        )

    # A second start is stopped while it answers the first message again (slowly).
    calls = len(fake_llm.chat_calls)
    bot = await launch(**rate)
    await asyncio.wait_for(fake_llm.wait_for_chat_calls(calls + 1), 20)
    bot.process.send_signal(signal.SIGTERM)
    code, stderr = await bot.wait(seconds=15)
    assert code == 0, stderr
    assert waiting <= queued_ids(db_path)  # not dropped by the stop

    fake_llm.latency = 0.0
    await launch(**rate)
    expected = [int(m["id"]) for m in (first, second, third)]
    await d.wait_for(
        lambda: [m.reply_to_id for m in d.bot_messages(d.CHANNEL_ID)] == expected or None,
        30,
        "each message answered once, in order",
    )
    texts = [await d.final_text(m, quiet=0.3) for m in d.bot_messages(d.CHANNEL_ID)]
    assert texts == ["echo: question one", "echo: question two", "echo: question three"]
    await asyncio.sleep(1.5)
    assert len(d.bot_messages(d.CHANNEL_ID)) == 3  # no rate notice, no second answer
    assert queued_ids(db_path) == set()
