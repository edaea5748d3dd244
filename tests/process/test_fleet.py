"""The bot as a fleet: two real processes, one shard each, on one PostgreSQL database.

Both processes run against one loopback Discord that shards like Discord (guild events go to
shard `(guild_id >> 22) % 2`, DMs to shard 0, at most one IDENTIFY per 5 s) and one loopback
LLM. Every Discord request carries its process's label (tests/fakes/run_bot.py) and every model
call its process's API key, so the test sees who did what.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from storage import Storage
from tests.fakes.discord import FakeDiscord, FakeUser
from tests.fakes.llm_server import FakeLLM, message_text
from tests.helpers.e2e import final_content, press
from tests.helpers.llm import is_summary_call, labelled_ids
from tests.helpers.processes import BotLauncher, BotProcess

pytestmark = [pytest.mark.both_backends, pytest.mark.postgres_only, pytest.mark.slow]

FACTS_BATCH = 3
SUMMARY_TRIGGER = 300
FLEET_SETTINGS = {
    "SHARD_COUNT": "2",
    "SUMMARY_TRIGGER_TOKENS": str(SUMMARY_TRIGGER),
    "SUMMARY_KEEP_RECENT_TOKENS": "60",
    "FACTS_BATCH_MESSAGES": str(FACTS_BATCH),
    "FACTS_IDLE_SECONDS": "3600",
    "JOB_LEASE_SECONDS": "2",
    # Room for background calls beside replies: none is interrupted and made again.
    "MODEL_PARALLEL": "8",
}
# A marker in every user message names its conversation: alpha is Alice in the first server
# (shard 1), bravo is Bob in the second server (shard 0), delta is Alice's DM (shard 0).
MARKER = re.compile(r"\b(alpha|bravo|delta)-(\d+)\b")


def background_call(body: dict[str, Any]) -> bool:
    return is_summary_call(body) or bool(body.get("response_format"))


def markers(text: str) -> list[str]:
    return [f"{m.group(1)}-{m.group(2)}" for m in MARKER.finditer(text)]


def caller_of(llm: FakeLLM, body: dict[str, Any]) -> str:
    """The label of the process that made this model call (from its API key)."""
    for request in reversed(llm.requests):
        if request.json == body:
            return str(request.headers.get("authorization", "")).removeprefix("Bearer key-")
    return "?"


@dataclass
class ModelLog:
    """What the loopback LLM was asked for background work, in order."""

    llm: FakeLLM
    # (conversation, markers folded, caller) and (conversation, message ids read, caller)
    folds: list[tuple[str, tuple[str, ...], str]] = field(default_factory=list)
    extractions: list[tuple[str, frozenset[int], str]] = field(default_factory=list)
    hold: dict[tuple[str, str], tuple[asyncio.Event, asyncio.Event]] = field(default_factory=dict)

    held_by: str = ""

    def hold_next_fold(
        self, conversation: str, caller: str = "any"
    ) -> tuple[asyncio.Event, asyncio.Event]:
        """Keep the next summary call of `conversation` (by `caller`, or by any process) open
        until the returned release is set; the second event is set once that call is held."""
        release, held = asyncio.Event(), asyncio.Event()
        self.hold[(conversation, caller)] = (release, held)
        return release, held

    def caller(self, body: dict[str, Any]) -> str:
        return caller_of(self.llm, body)

    async def summarize(self, body: dict[str, Any]) -> str:
        prompt = message_text(body["messages"][-1])
        new = markers(prompt.split("New messages")[1])
        conversation = new[0].split("-")[0] if new else "?"
        caller = self.caller(body)
        self.folds.append((conversation, tuple(new), caller))
        holding = self.hold.pop((conversation, caller), None) or self.hold.pop(
            (conversation, "any"), None
        )
        if holding is not None:
            release, held = holding
            self.held_by = caller
            held.set()
            await release.wait()
        previous = re.search(r"<summary>\n(.*)\n</summary>", prompt, re.S)
        before = previous.group(1) if previous and previous.group(1) != "(empty)" else ""
        return (before + " " + " ".join(f"folded-{m}" for m in new)).strip()

    def extract(self, body: dict[str, Any]) -> str:
        labelled = labelled_ids(body)
        found = [m for text in labelled for m in markers(text)]
        conversation = found[0].split("-")[0] if found else "?"
        self.extractions.append((conversation, frozenset(labelled.values()), self.caller(body)))
        facts = [
            {
                "attribute": "lucky_number",
                "value": text.split("lucky number is ")[1].split()[0],
                "sources": [mid],
            }
            for text, mid in labelled.items()
            if "lucky number is" in text
        ]
        return json.dumps({"facts": facts})


@pytest.fixture
async def sharded_discord() -> AsyncIterator[FakeDiscord]:
    server = FakeDiscord(shard_count=2, max_concurrency=1)
    await server.start()
    yield server
    await server.close()


@pytest.fixture
async def store(database_url: str) -> AsyncIterator[Storage]:
    """The test's own view of the fleet's database (its schema is made by the first bot)."""
    opened = await Storage.open(database_url)
    yield opened
    await opened.close()


class Fleet:
    """The two processes: `start(shard)` runs one with SHARD_IDS=shard."""

    def __init__(self, launcher: BotLauncher, discord: FakeDiscord, logs: Path) -> None:
        self._launcher = launcher
        self._discord = discord
        self._logs = logs
        self.processes: dict[int, BotProcess] = {}
        self.generation: Counter[int] = Counter()

    async def start(self, shard: int) -> BotProcess:
        self.generation[shard] += 1
        label = f"shard{shard}-gen{self.generation[shard]}"
        settings = {**FLEET_SETTINGS, "SHARD_IDS": str(shard), "OPENAI_API_KEY": f"key-{label}"}
        bot = await self._launcher.start(label, settings, log=self._logs / f"{label}.log")
        self.processes[shard] = bot
        return bot

    def log_of(self, bot: BotProcess) -> str:
        return (self._logs / f"{bot.label}.log").read_text(errors="replace")

    async def wait_live(self, shard: int, since: float, timeout: float = 60) -> None:  # noqa: ASYNC109
        """Wait until `shard` identified after `since` (monotonic) and its session is live."""
        d = self._discord
        await d.wait_for(
            lambda: (
                True
                if any(t > since and s == shard for t, s in d.identify_times) and d._live(shard)
                else None
            ),
            timeout,
            f"shard {shard} to log in",
        )


@pytest.fixture
async def fleet(
    sharded_discord: FakeDiscord, fake_llm: FakeLLM, database_url: str, tmp_path: Path
) -> AsyncIterator[Fleet]:
    launcher = BotLauncher(sharded_discord, fake_llm, database_url, tmp_path)
    running = Fleet(launcher, sharded_discord, tmp_path)
    try:
        yield running
    finally:
        await launcher.close()
        for bot in launcher.started:
            text = running.log_of(bot)
            assert "Traceback" not in text, f"{bot.label}:\n{text}"


def senders(d: FakeDiscord, channel_id: int) -> set[str]:
    """The labels of the processes that sent Discord requests about a channel."""
    labels = set()
    for request in d.requests:
        if request.path.startswith(f"/channels/{channel_id}/"):
            agent = request.headers.get("User-Agent", "")
            labels.add(agent.rsplit("mnemo-process/", 1)[-1] if "mnemo-process/" in agent else "")
    return labels


def who_answered(d: FakeDiscord, ids: Iterable[int]) -> dict[int, list[str]]:
    """For each message, the labels of the processes that posted a reply to it."""
    found: dict[int, list[str]] = {i: [] for i in ids}
    for request in d.requests:
        body = request.json if isinstance(request.json, dict) else {}
        reference = body.get("message_reference") or {}
        target = int(reference.get("message_id") or 0)
        if request.method == "POST" and target in found:
            agent = request.headers.get("User-Agent", "")
            found[target].append(agent.rsplit("mnemo-process/", 1)[-1])
    return found


def answers(d: FakeDiscord, channel_id: int) -> Counter[int]:
    """How many bot messages answer each user message in the channel."""
    return Counter(m.reply_to_id for m in d.bot_messages(channel_id) if m.reply_to_id is not None)


async def answered(
    d: FakeDiscord,
    channel_id: int,
    ids: list[int],
    timeout: float = 60,  # noqa: ASYNC109
) -> None:
    """Wait until every message of `ids` has an answer in the channel."""
    wanted = set(ids)
    await d.wait_for(
        lambda: True if wanted <= set(answers(d, channel_id)) else None,
        timeout,
        f"answers to {len(wanted)} messages in channel {channel_id}",
    )


async def wait_until(
    check: Callable[[], Awaitable[bool]],
    timeout: float,  # noqa: ASYNC109
    what: str,
) -> None:
    deadline = time.monotonic() + timeout
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(0.1)


async def stored_user_messages(store: Storage) -> set[int]:
    rows = await store.db.fetch_all("SELECT discord_id FROM messages WHERE role = 'user'")
    return {int(row[0]) for row in rows}


async def queued_user_messages(store: Storage) -> set[int]:
    """Messages received and waiting behind the same person's earlier one (not stored yet)."""
    rows = await store.db.fetch_all("SELECT discord_id FROM queued_messages")
    return {int(row[0]) for row in rows}


