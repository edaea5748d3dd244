"""Wiring for the benchmarks that run the whole bot through the loopback Discord (1, 5, 7c).

* `TimedDiscord` is the loopback Discord of `tests/fakes`, plus timestamps read from outside
  the bot: when a bot message replying to a given user message first carried the complete
  answer (the arrival time of that POST or PATCH, `RecordedRequest.time`), and when the bot
  sent IDENTIFY and when READY and the GUILD_CREATEs had gone out.
* `TimedLLM` is the loopback LLM, plus the time each SSE stream was completely written (and
  of the reply streams alone: a background call of the previous turn may still be streaming).
* `turn_settled` waits until the bot has finished a turn: the final message reaches the
  loopback Discord before the bot stores the answer, charges it and schedules the summary or
  extraction it made due.
* `prefill` writes a realistic database straight through sqlite3 (the schema comes from the
  real migrations), in the steady state of a bot that has been running for a while: older
  messages folded into each session's summary, every message read for facts.
* `running_bot` starts the real `MemoryBot` against both fakes, as `tests/conftest.py` does.

Everything runs in the benchmark's own process and event loop, bot and fakes alike, on
127.0.0.1. discord.py is pointed at a fake by setting `discord.http.Route.BASE` and
`discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY` (what `FakeDiscord.install` does); the
REST base is read at every request, the gateway when a client connects.
"""

from __future__ import annotations

import asyncio
import contextlib
import pstats
import random
import sqlite3
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from itertools import islice
from pathlib import Path
from typing import Any

import discord
import yarl
from aiohttp import web

from bench import script
from bench.core import BenchError
from bench.harness import bench_settings
from bench.storage_speed import FILL_CHUNK, MESSAGE_INSERT, Corpus, session_key
from bot.client.bot import MemoryBot
from bot.config import Settings
from cogs import EXTENSIONS
from storage import Storage
from storage.models import SessionKey
from tests.fakes.discord import BotMessage, FakeDiscord, FakeUser, RecordedRequest
from tests.fakes.llm_server import FakeLLM, is_reply_call

# A short answer: one Discord message, streamed in five pieces of three words.
SHORT_ANSWER = "Sure, here is a short answer to what you asked me, in fifteen words or so."
HISTORY_MESSAGES = 50  # stored messages of each measured session before the first turn
UNSUMMARIZED = 14  # the newest messages of a session not yet folded into its summary
FACTS_PER_USER = 5
SPREAD_DAYS = 20  # stored messages span the last 20 days: none is past RETENTION_DAYS (30)
STEADY = {
    "USER_MESSAGES_PER_MINUTE": "0",  # the benchmark's users type faster than people
    "FACTS_IDLE_SECONDS": "3600",  # no idle-extraction timer fires during a run
}
BOT_START_TIMEOUT = 30.0
CROWD_FIRST_ID = 1_500_000_000_000_000_000

# No voice here: without this, every run prints discord.py's two "voice will NOT be supported".
discord.VoiceClient.warn_nacl = discord.VoiceClient.warn_dave = False


def crowd(count: int) -> list[FakeUser]:
    """`count` distinct Discord users besides the fake's own five. The fake does not list
    them, and needs not: each message carries its author and member data, as on Discord."""
    return [FakeUser(CROWD_FIRST_ID + n, f"user{n}", f"User {n}") for n in range(1, count + 1)]


def measured_key(channel_id: int, user: FakeUser) -> SessionKey:
    """The session the bot stores `user`'s messages in `channel_id` under."""
    return SessionKey(
        FakeDiscord.GUILD_ID
        if channel_id != FakeDiscord.GUILD2_CHANNEL_ID
        else FakeDiscord.GUILD2_ID,
        channel_id,
        user.id,
    )


