"""Benchmark 8: does the evidence of an old message reach the prompt?

Set-up: generated conversations (`bench.recall_conversations`, seeded): each 400 exchanges of
one user with the bot in one server channel (800 stored messages), all users in the same
server, stored through `storage.messages.add` with their times. The summarizer is simulated
the way it leaves a session: everything but the newest ~1,500 tokens is marked as folded into a
generic summary (which keeps none of the planted specifics: a 500-token summary of ~45,000
tokens of chat cannot keep them all, and crediting it with none is the conservative choice).

Then each question is stored as the user's next message and its prompt is built by the real
`MemoryEngine.build_prompt` at the default budgets, twice on the same database: once with
recall off (`RECALL_MAX_TOKENS=0`: window + summary, as before recall) and once with BM25
recall at the default cap. An evidence message counts as in the prompt when the window holds
it, or when a recalled excerpt of it holds the words the answer needs. A canned reply is stored
after each question, as a conversation would go on.

Reported per mode: the share of answerable questions with all their evidence in the prompt
(goal ≥ 80 % with recall), with any of it, per question kind; prompt tokens per question; the
recall section's tokens on questions with no answer; the recall query's latency.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from tempfile import TemporaryDirectory

from bench.core import BenchError, BenchResult, Figure, Goal, Scale, median, percentile
from bench.harness import bench_settings, bench_tokenizer
from bench.recall_conversations import Conversation, Question, generate
from bot.app import make_engine, make_llm
from bot.engine.engine import MemoryEngine
from bot.memory.prompt import Prompt
from bot.model.tokens import Tokenizer
from storage import Storage
from storage.models import SessionKey, StoredMessage
from storage.recall import RecallHit, RecallRepository

EVIDENCE_GOAL = Goal(80.0, at_most=False)
GUILD = 4242
UNSUMMARIZED_TOKENS = 1500  # between SUMMARY_KEEP_RECENT_TOKENS (600) and the trigger (2000)
CANNED_REPLY = "Let me look at what you told me before."
MODES = (("window + summary (recall off)", "0"), ("BM25 recall", ""))
SUMMARY = (
    "The user chats about everyday life: work meetings and reports, a Python project and code"
    " reviews, cooking new recipes, running, family news from their sister and brother, pets,"
    " plans for trips and the flat, and small errands. They like practical advice and short"
    " answers."
)


class TimedRecall(RecallRepository):
    """The real repository, timing each search (the one statement on the reply path)."""

    def __init__(self, storage: Storage) -> None:
        super().__init__(storage.db)
        self.timings: list[float] = []

    async def search(self, *args: object, **kwargs: object) -> list[RecallHit]:
        started = time.perf_counter()
        hits = await super().search(*args, **kwargs)  # type: ignore[arg-type]
        self.timings.append(time.perf_counter() - started)
        return hits


@dataclass(slots=True)
class Tally:
    all_found: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    any_found: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    asked: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    prompt_tokens: list[int] = field(default_factory=list)
    recall_tokens: list[int] = field(default_factory=list)
    no_answer_recall_tokens: list[int] = field(default_factory=list)
    over_budget: int = 0

    def share(self, counts: dict[str, int], kinds: Sequence[str] | None = None) -> float:
        kinds = kinds or [k for k in self.asked if k != "no-answer"]
        asked = sum(self.asked[k] for k in kinds)
        return 100.0 * sum(counts[k] for k in kinds) / asked if asked else 0.0


async def run(scale: Scale) -> BenchResult:
    tokenizer = await bench_tokenizer()
    conversations = [generate(seed) for seed in range(4 if scale.quick else 12)]
    with TemporaryDirectory(prefix="mnemo-recall-") as tmp:
        path = Path(tmp) / "recall.db"
        storage = await Storage.open(path)
        timed = TimedRecall(storage)
        storage.recall = timed
        tallies = {name: Tally() for name, _ in MODES}
        try:
            engines = [(name, _engine(storage, tokenizer, path, cap)) for name, cap in MODES]
            keys = [await _store(storage, tokenizer, c, i) for i, c in enumerate(conversations)]
            for conversation, (key, ids) in zip(conversations, keys, strict=True):
                await _ask(storage, tokenizer, engines, conversation, key, ids, tallies)
            for _, engine in engines:
                await engine.llm.close()
        finally:
            await storage.close()
    return _result(tallies, timed.timings, conversations, engines[0][1])


def _engine(storage: Storage, tokenizer: Tokenizer, path: Path, cap: str) -> MemoryEngine:
    overrides = {"RECALL_MAX_TOKENS": cap} if cap else {}
    settings = bench_settings("http://127.0.0.1:9/v1", path, **overrides)
    return make_engine(storage, make_llm(settings), tokenizer, settings)


async def _store(
    storage: Storage, tokenizer: Tokenizer, conversation: Conversation, index: int
) -> tuple[SessionKey, list[tuple[int, int]]]:
    """Store the conversation; returns its key and (user id, bot id) of every exchange."""
    key = SessionKey(GUILD, 70_000 + index, 90_000 + index)
    ids: list[tuple[int, int]] = []
    for number, ((user, bot), when) in enumerate(
        zip(conversation.exchanges, conversation.times, strict=True)
    ):
        said = await _add(storage, tokenizer, key, "user", user, when, 10**9 * (index + 1) + number)
        answer = await _add(storage, tokenizer, key, "assistant", bot, when + 20.0, None)
        ids.append((said.id, answer.id))
    await _simulate_summary(storage, key)
    return key, ids


async def _add(
    storage: Storage,
    tokenizer: Tokenizer,
    key: SessionKey,
    role: str,
    text: str,
    when: float,
    discord_id: int | None,
) -> StoredMessage:
    stored = await storage.messages.add(
        key,
        role=role,  # type: ignore[arg-type]
        content=text,
        tokens=tokenizer.count(text),
        discord_id=discord_id,
        now=when,
    )
    if stored is None:
        raise BenchError("a generated message was not stored")
    return stored


async def _simulate_summary(storage: Storage, key: SessionKey) -> None:
    session = await storage.sessions.find(key.channel_id, key.user_id)
    assert session is not None
    newest = await storage.messages.newest(session.id, after_id=0, limit=200)
    kept = 0
    for message in newest:  # newest first: keep ~UNSUMMARIZED_TOKENS word for word
        kept += message.tokens
        if kept > UNSUMMARIZED_TOKENS:
            through = message.id
            break
    else:
        raise BenchError("conversation too short to summarize")
    saved = await storage.sessions.save_summary(
        session.id,
        expected_through=0,
        new_through=through,
        summary=SUMMARY,
        tokens=60,
        now=time.time(),
    )
    if not saved:
        raise BenchError("the simulated summary was not saved")


async def _ask(
    storage: Storage,
    tokenizer: Tokenizer,
    engines: list[tuple[str, MemoryEngine]],
    conversation: Conversation,
    key: SessionKey,
    ids: list[tuple[int, int]],
    tallies: dict[str, Tally],
) -> None:
    when = conversation.times[-1] + 3600.0
    for number, question in enumerate(conversation.questions):
        when += 120.0
        asked = await _add(
            storage, tokenizer, key, "user", question.text, when, -(key.user_id * 100 + number)
        )
        session = await storage.sessions.get(asked.session_id)
        assert session is not None
        for name, engine in engines:
            prompt = await engine.build_prompt(session, asked, "Alice")
            window = await storage.messages.newest(
                session.id,
                after_id=session.summarized_through,
                before_id=asked.id,
                limit=max(prompt.window_messages, 1),
            )
            window_ids = {m.id for m in window[: prompt.window_messages]}
            _score(tallies[name], question, prompt, window_ids, ids, engine)
        await _add(storage, tokenizer, key, "assistant", CANNED_REPLY, when + 10.0, None)


def _score(
    tally: Tally,
    question: Question,
    prompt: Prompt,
    window_ids: set[int],
    ids: list[tuple[int, int]],
    engine: MemoryEngine,
) -> None:
    tally.prompt_tokens.append(prompt.tokens)
    recall_tokens = prompt.section_tokens.get("recall", 0)
    tally.recall_tokens.append(recall_tokens)
    if prompt.tokens > engine._prompt_limits.max_prompt_tokens:
        tally.over_budget += 1
    tally.asked[question.kind] += 1
    if question.kind == "no-answer":
        tally.no_answer_recall_tokens.append(recall_tokens)
        return
    recalled = {item.message_id: item.text for item in prompt.recalled}
    found = []
    for evidence in question.evidence:
        user_id, bot_id = ids[evidence.exchange]
        message_id = user_id if evidence.role == "user" else bot_id
        in_window = message_id in window_ids
        in_recall = evidence.key in recalled.get(message_id, "")
        found.append(in_window or in_recall)
    tally.all_found[question.kind] += all(found)
    tally.any_found[question.kind] += any(found)


def _result(
    tallies: dict[str, Tally],
    timings: list[float],
    conversations: list[Conversation],
    engine: MemoryEngine,
) -> BenchResult:
    off, recall = (tallies[name] for name, _ in MODES)
    budget = engine._prompt_limits.max_prompt_tokens
    cap = _engine_cap()
    figures = [
        Figure(
            "8a",
            f"answerable questions with all their evidence in the prompt, BM25 recall"
            f" (RECALL_MAX_TOKENS={cap})",
            recall.share(recall.all_found),
            "%",
            EVIDENCE_GOAL,
            f"window + summary only: {off.share(off.all_found):.1f} %",
        ),
        Figure(
            "8b",
            "answerable questions with any of their evidence in the prompt, BM25 recall",
            recall.share(recall.any_found),
            "%",
            None,
            f"window + summary only: {off.share(off.any_found):.1f} %",
        ),
        Figure(
            "8c",
            "prompt tokens per question (mean), BM25 recall",
            sum(recall.prompt_tokens) / len(recall.prompt_tokens),
            "tokens",
            Goal(float(budget)),
            f"window + summary only: {sum(off.prompt_tokens) / len(off.prompt_tokens):,.0f};"
            f" largest with recall {max(recall.prompt_tokens):,} of {budget:,};"
            f" over budget: {recall.over_budget + off.over_budget}",
        ),
        Figure(
            "8d",
            "recall query latency p50 (storage.recall.search, 9,600+ messages)",
            percentile(timings, 0.5) * 1000,
            "ms",
            None,
            f"p99 {percentile(timings, 0.99) * 1000:.2f} ms over {len(timings)} queries",
        ),
    ]
    kinds = ("single-hop", "multi-hop", "temporal")
    notes = [
        f"{len(conversations)} conversations × {len(conversations[0].exchanges)} exchanges"
        f" ({2 * len(conversations[0].exchanges)} messages each),"
        f" {sum(len(c.questions) for c in conversations)} questions"
        f" ({sum(recall.asked[k] for k in kinds)} answerable,"
        f" {recall.asked['no-answer']} with no answer); all evidence outside the window.",
        "All evidence in the prompt, by kind (recall / window + summary): "
        + "; ".join(
            f"{k} {recall.share(recall.all_found, [k]):.0f} %"
            f" / {off.share(off.all_found, [k]):.0f} % (n={recall.asked[k]})"
            for k in kinds
        ),
        "Recall section tokens: mean"
        f" {sum(recall.recall_tokens) / len(recall.recall_tokens):.0f} per question; on"
        " questions with no answer, mean"
        f" {sum(recall.no_answer_recall_tokens) / max(len(recall.no_answer_recall_tokens), 1):.0f}"
        " (recall quotes its best matches even when none holds an answer: the model is told"
        " they are past messages, and `/memory why` shows them).",
        "Median recall latency over the run: "
        f"{median([t * 1000 for t in timings]):.2f} ms (the database here is small; benchmark 6"
        " measures the same query at 1 M messages).",
    ]
    return BenchResult(figures, notes)


def _engine_cap() -> int:
    settings = bench_settings("http://127.0.0.1:9/v1", Path("unused.db"))
    return settings.recall_max_tokens
