"""Benchmark 5: messages answered per second with 100 sessions talking at once.

100 users (25 in each of four channels) each send a message, wait for the complete answer,
and send the next one at once, through the real `MemoryBot` (discord.py, the openai SDK, a
SQLite file of 10 thousand messages where each of the 100 sessions has a history of 50),
against the loopback Discord and a loopback LLM that answers instantly. Background work
(summaries, fact extraction) runs as it would. A message counts as answered when the request
carrying the complete answer reaches the loopback Discord; the rate is taken over a window
after a warm-up. A task in the same event loop sleeps 10 ms again and again and records how
late it wakes up: the event-loop lag that every reply in flight also suffers.

The bot, the fakes and the driver share this process and its event loop (and so its one core
for Python code; SQLite runs on aiosqlite's thread). Comparators, run alternately with Mnemo
on the same fakes: the same Discord and LLM traffic without memory (a plain discord.py client
streaming the answer with the bot's own `StreamedReply` and `LLMClient`, no database, no
prompt), and a discord.py echo bot that sends the answer without calling any LLM: the
ceiling of the loopback servers and discord.py themselves.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from tempfile import TemporaryDirectory

import discord

from bench import script
from bench.core import BenchResult, Figure, Goal, Scale, median, percentile
from bench.loopback import (
    SHORT_ANSWER,
    TimedDiscord,
    TimedLLM,
    by_package,
    crowd,
    discord_restored,
    fakes,
    hot_spots,
    measured_key,
    mnemo_settings,
    plain_intents,
    point_at,
    prefill,
    running_bot,
    started,
)
from bench.profiling import profile
from bot.app import make_llm
from bot.client.replies import StreamedReply
from bot.config import Settings
from bot.model.llm import LLMClient, StreamState
from tests.fakes.discord import FakeDiscord, FakeUser

SESSIONS = 100
CHANNELS = (
    FakeDiscord.CHANNEL_ID,
    FakeDiscord.OTHER_CHANNEL_ID,
    FakeDiscord.THREAD_ID,
    FakeDiscord.GUILD2_CHANNEL_ID,
)
RATE_GOAL = Goal(200, at_most=False)
SHARE_GOAL = Goal(0.8, at_most=False)  # the issue's: Mnemo at 0.8x a bot without memory
LAG_GOAL_MS = Goal(50)
LAG_TICK = 0.010
WARMUP = 1.0
ANSWER_TIMEOUT = 30.0
PREFILL_ROWS = 10_000
LOAD = {"MODEL_PARALLEL": str(SESSIONS)}
MNEMO, NO_MEMORY, ECHO = "Mnemo", "no memory", "echo"


@dataclass(slots=True)
class Load:
    """One run: answers in the window, and the lag samples taken in it."""

    answered: int = 0
    seconds: float = 0.0
    total: int = 0  # answers in the whole run, warm-up and wind-down included
    lag: list[float] = field(default_factory=list)
    loop_cpu: float = 0.0  # CPU seconds of the event-loop thread in the window
    process_cpu: float = 0.0  # CPU seconds of the whole process (SQLite's thread too) in it

    @property
    def rate(self) -> float:
        return self.answered / self.seconds

    @property
    def lag_p99_ms(self) -> float:
        return percentile(self.lag, 0.99) * 1000

    def ms_per_answer(self, cpu_seconds: float) -> float:
        return cpu_seconds * 1000 / max(self.answered, 1)


class NoMemoryBot(discord.Client):
    """Mnemo's Discord and LLM traffic for a reply, without the memory engine."""

    def __init__(self, llm: LLMClient, settings: Settings) -> None:
        super().__init__(
            intents=plain_intents(),
            guild_ready_timeout=0.1,
            allowed_mentions=discord.AllowedMentions.none(),
        )
        self._llm, self._settings = llm, settings

    async def on_message(self, message: discord.Message) -> None:
        if message.author.bot or self.user is None or self.user.id not in message.raw_mentions:
            return
        reply = StreamedReply(message)
        await reply.progress("")
        state = StreamState()
        prompt = [
            {"role": "system", "content": self._settings.system_prompt},
            {"role": "user", "content": message.content},
        ]
        async for _ in self._llm.stream_chat(
            self._settings.chat_model,
            prompt,
            max_tokens=self._settings.max_reply_tokens,
            state=state,
        ):
            await reply.progress(state.text)
        await reply.finish(state.text)


class EchoBot(discord.Client):
    """Sends the answer as a reply at once: no LLM, no database."""

    def __init__(self) -> None:
        super().__init__(intents=plain_intents(), guild_ready_timeout=0.1)

    async def on_message(self, message: discord.Message) -> None:
        if message.author.bot or self.user is None or self.user.id not in message.raw_mentions:
            return
        await message.channel.send(
            SHORT_ANSWER,
            reference=message,
            mention_author=False,
            allowed_mentions=discord.AllowedMentions.none(),
            suppress_embeds=True,
        )