async def held_leases(store: Storage) -> list[tuple[str, str]]:
    rows = await store.db.fetch_all(
        "SELECT name, owner FROM leases WHERE name NOT LIKE 'once:%' AND expires_at >= ?",
        (time.time(),),
    )
    return [(str(row[0]), str(row[1])) for row in rows]


async def settled(store: Storage, fake_llm: FakeLLM) -> bool:
    """No background work due or running anywhere in the fleet."""
    if fake_llm.active or await held_leases(store):
        return False
    lagging = await store.sessions.lagging(SUMMARY_TRIGGER)
    if any(summary_due for _, summary_due, _ in lagging):
        return False
    rows = await store.db.fetch_all(
        "SELECT COUNT(*) FROM messages m JOIN sessions s ON m.session_id = s.id"
        " WHERE m.role = 'user' AND m.id > s.facts_through GROUP BY s.id"
    )
    return all(int(row[0]) < FACTS_BATCH for row in rows)


async def session_of(store: Storage, channel_id: int, user: FakeUser) -> tuple[int, int, int]:
    """(id, summarized_through, facts_through) of a conversation."""
    row = await store.db.fetch_one(
        "SELECT id, summarized_through, facts_through FROM sessions"
        " WHERE channel_id = ? AND user_id = ?",
        (channel_id, user.id),
    )
    assert row is not None
    return int(row[0]), int(row[1]), int(row[2])