class TimedDiscord(FakeDiscord):
    """The loopback Discord, timing answers and start-ups from outside the bot."""

    def __init__(self, answer_text: str = SHORT_ANSWER, **options: Any) -> None:
        super().__init__(**options)
        self.answer_text = answer_text
        self.completed: dict[int, float] = {}
        """User message id → arrival time of the request that first showed `answer_text`
        in a bot message replying to it."""
        self.identified_at: list[float] = []
        self.ready_at: list[float] = []
        self._waiters: dict[int, asyncio.Future[float]] = {}
        self._last_record: RecordedRequest | None = None

    async def answered(self, message_id: int, timeout: float = 30.0) -> float:  # noqa: ASYNC109
        """When the complete answer to user message `message_id` reached Discord."""
        if message_id in self.completed:
            return self.completed[message_id]
        waiter = asyncio.get_running_loop().create_future()
        self._waiters[message_id] = waiter
        try:
            return await asyncio.wait_for(waiter, timeout)
        except TimeoutError:
            raise BenchError(
                f"no complete answer to message {message_id} within {timeout:.0f} s"
            ) from None
        finally:
            self._waiters.pop(message_id, None)

    def forget(self) -> None:
        """Drop what the fake recorded (long runs): requests, dispatch logs, completions."""
        self.requests.clear()
        self.dispatched.clear()
        self.completed.clear()
        if self._session is not None:
            self._session.log.clear()

    # Hooks into the fake: each runs in the request's handler before it first awaits, so the
    # record remembered by `_record` is that request's.

    async def _record(self, request: web.Request) -> RecordedRequest:
        record = await super()._record(request)
        self._last_record = record
        return record

    async def _on_identify(self, conn: Any, data: dict[str, Any]) -> None:
        self.identified_at.append(time.monotonic())
        await super()._on_identify(conn, data)
        self.ready_at.append(time.monotonic())

    def _new_bot_message(
        self, channel_id: int, body: Any, files: Any, **options: Any
    ) -> BotMessage:
        message = super()._new_bot_message(channel_id, body, files, **options)
        self._check_complete(message)
        return message

    def _update_message(self, message: BotMessage, body: Any, files: Any) -> None:
        super()._update_message(message, body, files)
        self._check_complete(message)

    def _check_complete(self, message: BotMessage) -> None:
        source = message.reply_to_id
        if message.content != self.answer_text or source is None or source in self.completed:
            return
        record = self._last_record
        at = record.time if record is not None else time.monotonic()
        self.completed[source] = at
        waiter = self._waiters.get(source)
        if waiter is not None and not waiter.done():
            waiter.set_result(at)


class TimedLLM(FakeLLM):
    """The loopback LLM answering `SHORT_ANSWER` (and the scripted summaries and facts),
    noting when each SSE stream was completely written."""

    def __init__(self, *, stream_chunk_delay: float = 0.0) -> None:
        super().__init__(
            responder=_answer,
            json_responder=script.extract_facts,
            stream_chunk_delay=stream_chunk_delay,
        )
        self.stream_ends: list[float] = []
        self.reply_stream_ends: list[float] = []  # of the chat replies' streams only

    async def _stream_answer(
        self, request: web.Request, body: dict[str, Any], *args: Any, **kwargs: Any
    ) -> web.StreamResponse:
        response = await super()._stream_answer(request, body, *args, **kwargs)
        self.stream_ends.append(time.monotonic())
        if is_reply_call(body):
            self.reply_stream_ends.append(self.stream_ends[-1])
        return response

    def forget(self) -> None:
        self.reset()
        self.stream_ends.clear()
        self.reply_stream_ends.clear()


async def turn_settled(bot: MemoryBot) -> None:
    """Wait until the bot has finished its turns in hand and the background work they made
    due. The final message arrives before the turn ends (the answer is stored and charged
    after it is shown, and the summary or extraction scheduled after that): waiting for the
    jobs alone would let the next turn start beside them."""
    while bot.engine.turns.in_flight:
        await asyncio.wait(set(bot.engine.turns.in_flight))
    await bot.engine.jobs.idle()


def _answer(body: dict[str, Any]) -> str:
    return script.answer(body) if script.is_summary_call(body) else SHORT_ANSWER


@contextlib.asynccontextmanager
async def fakes(*, chunk_delay: float = 0.0) -> AsyncIterator[tuple[TimedDiscord, TimedLLM]]:
    """A started loopback Discord and LLM, closed on exit (point discord.py at the Discord
    with `point_at`, inside `discord_restored`)."""
    discord_fake, llm = TimedDiscord(), TimedLLM(stream_chunk_delay=chunk_delay)
    async with contextlib.AsyncExitStack() as stack:
        await discord_fake.start()
        stack.push_async_callback(discord_fake.close)
        await llm.start()
        stack.push_async_callback(llm.close)
        yield discord_fake, llm


@contextlib.contextmanager
def discord_restored() -> Iterator[None]:
    """Put discord.py's REST base and default gateway back as they were on exit."""
    saved = (discord.http.Route.BASE, discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY)
    try:
        yield
    finally:
        discord.http.Route.BASE, discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = saved