async def run(scale: Scale) -> BenchResult:
    window = 3.0 if scale.quick else 5.0
    rounds = 2 if scale.quick else 3
    users = crowd(SESSIONS // len(CHANNELS))
    sessions = [(user, channel) for channel in CHANNELS for user in users]
    loads: dict[str, list[Load]] = {MNEMO: [], NO_MEMORY: [], ECHO: []}
    with TemporaryDirectory(prefix="mnemo-bench-") as tmp, discord_restored():
        path = Path(tmp) / "throughput.db"
        await prefill(path, PREFILL_ROWS, [measured_key(c, u) for u, c in sessions])
        async with fakes() as (fake, llm):
            point_at(fake)
            for _ in range(rounds):
                for kind, loads_of_kind in loads.items():
                    async with _bot(kind, fake, llm, path):
                        loads_of_kind.append(await _drive(fake, llm, sessions, window))
                    fake.forget()
                    llm.forget()
            statements = await _statements_per_answer(fake, llm, path, sessions, window)
            result = _result(loads, window, statements)
            if result.missed:
                result.profiles.append(await _profile(fake, llm, path, sessions, window))
    return result


@contextlib.asynccontextmanager
async def _bot(kind: str, fake: TimedDiscord, llm: TimedLLM, path: Path) -> AsyncIterator[None]:
    settings = mnemo_settings(llm, path, **LOAD)
    if kind == MNEMO:
        async with running_bot(settings, fake):
            yield
        return
    if kind == ECHO:
        async with started(EchoBot(), fake):
            yield
        return
    client = make_llm(settings)
    try:
        async with started(NoMemoryBot(client, settings), fake):
            yield
    finally:
        await client.close()


async def _drive(
    fake: TimedDiscord, llm: TimedLLM, sessions: list[tuple[FakeUser, int]], window: float
) -> Load:
    """Every session sends, waits for its answer, sends again; until the window closes."""
    texts = [turn.text for turn in script.conversation(60)]
    answers: list[float] = []
    lag: list[tuple[float, float]] = []
    stop = asyncio.Event()

    async def talk(offset: int, user: FakeUser, channel: int) -> None:
        sent = offset
        while not stop.is_set():
            payload = await fake.send_message(
                user, channel, texts[sent % len(texts)], mention_bot=True
            )
            answers.append(await fake.answered(int(payload["id"]), ANSWER_TIMEOUT))
            sent += 1

    async def tick() -> None:
        while not stop.is_set():
            before = time.monotonic()
            await asyncio.sleep(LAG_TICK)
            after = time.monotonic()
            lag.append((after, after - before - LAG_TICK))

    async def forget() -> None:  # the fakes' records of a long run are not needed
        while not stop.is_set():
            await asyncio.sleep(1.0)
            llm.forget()
            fake.requests.clear()

    helpers = [asyncio.create_task(tick()), asyncio.create_task(forget())]
    talkers = [
        asyncio.create_task(talk(n, user, channel)) for n, (user, channel) in enumerate(sessions)
    ]
    begin = time.monotonic() + WARMUP
    end = begin + window
    try:
        await asyncio.sleep(WARMUP)
        loop_cpu, process_cpu = time.thread_time(), time.process_time()
        await asyncio.sleep(window)
        loop_cpu, process_cpu = time.thread_time() - loop_cpu, time.process_time() - process_cpu
    finally:
        stop.set()
        # Every session finishes the message in flight; the first failure, if any, is raised
        # once all of them are done, so no task outlives the run.
        outcomes = await asyncio.gather(*talkers, *helpers, return_exceptions=True)
    for outcome in outcomes:
        if isinstance(outcome, BaseException):
            raise outcome
    return Load(
        answered=sum(begin <= at < end for at in answers),
        seconds=window,
        total=len(answers),
        lag=[late for at, late in lag if begin <= at < end],
        loop_cpu=loop_cpu,
        process_cpu=process_cpu,
    )


async def _statements_per_answer(
    fake: TimedDiscord,
    llm: TimedLLM,
    path: Path,
    sessions: list[tuple[FakeUser, int]],
    window: float,
) -> float:
    """One more Mnemo run, with SQLite's trace on from READY (start-up left out): the SQL
    statements per answered message, the background work's included. Apart from the
    measured rounds: the trace calls back into Python for every statement."""
    statements = 0
    last = ""

    def count(sql: str) -> None:
        # SQLite traces a statement again as each of its triggers starts (with the same
        # text), and a trigger's own statements as comments: neither is another trip.
        nonlocal statements, last
        if not sql.startswith("--") and sql != last:
            statements += 1
        last = sql

    async with running_bot(mnemo_settings(llm, path, **LOAD), fake) as bot:
        connection = bot.storage.db._conn  # type: ignore[attr-defined]
        await connection.set_trace_callback(count)
        load = await _drive(fake, llm, sessions, window)
        await connection.set_trace_callback(None)
    fake.forget()
    llm.forget()
    return statements / max(load.total, 1)


def _result(
    loads: dict[str, list[Load]], window: float, statements_per_answer: float
) -> BenchResult:
    def rate(kind: str) -> float:
        return median([load.rate for load in loads[kind]])

    def cpu(kind: str, which: str) -> float:
        return median([load.ms_per_answer(getattr(load, which)) for load in loads[kind]])

    def lag(kind: str) -> float:
        return median([load.lag_p99_ms for load in loads[kind]])

    figures = [
        Figure(
            "5a",
            f"messages answered per second, {SESSIONS} sessions at once, instant LLM",
            rate(MNEMO),
            "msg/s",
            RATE_GOAL,
            f"same traffic without memory (discord.py + openai SDK + StreamedReply):"
            f" {rate(NO_MEMORY):.0f} msg/s; discord.py echo bot, no LLM: {rate(ECHO):.0f} msg/s",
        ),
        Figure(
            "5b",
            f"event-loop lag p99 at that load ({LAG_TICK * 1000:.0f} ms sleeps)",
            lag(MNEMO),
            "ms",
            LAG_GOAL_MS,
            f"without memory: {lag(NO_MEMORY):.1f} ms; echo bot: {lag(ECHO):.1f} ms",
        ),
        Figure(
            "5c",
            "Mnemo's rate / the no-memory bot's rate, in the same rounds",
            median([m.rate / n.rate for m, n in zip(loads[MNEMO], loads[NO_MEMORY], strict=True)]),
            "x",
            SHARE_GOAL,
            "each round runs Mnemo, then the no-memory bot, on the same fakes: the median of"
            " the rounds' ratios",
        ),
        Figure(
            "5d",
            "CPU time of the event-loop thread per answered message",
            cpu(MNEMO, "loop_cpu"),
            "ms",
            None,
            f"without memory: {cpu(NO_MEMORY, 'loop_cpu'):.2f} ms; echo bot:"
            f" {cpu(ECHO, 'loop_cpu'):.2f} ms (the loopback servers and the simulated users"
            " run on that thread too)",
        ),
        Figure(
            "5e",
            "CPU time of the whole process per answered message (SQLite's thread included)",
            cpu(MNEMO, "process_cpu"),
            "ms",
            None,
            f"without memory: {cpu(NO_MEMORY, 'process_cpu'):.2f} ms",
        ),
        Figure(
            "5f",
            "SQL statements per answered message (Mnemo, background work included)",
            statements_per_answer,
            "",
            None,
            "counted by SQLite's trace in a run of its own after the rounds (start-up left"
            " out); each is one trip to aiosqlite's thread (a transaction's BEGIN and COMMIT"
            " count as statements too)",
        ),
    ]
    runs = len(loads[MNEMO])
    notes = [
        f"{runs} runs of each bot, alternately, on the same fakes; each run {WARMUP:.0f} s of"
        f" warm-up, then {window:.0f} s counted; medians over the runs. Mnemo per run (msg/s,"
        " lag p99 ms): "
        + ", ".join(f"{load.rate:.0f} / {load.lag_p99_ms:.1f}" for load in loads[MNEMO])
        + ".",
        "The bot, both loopback servers, the 100 simulated users and the lag probe share this"
        " process and its event loop: the rate is what one Python process does with all of"
        " it, and the echo bot's rate is the ceiling the loopback servers and discord.py leave.",
        f"Settings: MODEL_PARALLEL={SESSIONS},"
        " USER_MESSAGES_PER_MINUTE=0, the other defaults; each session starts with 50 stored"
        f" messages, in a database of {PREFILL_ROWS:,} more.",
    ]
    return BenchResult(figures, notes)


async def _profile(
    fake: TimedDiscord,
    llm: TimedLLM,
    path: Path,
    sessions: list[tuple[FakeUser, int]],
    window: float,
) -> str:
    """cProfile of one Mnemo run (bot start and stop included, so aiosqlite's thread too)."""
    loads: list[Load] = []

    async def work() -> None:
        async with _bot(MNEMO, fake, llm, path):
            loads.append(await _drive(fake, llm, sessions, window))

    profiled = await profile("Benchmark 5: one Mnemo run under cProfile", work)
    load = loads[0] if loads else Load(seconds=window)
    reading = (
        f"Under the profiler the run answered {load.answered} messages in its {window:.0f} s"
        f" window ({load.rate:.0f} msg/s) and {load.total} in all. Everything in this process"
        " is profiled: the bot, the fakes and the simulated users. Where the CPU time of one"
        " answered message goes (cumulative time includes callees; the profiler slows pure"
        " Python code several times, so compare shares, not milliseconds):\n\n"
        + hot_spots(profiled.main, load.total, "message")
        + "\n\nOwn time on the event-loop thread by package:\n\n"
        + by_package(profiled.main)
    )
    return profiled.markdown(reading)