def text(conversation: str, n: int) -> str:
    if n % 4 == 0:
        return f"{conversation}-{n} my lucky number is {conversation}{n}"
    return f"{conversation}-{n} tell me more about that"


@pytest.mark.timeout(240)
async def test_two_shard_processes_share_the_work_once(
    fleet: Fleet, sharded_discord: FakeDiscord, fake_llm: FakeLLM, store: Storage
) -> None:
    d = sharded_discord
    log = ModelLog(fake_llm)
    fake_llm.responder = lambda body: (
        log.summarize(body) if is_summary_call(body) else "noted " + "words " * 30
    )
    fake_llm.json_responder = log.extract
    # Background calls take a while, long enough for the other process's sweep (every
    # JOB_LEASE_SECONDS) to find the same work due while one process does it.
    fake_llm.latency_for = lambda body: 1.0 if background_call(body) else 0.0
    assert d.shard_of(d.GUILD_ID) == 1 and d.shard_of(d.GUILD2_ID) == 0
    channels = {
        "alpha": d.CHANNEL_ID,
        "bravo": d.GUILD2_CHANNEL_ID,
        "delta": d.dm_channel_id(d.alice),
    }
    owner = {"alpha": 1, "bravo": 0, "delta": 0}
    users = {"alpha": d.alice, "bravo": d.bob, "delta": d.alice}

    async def say(conversation: str, n: int) -> dict[str, Any]:
        channel = channels[conversation]
        is_dm = conversation == "delta"
        return await d.send_message(
            users[conversation], channel, text(conversation, n), mention_bot=not is_dm
        )

    # 1. Both processes start at once: the database paces their logins 5 s apart.
    started = time.monotonic()
    await asyncio.gather(fleet.start(0), fleet.start(1))
    await fleet.wait_live(0, started)
    await fleet.wait_live(1, started)
    assert d.pacing_violations == [], d.pacing_violations
    times = sorted(t for t, _ in d.identify_times)
    assert len(times) == 2 and times[1] - times[0] >= 5.0, d.identify_times

    # 2. Three conversations on two shards, each message answered once by its shard's process.
    sent: dict[str, list[int]] = {c: [] for c in channels}
    for n in range(12):
        for conversation in channels:
            sent[conversation].append(int((await say(conversation, n))["id"]))
        for conversation, ids in sent.items():
            await answered(d, channels[conversation], ids)
    for conversation, ids in sent.items():
        counted = answers(d, channels[conversation])
        assert all(counted[i] == 1 for i in ids), (conversation, counted)
        assert senders(d, channels[conversation]) == {f"shard{owner[conversation]}-gen1"}
    await wait_until(lambda: settled(store, fake_llm), 60, "background work to finish")
    for conversation in channels:
        assert any(c == conversation for c, _, _ in log.folds), f"no summary of {conversation}"
    assert log.extractions, "no extraction ran"
    check_work_done_once(log, await summaries(store), cut=Counter())
    conversation_of = {(await session_of(store, channels[c], users[c]))[0]: c for c in channels}

    # 3. kill -9 of shard 1's process mid-burst, while it holds a summary job's lease.
    first = fleet.processes[1]
    release, held = log.hold_next_fold("alpha", "shard1-gen1")
    burst: list[int] = []

    async def keep_talking() -> None:
        for n in range(100, 160):
            burst.append(int((await say("alpha", n))["id"]))
            await asyncio.sleep(0.05)

    fake_llm.stream_chunk_delay = 0.03  # replies take a while: a queue builds up
    talking = asyncio.create_task(keep_talking())
    await asyncio.wait_for(held.wait(), 60)
    await d.wait_for(lambda: True if len(burst) >= 12 else None, 30, "the burst")
    killed_at = time.monotonic()
    first.kill()
    await first.process.wait()
    talking.cancel()
    await asyncio.gather(talking, return_exceptions=True)
    stored_at_kill = await stored_user_messages(store)
    queued_at_kill = await queued_user_messages(store)
    dead = f":{first.pid}:"
    cut = Counter(name for name, holder in await held_leases(store) if dead in holder)
    alpha_session, alpha_through, _ = await session_of(store, d.CHANNEL_ID, d.alice)
    assert f"summary:{alpha_session}" in cut, cut
    release.set()  # the dead process never reads this answer
    fake_llm.stream_chunk_delay = 0.0
    acknowledged = answers(d, d.CHANNEL_ID)
    assert all(count == 1 for count in acknowledged.values()), acknowledged
    assert set(acknowledged) <= stored_at_kill, "a message was answered but not stored"
    received_at_kill = stored_at_kill | queued_at_kill
    unanswered_at_kill = (received_at_kill & set(burst)) - set(acknowledged)

    # Its jobs are finished by the other process (its lease expires in 2 s) or after restart.
    await fleet.start(1)
    await fleet.wait_live(1, killed_at)
    # What it received but had not answered (stored, or queued behind Alice's earlier
    # messages) is answered by its successor.
    await answered(d, d.CHANNEL_ID, sorted(unanswered_at_kill))
    await wait_until(lambda: settled(store, fake_llm), 60, "the dead process's jobs")
    _, through, _ = await session_of(store, d.CHANNEL_ID, d.alice)
    assert through > alpha_through, "the summary the dead process held was never made"
    assert stored_at_kill <= await stored_user_messages(store), "stored messages were lost"

    # After the restart it answers new messages, once each.
    after = [int((await say("alpha", n))["id"]) for n in range(200, 203)]
    await answered(d, d.CHANNEL_ID, after)
    counted = answers(d, d.CHANNEL_ID)
    assert all(counted[i] == 1 for i in after), counted
    assert senders(d, d.CHANNEL_ID) == {"shard1-gen1", "shard1-gen2"}
    await wait_until(lambda: settled(store, fake_llm), 60, "background work to finish")
    cut_work: Counter[tuple[str, str]] = Counter()
    for name, count in cut.items():
        kind, session = name.split(":")
        cut_work[(kind, conversation_of[int(session)])] += count
    check_work_done_once(log, await summaries(store), cut=cut_work)
    for conversation in channels:  # every extraction's messages are behind the watermark
        _, _, facts_through = await session_of(store, channels[conversation], users[conversation])
        read = [max(ids) for c, ids, _ in log.extractions if c == conversation and ids]
        assert read and max(read) <= facts_through, (conversation, facts_through, read)
    for conversation, channel in channels.items():
        twice = {i: n for i, n in answers(d, channel).items() if n > 1}
        assert not twice, (conversation, twice, who_answered(d, twice), unanswered_at_kill)
    facts = await store.db.fetch_all("SELECT user_id, value FROM facts")
    assert len(facts) == len(set(facts)), "a fact was stored twice"

    # 5. Erasure on one process defeats the other's running work for that user: Alice clears
    # her memory on the shard of the process that is not folding her summary.
    release, held = log.hold_next_fold("alpha")
    for n in range(300, 340):
        said = int((await say("alpha", n))["id"])
        await answered(d, d.CHANNEL_ID, [said])
        if held.is_set():
            break
    await asyncio.wait_for(held.wait(), 30)
    erasing = 0 if log.held_by.startswith("shard1") else 1
    # (Interactions reach only the process of their shard: a DM's is shard 0, the first
    # server's shard 1.)
    clear = await d.slash(d.alice, "memory", "clear", {"scope": "everywhere"}, dm=erasing == 0)
    assert d.shard_of(clear.guild_id) == erasing
    await clear.response()
    await press(d, d.alice, clear, "Erase")
    assert (await final_content(clear)).startswith("Done.")
    release.set()
    await wait_until(lambda: settled(store, fake_llm), 60, "the raced summary to end")
    left = await store.db.fetch_all("SELECT content FROM messages WHERE user_id = ?", (d.alice.id,))
    assert left == [], left
    rows = await store.db.fetch_all("SELECT summary FROM sessions")
    assert not any("alpha-" in str(row[0]) or "delta-" in str(row[0]) for row in rows)
    print(
        f"\nfolds {len(log.folds)}, extractions {len(log.extractions)}, burst sent"
        f" {len(burst)}, stored at kill {len(stored_at_kill & set(burst))}, queued at kill"
        f" {len(queued_at_kill & set(burst))},"
        f" answered at kill {len(set(acknowledged) & set(burst))}, received but unanswered"
        f" at kill {len(unanswered_at_kill)}, of which answered after the restart"
        f" {len(unanswered_at_kill & set(answers(d, d.CHANNEL_ID)))}; cut {dict(cut)};"
        f" erasure on shard {erasing} while {log.held_by} folded;"
        f" folds by {Counter(caller for _, _, caller in log.folds)}"
    )