def point_at(fake: FakeDiscord) -> None:
    """Send discord.py's REST requests, and its next gateway connection, to `fake`."""
    discord.http.Route.BASE = fake.base_url
    discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(fake.gateway_url)


def mnemo_settings(llm: FakeLLM, database: Path, **overrides: str) -> Settings:
    return bench_settings(llm.base_url, database, **(STEADY | overrides))


@contextlib.asynccontextmanager
async def running_bot(settings: Settings, fake: FakeDiscord) -> AsyncIterator[MemoryBot]:
    """The real MemoryBot, started against `fake` (which discord.py must point at) and the
    LLM of `settings`; ready when yielded, closed like `python -m bot` closes it."""
    bot = MemoryBot(settings, extensions=EXTENSIONS, guild_ready_timeout=0.1)
    async with started(bot, fake, settings.discord_token):
        yield bot


@contextlib.asynccontextmanager
async def started(
    client: discord.Client, fake: FakeDiscord, token: str = "x"
) -> AsyncIterator[None]:
    """Run `client` (a bot or a plain discord.py client) until the block ends, then close it
    and wait for it to stop; a failure of the client itself is raised as a BenchError unless
    the block already failed."""
    identified = fake.identify_count
    task = asyncio.create_task(client.start(token), name="bench-discord-client")
    try:
        await _wait_started(client, fake, identified + 1, task)
        yield
    except BaseException:
        await _stop(client, task, quiet=True)
        raise
    await _stop(client, task, quiet=False)


async def _wait_started(
    client: discord.Client, fake: FakeDiscord, count: int, task: asyncio.Task[None]
) -> None:
    ready = asyncio.ensure_future(_identified_and_ready(client, fake, count))
    done, _ = await asyncio.wait(
        {task, ready}, timeout=BOT_START_TIMEOUT, return_when=asyncio.FIRST_COMPLETED
    )
    if ready in done:
        ready.result()
        return
    ready.cancel()
    await asyncio.gather(ready, return_exceptions=True)
    if task.done():
        task.result()  # the start-up error, if any
    raise BenchError(f"{type(client).__name__} did not become ready")


async def _stop(client: discord.Client, task: asyncio.Task[None], *, quiet: bool) -> None:
    try:
        await client.close()
        await asyncio.wait_for(task, BOT_START_TIMEOUT)
    except Exception as error:
        if not quiet:
            raise BenchError(f"{type(client).__name__} stopped with {error!r}") from error


async def _identified_and_ready(client: discord.Client, fake: FakeDiscord, count: int) -> None:
    await fake.wait_identify(count, timeout=BOT_START_TIMEOUT)
    await client.wait_until_ready()


def plain_intents() -> discord.Intents:
    intents = discord.Intents.default()
    intents.message_content = True
    return intents


# -- the database ------------------------------------------------------------------------------