async def summaries(store: Storage) -> dict[str, set[str]]:
    """Per conversation, the messages folded into its stored summary; no message twice."""
    folded: dict[str, set[str]] = {}
    for row in await store.db.fetch_all("SELECT summary FROM sessions"):
        found = re.findall(r"folded-((?:alpha|bravo|delta)-\d+)", str(row[0]))
        assert len(found) == len(set(found)), f"a fold landed twice: {row[0]}"
        if found:
            folded.setdefault(found[0].split("-")[0], set()).update(found)
    return folded


def check_work_done_once(
    log: ModelLog, folded: dict[str, set[str]], *, cut: Counter[tuple[str, str]]
) -> None:
    """Each summary and extraction call at the model was work no other call did, and landed;
    only a call cut short by a killed process may have been made again (`cut`)."""
    for conversation in {c for c, _, _ in log.folds}:
        calls = [m for c, m, _ in log.folds if c == conversation]
        again = len(calls) - len({m[0] for m in calls})  # the same watermark folded twice
        wasted = [m for m in calls if not set(m) <= folded.get(conversation, set())]
        assert again + len(wasted) <= cut[("summary", conversation)], (conversation, calls)
    for conversation in {c for c, _, _ in log.extractions}:
        seen: set[int] = set()
        repeated = 0
        for c, ids, _ in log.extractions:
            if c == conversation:
                repeated += bool(ids & seen)
                seen |= ids
        assert repeated <= cut[("facts", conversation)], (conversation, log.extractions)


@pytest.mark.timeout(120)
async def test_a_stored_message_is_answered_after_its_process_is_killed(
    fleet: Fleet, sharded_discord: FakeDiscord, fake_llm: FakeLLM, store: Storage
) -> None:
    d = sharded_discord
    release = asyncio.Event()

    async def respond(body: dict[str, Any]) -> str:
        last = message_text(body["messages"][-1])
        if "alpha-1 " in last and caller_of(fake_llm, body) == "shard1-gen1":
            await release.wait()  # the first process dies while it answers
        return "noted"

    fake_llm.responder = respond
    started = time.monotonic()
    await fleet.start(1)
    await fleet.wait_live(1, started)
    sent = await d.send_message(d.alice, d.CHANNEL_ID, text("alpha", 1), mention_bot=True)
    await wait_until(lambda: _has(store, int(sent["id"])), 30, "the message to be stored")
    await fake_llm.wait_for_chat_calls(1)
    killed_at = time.monotonic()
    first = fleet.processes[1]
    first.kill()
    await first.process.wait()
    release.set()
    await fleet.start(1)
    await fleet.wait_live(1, killed_at)
    await answered(d, d.CHANNEL_ID, [int(sent["id"])], timeout=30)
    # Answered once, by the new process, and nothing more: a message said after the restart
    # is answered by its own turn only.
    later = await d.send_message(d.alice, d.CHANNEL_ID, text("alpha", 2), mention_bot=True)
    await answered(d, d.CHANNEL_ID, [int(later["id"])], timeout=30)
    await wait_until(lambda: _no_reply_pending(store), 30, "every stored message answered")
    assert answers(d, d.CHANNEL_ID) == {int(sent["id"]): 1, int(later["id"]): 1}
    assert senders(d, d.CHANNEL_ID) == {"shard1-gen1", "shard1-gen2"}
    bodies = [m for m in d.bot_messages(d.CHANNEL_ID) if m.reply_to_id == int(sent["id"])]
    assert [m.content for m in bodies] == ["noted"]


async def _no_reply_pending(store: Storage) -> bool:
    row = await store.db.fetch_one("SELECT COUNT(*) FROM messages WHERE reply_pending = 1")
    return row is not None and int(row[0]) == 0


async def _has(store: Storage, discord_id: int) -> bool:
    return discord_id in await stored_user_messages(store)