async def prefill(path: Path, rows: int, measured: Sequence[SessionKey]) -> float:
    """Fill a database with `rows` messages spread over rows/100 sessions, plus the measured
    sessions with `HISTORY_MESSAGES` messages each and a few facts; return the seconds taken.

    Every session is left as a running bot leaves it: all but the newest `UNSUMMARIZED`
    messages folded into a ~300-token summary, every message read for facts, every message
    younger than the retention period. So the bot starts with no background work to catch up
    on and nothing to purge, and each measured turn reads a window of the newest messages, the
    summary and the user's facts, as a real turn does.
    """
    started_at = time.perf_counter()
    corpus = await Corpus.build()
    await (await Storage.open(path)).close()  # the real schema, from the migrations
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("PRAGMA synchronous=OFF")
        _bulk_fill(conn, corpus, rows, max(rows // 100, 100))
        with _transaction(conn):
            _add_measured(conn, corpus, measured)
            _steady_state(conn, corpus)
    finally:
        conn.close()
    return time.perf_counter() - started_at


def _bulk_fill(conn: sqlite3.Connection, corpus: Corpus, rows: int, sessions: int) -> None:
    """User/assistant pairs, each pair in a random session (as benchmark 6 fills), written
    over the last `SPREAD_DAYS` days."""
    with _transaction(conn):
        conn.executemany(
            "INSERT INTO sessions (id, guild_id, channel_id, user_id, created_at)"
            " VALUES (?, ?, ?, ?, ?)",
            [
                (i, key.guild_id, key.channel_id, key.user_id, 0.0)
                for i, key in ((i, session_key(i)) for i in range(1, sessions + 1))
            ],
        )
    rng = random.Random(1)
    pairs = rows // 2
    first = time.time() - SPREAD_DAYS * 86400

    def messages() -> Iterator[tuple[object, ...]]:
        for pair in range(pairs):
            index = rng.randint(1, sessions)
            key = session_key(index)
            at = first + pair * SPREAD_DAYS * 86400 / max(pairs, 1)
            question, question_tokens = corpus.user[pair % len(corpus.user)]
            answer, answer_tokens = corpus.assistant[pair % len(corpus.assistant)]
            where = (key.guild_id, key.channel_id, key.user_id)
            yield (index, 10**15 + pair, *where, "user", question, question_tokens, at)
            yield (index, None, *where, "assistant", answer, answer_tokens, at + 1)

    stream = messages()
    while chunk := list(islice(stream, FILL_CHUNK)):
        with _transaction(conn):
            conn.executemany(MESSAGE_INSERT, chunk)


@contextlib.contextmanager
def _transaction(conn: sqlite3.Connection) -> Iterator[None]:
    """One explicit transaction (the connection is in autocommit mode)."""
    conn.execute("BEGIN")
    try:
        yield
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


def _add_measured(conn: sqlite3.Connection, corpus: Corpus, keys: Sequence[SessionKey]) -> None:
    now = time.time()
    discord_ids = iter(range(10**17, 10**18))
    with_facts: set[tuple[int, int]] = set()  # facts are per person and server, not session
    for key in keys:
        cursor = conn.execute(
            "INSERT INTO sessions (guild_id, channel_id, user_id, created_at) VALUES (?, ?, ?, ?)",
            (key.guild_id, key.channel_id, key.user_id, now - 86400),
        )
        session_id = cursor.lastrowid
        messages = []
        for n in range(HISTORY_MESSAGES):
            role, pool = ("user", corpus.user) if n % 2 == 0 else ("assistant", corpus.assistant)
            text, tokens = pool[(n // 2 + key.user_id) % len(pool)]
            discord_id = next(discord_ids) if role == "user" else None
            messages.append(
                (
                    session_id,
                    discord_id,
                    key.guild_id,
                    key.channel_id,
                    key.user_id,
                    role,
                    text,
                    tokens,
                    now - 3600 + n,
                )
            )
        conn.executemany(
            "INSERT INTO messages (session_id, discord_id, guild_id, channel_id, user_id, role,"
            " content, tokens, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            messages,
        )
        if (key.user_id, key.space_id) in with_facts:
            continue
        with_facts.add((key.user_id, key.space_id))
        conn.executemany(
            "INSERT INTO facts (user_id, space_id, attribute, value, tokens, created_at)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            [
                (
                    key.user_id,
                    key.space_id,
                    fact.attribute,
                    fact.value,
                    len(fact.value) // 4 + 2,
                    now - 3600,
                )
                for fact in script.FACTS[:FACTS_PER_USER]
            ],
        )


def _steady_state(conn: sqlite3.Connection, corpus: Corpus) -> None:
    summary_parts = corpus.assistant[:3]
    summary = " ".join(text for text, _ in summary_parts)
    summary_tokens = sum(tokens for _, tokens in summary_parts)
    conn.execute(
        "UPDATE sessions SET"
        " facts_through = COALESCE((SELECT MAX(id) FROM messages m"
        "   WHERE m.session_id = sessions.id), 0),"
        " summarized_through = COALESCE((SELECT id FROM messages m"
        "   WHERE m.session_id = sessions.id ORDER BY id DESC LIMIT 1 OFFSET ?), 0),"
        " summary = ?, summary_tokens = ?, summary_updated_at = ?",
        (UNSUMMARIZED, summary, summary_tokens, time.time() - 600),
    )


# -- reading profiles ------------------------------------------------------------------------

_PACKAGES = (
    ("tests/fakes/", "loopback fakes (tests/fakes)"),
    ("/bench/", "the benchmark's driver (bench/)"),
    ("/bot/", "Mnemo: bot/"),
    ("/cogs/", "Mnemo: cogs/"),
    ("/storage/", "Mnemo: storage/"),
    ("/discord/", "discord.py"),
    ("/openai/", "openai SDK"),
    ("/httpx/", "httpx (under the openai SDK)"),
    ("/httpx2/", "httpx (under the openai SDK)"),
    ("/httpcore/", "httpx (under the openai SDK)"),
    ("/pydantic", "pydantic (under the openai SDK)"),
    ("/aiohttp/", "aiohttp"),
    ("/yarl/", "aiohttp"),
    ("/multidict/", "aiohttp"),
    ("/aiosqlite/", "aiosqlite"),
    ("/tiktoken", "tiktoken"),
    ("/asyncio/", "asyncio"),
    ("/typing.py", "typing (stdlib; the openai SDK's transform asks it)"),
    ("importlib", "importlib (stdlib)"),
    ("/json/", "json"),
    ("/logging/", "logging"),
)


def by_package(stats: pstats.Stats, top: int = 10) -> str:
    """A markdown table of own time by package: the profile read at a glance."""
    entries: dict[tuple[str, int, str], Any] = stats.stats  # type: ignore[attr-defined]
    totals: dict[str, float] = {}
    for (filename, _, name), row in entries.items():
        totals[_package(filename, name)] = totals.get(_package(filename, name), 0.0) + row[2]
    total = sum(totals.values()) or 1.0
    lines = ["| where | own s | own % |", "|---|---:|---:|"]
    for package, seconds in sorted(totals.items(), key=lambda item: -item[1])[:top]:
        lines.append(f"| {package} | {seconds:.3f} | {seconds / total * 100:.1f} |")
    return "\n".join(lines)


# Functions whose cumulative time tells where a reply's time goes: (label, file, function).
HOT_SPOTS = (
    (
        "openai SDK: building the request (`chat.completions.create`, CPU only)",
        "openai/resources/chat/completions/completions.py",
        "create",
    ),
    (
        "… of which the SDK's request transform (`_transform.async_transform`)",
        "openai/_utils/_transform.py",
        "async_transform",
    ),
    (
        "openai SDK: reading the stream (`AsyncStream.__stream__`)",
        "openai/_streaming.py",
        "__stream__",
    ),
    ("tiktoken counts (`bot.model.tokens.Tokenizer.count`)", "bot/model/tokens.py", "count"),
    (
        "prompt building (`MemoryEngine.build_prompt`, CPU only)",
        "bot/engine/engine.py",
        "build_prompt",
    ),
    ("discord.py: REST requests (`HTTPClient.request`)", "discord/http.py", "request"),
    (
        "discord.py: gateway events (`DiscordWebSocket.received_message`)",
        "discord/gateway.py",
        "received_message",
    ),
    (
        "loopback Discord: REST handling (`_handle_api`)",
        "tests/fakes/discord/rest.py",
        "_handle_api",
    ),
    (
        "loopback Discord: dispatching events (`_dispatch`)",
        "tests/fakes/discord/gateway.py",
        "_dispatch",
    ),
    ("loopback LLM: answering (`_chat`)", "tests/fakes/llm_server.py", "_chat"),
)


def hot_spots(stats: pstats.Stats, operations: int, unit: str) -> str:
    """A markdown table of `HOT_SPOTS`: calls and cumulative (CPU) ms per operation, and the
    share of the thread's busy time (its time outside `epoll`). A coroutine's cumulative time
    counts only the time it ran, not the time it waited."""
    entries: dict[tuple[str, int, str], Any] = stats.stats  # type: ignore[attr-defined]
    idle = sum(row[2] for (_, _, name), row in entries.items() if "epoll" in name)
    busy = sum(row[2] for row in entries.values()) - idle or 1.0
    per = max(operations, 1)
    lines = [
        f"| function | calls (or resumes) per {unit} | cumulative ms per {unit}"
        " | share of the busy time |",
        "|---|---:|---:|---:|",
    ]
    for label, path, function in HOT_SPOTS:
        rows = [
            row
            for (filename, _, name), row in entries.items()
            if name == function and filename.replace("\\", "/").endswith(path)
        ]
        if not rows:
            continue
        calls = max(row[0] for row in rows)  # primitive calls: resumes of a coroutine count
        cumulative = max(row[3] for row in rows)
        lines.append(
            f"| {label} | {calls / per:.1f} | {cumulative / per * 1000:.2f} |"
            f" {cumulative / busy * 100:.1f} % |"
        )
    return "\n".join(lines)


def _package(filename: str, name: str) -> str:
    if filename == "~":
        if "poll" in name or "select" in name:
            return "waiting in epoll (idle, or I/O)"
        if "sqlite3" in name:
            return "sqlite3 (C)"
        if "json" in name or "encode" in name or "decode" in name:
            return "built-ins: json/encoding (C)"
        return "other built-ins (C)"
    for marker, label in _PACKAGES:
        if marker in filename.replace("\\", "/"):
            return label
    return "other Python"
