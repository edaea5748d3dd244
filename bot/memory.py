"""The memory engine: store a turn, build its prompt, answer, and schedule background work.

Takes plain ids and records, never `discord` objects, so it is tested without Discord. Messages
of one session are handled strictly in order; different sessions run concurrently.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from enum import Enum
from functools import partial

from bot.background import BackgroundJobs
from bot.config import Settings
from bot.facts import FactExtractor
from bot.limits import Limits, Refusal
from bot.llm import LLMClient, LLMError, StreamState, Usage
from bot.ordering import KeyedLocks
from bot.prompt import Prompt, PromptBuilder, PromptLimits
from bot.recall import LastRecall, RecallLog, recall_for
from bot.summarizer import Summarizer
from bot.tokens import Tokenizer
from storage import Storage
from storage.models import Session, SessionKey, StoredMessage
from storage.users import DeletedCounts

log = logging.getLogger(__name__)

ProgressCallback = Callable[[str], Awaitable[None]]
WINDOW_FETCH_BATCH = 64
RETENTION_INTERVAL_SECONDS = 24 * 3600
RECALL_PURGE_JOB = 0  # the search index's merge job: a key no session has (ids start at 1)


@dataclass(frozen=True, slots=True)
class IncomingMessage:
    """A user's message as the engine needs it: ids from the Discord event, cleaned text."""

    key: SessionKey
    discord_id: int
    content: str
    author_name: str


class Outcome(Enum):
    ANSWERED = "answered"
    DUPLICATE = "duplicate"  # already stored: a redelivered event, answered once already
    STOPPING = "stopping"  # the bot is shutting down and takes no new messages
    REFUSED = "refused"  # a limit: rate, daily budget, or the reply queue is full
    FAILED = "failed"


@dataclass(frozen=True, slots=True)
class SessionReport:
    """What `/memory show` tells a user about one conversation."""

    summary: str
    summary_updated_at: float | None
    stored_messages: int
    window_messages: int
    facts: int
    section_tokens: dict[str, int]
    budget: int


@dataclass(frozen=True, slots=True)
class ReplyResult:
    outcome: Outcome
    text: str = ""
    error: LLMError | None = None
    prompt: Prompt | None = None
    usage: Usage | None = None
    refusal: Refusal | None = None
    cut_at_limit: bool = False  # the model stopped at MAX_REPLY_TOKENS


class MemoryEngine:
    def __init__(
        self,
        storage: Storage,
        llm: LLMClient,
        tokenizer: Tokenizer,
        settings: Settings,
        *,
        clock: Callable[[], float] = time.time,
        job_retry_delays: Sequence[float] = (2.0, 10.0, 30.0),
    ) -> None:
        self.storage = storage
        self.llm = llm
        self._tokenizer = tokenizer
        self._settings = settings
        self._clock = clock
        self._order = KeyedLocks()
        self._in_flight: set[asyncio.Task[object]] = set()
        self._accepting = True
        self._retention: asyncio.Task[None] | None = None
        self.limits = Limits(settings, storage.usage, clock=clock)
        self._llm_slots = asyncio.Semaphore(settings.llm_concurrency)
        self.jobs = BackgroundJobs(settings.background_concurrency, retry_delays=job_retry_delays)
        self.summarizer = Summarizer(storage, llm, tokenizer, settings, self.limits, clock=clock)
        self.facts = FactExtractor(storage, llm, tokenizer, settings, self.limits, clock=clock)
        self._prompt_limits = PromptLimits(
            max_prompt_tokens=settings.max_prompt_tokens,
            max_message_tokens=settings.max_message_tokens,
            summary_max_tokens=settings.summary_max_tokens,
            facts_max_tokens=settings.facts_max_tokens,
            recall_max_tokens=settings.recall_max_tokens,
        )
        self.recall_log = RecallLog()

    async def start(self) -> None:
        """Re-schedule the background work that a stop or crash left undone."""
        lagging = await self.storage.sessions.lagging(self._settings.summary_trigger_tokens)
        for session_id, needs_summary, needs_facts in lagging:
            if needs_summary:
                self._schedule_summary(session_id)
            if needs_facts:
                self._schedule_facts(session_id)
        if lagging:
            log.info("Resumed background work for %d sessions", len(lagging))
        self._retention = asyncio.create_task(self._retention_loop(), name="mnemo-retention")

    async def drain(self, grace: float) -> None:
        """Take no new messages; give replies in flight `grace` seconds, then cancel them."""
        self._accepting = False
        if self._in_flight:
            _, late = await asyncio.wait(set(self._in_flight), timeout=grace)
            for task in late:
                task.cancel()
            await asyncio.gather(*late, return_exceptions=True)

    async def close(self, grace: float = 3.0) -> None:
        await self.drain(grace)
        if self._retention is not None:
            self._retention.cancel()
            await asyncio.gather(self._retention, return_exceptions=True)
        await self.jobs.close(grace)

    async def reply(
        self, incoming: IncomingMessage, on_progress: ProgressCallback | None = None
    ) -> ReplyResult:
        """Store the message, stream an answer (reporting the text so far), store the answer."""
        task = asyncio.current_task()
        if not self._accepting or task is None:
            return ReplyResult(Outcome.STOPPING)
        refusal = await self._admit(incoming.key)
        if refusal is not None:
            return ReplyResult(Outcome.REFUSED, refusal=refusal)
        self._in_flight.add(task)
        try:
            return await self._reply_in_order(incoming, on_progress)
        finally:
            self._in_flight.discard(task)

    async def _admit(self, key: SessionKey) -> Refusal | None:
        """Rate and budget limits, and a bounded queue of replies in flight."""
        settings = self._settings
        if len(self._in_flight) >= settings.llm_concurrency + settings.llm_queue_limit:
            return Refusal(
                "I'm busy with a lot of messages right now. Please try again in a minute.",
                self._clock() + 60,
            )
        return self.limits.check_rate(key.user_id) or await self.limits.check_budget(key)

    async def _reply_in_order(
        self, incoming: IncomingMessage, on_progress: ProgressCallback | None
    ) -> ReplyResult:
        async with self._order.hold((incoming.key.channel_id, incoming.key.user_id)):
            stored = await self.storage.messages.add(
                incoming.key,
                role="user",
                content=incoming.content,
                tokens=self._tokenizer.count(incoming.content),
                discord_id=incoming.discord_id,
                now=self._clock(),
            )
            if stored is None:
                return ReplyResult(Outcome.DUPLICATE)
            if on_progress is not None:
                await on_progress("")  # accepted: the caller may show "typing"
            session = await self.storage.sessions.get(stored.session_id)
            assert session is not None
            prompt = await self.build_prompt(session, stored, incoming.author_name)
            async with self._llm_slots:
                result = await self._answer(prompt, on_progress)
                if result.error is not None and result.error.kind == "context_length":
                    # The server's context is smaller than our budget: trim harder, once.
                    prompt = await self.build_prompt(
                        session, stored, incoming.author_name, budget_share=0.5
                    )
                    result = await self._answer(prompt, on_progress)
            self.recall_log.record(
                session.channel_id,
                session.user_id,
                LastRecall(prompt.recalled, prompt.section_tokens.get("recall", 0)),
            )
            answer_tokens = self._tokenizer.count(result.text)  # once: usage and storage
            await self.limits.charge(
                incoming.key, result.usage, lambda: prompt.tokens + answer_tokens
            )
            if result.outcome is Outcome.ANSWERED:
                await self.storage.messages.add(
                    incoming.key,
                    role="assistant",
                    content=result.text,
                    tokens=answer_tokens,
                    discord_id=None,
                    now=self._clock(),
                )
            self._after_turn(session)
            return result

    async def build_prompt(
        self,
        session: Session,
        new_message: StoredMessage,
        author_name: str,
        *,
        budget_share: float = 1.0,
    ) -> Prompt:
        """The prompt for `new_message`, from this session and this user's facts in this space.

        `budget_share` < 1 shrinks every section's cap, for a server whose context turned out
        smaller than MAX_PROMPT_TOKENS.
        """
        facts = await self.storage.facts.current(session.user_id, session.key.space_id)
        limits = self._prompt_limits
        if budget_share < 1.0:
            limits = PromptLimits(
                *(max(int(value * budget_share), 1) for value in dataclasses.astuple(limits))
            )
        builder = PromptBuilder(self._tokenizer, limits)
        builder.fixed_sections(
            system_prompt=self._system_prompt(author_name),
            facts=facts,
            summary=session.summary,
            new_message=new_message.content,
        )
        window = await self._window(session, before_id=new_message.id, budget=builder.window_budget)
        recalled = await recall_for(
            self.storage.recall, session, new_message, window, builder, self._clock()
        )
        return builder.finish(window, recalled)

    async def _window(
        self, session: Session, *, before_id: int, budget: int
    ) -> list[StoredMessage]:
        """Unsummarized messages, newest first, until they surely exceed `budget`."""
        found: list[StoredMessage] = []
        tokens = 0
        while tokens <= budget:
            batch = await self.storage.messages.newest(
                session.id,
                after_id=session.summarized_through,
                before_id=before_id,
                limit=WINDOW_FETCH_BATCH,
            )
            found.extend(batch)
            tokens += sum(min(m.tokens, self._settings.max_message_tokens) for m in batch)
            if len(batch) < WINDOW_FETCH_BATCH:
                break
            before_id = batch[-1].id
        return found

    # -- what users see and erase -------------------------------------------------------------

    async def describe(self, key: SessionKey, author_name: str) -> SessionReport:
        """The conversation's memory as the next prompt would use it."""
        facts = await self.storage.facts.current(key.user_id, key.space_id)
        session = await self.storage.sessions.find(key.channel_id, key.user_id)
        if session is None:
            return SessionReport(
                "", None, 0, 0, len(facts), {}, self._prompt_limits.max_prompt_tokens
            )
        builder = PromptBuilder(self._tokenizer, self._prompt_limits)
        builder.fixed_sections(
            system_prompt=self._system_prompt(author_name),
            facts=facts,
            summary=session.summary,
            new_message="",
        )
        window = await self._window(session, before_id=2**63 - 1, budget=builder.window_budget)
        prompt = builder.finish(window)
        stats = await self.storage.messages.stats(session)
        last = self.recall_log.get(key.channel_id, key.user_id)
        return SessionReport(
            session.summary,
            session.summary_updated_at,
            stats.messages,
            prompt.window_messages,
            len(facts),
            prompt.section_tokens | {"recall": last.tokens if last else 0},
            self._prompt_limits.max_prompt_tokens,
        )

    def last_recall(self, key: SessionKey) -> LastRecall | None:
        """What was recalled for the user's last answer in this conversation (`/memory why`)."""
        return self.recall_log.get(key.channel_id, key.user_id)

    async def clear_conversation(self, key: SessionKey) -> DeletedCounts:
        """Delete one conversation's messages and summary, and stop its background jobs."""
        async with self._order.hold((key.channel_id, key.user_id)):
            session = await self.storage.sessions.find(key.channel_id, key.user_id)
            if session is not None:
                await self._stop_jobs([session.id])
            self.recall_log.forget_conversation(key.channel_id, key.user_id)
            counts = await self.storage.users.clear_session(key.channel_id, key.user_id)
            await self.storage.recall.purge_deleted()
            return counts

    async def forget_user(self, user_id: int) -> DeletedCounts:
        """Delete everything of the user everywhere; nothing derived is written back after."""
        await self._stop_jobs(await self.storage.users.session_ids(user_id))
        self.recall_log.forget_user(user_id)
        counts = await self.storage.users.delete_user_data(user_id)
        await self.storage.recall.purge_deleted()
        return counts

    async def forget_member(self, user_id: int, guild_id: int) -> DeletedCounts:
        """Delete what the user said in one server (an admin's request), nothing elsewhere."""
        await self._stop_jobs(await self.storage.users.session_ids(user_id, guild_id=guild_id))
        self.recall_log.forget_user(user_id)
        counts = await self.storage.users.delete_member_in_guild(user_id, guild_id)
        await self.storage.recall.purge_deleted()
        return counts

    async def message_edited(self, discord_id: int, new_content: str) -> bool:
        """The user edited a stored message: store the new text and its token count."""
        edited = await self.storage.messages.edit(
            discord_id, new_content, self._tokenizer.count(new_content)
        )
        return edited is not None

    async def message_deleted(self, discord_id: int) -> bool:
        """The user deleted a stored message: delete it and what was derived from it alone."""
        deletion = await self.storage.messages.delete_by_discord_id(discord_id)
        if deletion is None:
            return False
        self.recall_log.forget_message(discord_id)
        # The row is out of the index now; its words leave the index's pages with the next
        # merge. Deletions in Discord come often and a merge rewrites the index, so they
        # share one merge in the background (coalesced), instead of one each on this path.
        self.jobs.schedule("recall-purge", RECALL_PURGE_JOB, self._purge_recall_index)
        if deletion.summary_reset:
            self._schedule_summary(deletion.session_id)  # rebuilt from what remains
        return True

    async def _purge_recall_index(self) -> None:
        await self.storage.recall.purge_deleted()

    async def purge_expired(self) -> int:
        """Retention: drop raw messages past RETENTION_DAYS that a summary already holds."""
        days = self._settings.retention_days
        if days <= 0:
            return 0
        deleted = await self.storage.messages.delete_expired(self._clock() - days * 86400)
        if deleted:
            self.recall_log.clear()
            await self.storage.recall.purge_deleted()
            log.info("Retention deleted %d summarized messages older than %d days", deleted, days)
        return deleted

    async def _retention_loop(self) -> None:
        while True:
            try:
                await self.purge_expired()
            except Exception:
                log.exception("Retention pass failed; trying again tomorrow")
            await asyncio.sleep(RETENTION_INTERVAL_SECONDS)

    async def _stop_jobs(self, session_ids: list[int]) -> None:
        # A job cancelled mid-call writes nothing; one that already finished its write is
        # covered by the deletion that follows. The deletion also defeats any later write,
        # since every job's write checks its session's watermark.
        tasks = [task for sid in session_ids for task in self.jobs.cancel_session(sid)]
        await asyncio.gather(*tasks, return_exceptions=True)

    def _system_prompt(self, author_name: str) -> str:
        name = " ".join(author_name.split())[:64] or "someone"
        return f"{self._settings.system_prompt}\n\nYou are talking with the Discord user {name}."

    async def _answer(self, prompt: Prompt, on_progress: ProgressCallback | None) -> ReplyResult:
        state = StreamState()
        try:
            async for _ in self.llm.stream_chat(
                self._settings.chat_model,
                prompt.messages,
                max_tokens=self._settings.max_reply_tokens,
                state=state,
            ):
                if on_progress is not None:
                    await on_progress(state.text)
        except LLMError as error:
            log.warning("Chat model call failed (%s): %s", error.kind, error)
            return ReplyResult(Outcome.FAILED, state.text, error, prompt, state.usage)
        if not state.text.strip():
            empty = LLMError("The model returned an empty answer. Please try again.", kind="empty")
            return ReplyResult(Outcome.FAILED, "", empty, prompt, state.usage)
        return ReplyResult(
            Outcome.ANSWERED,
            state.text,
            prompt=prompt,
            usage=state.usage,
            cut_at_limit=state.finish_reason == "length",
        )

    def _after_turn(self, session: Session) -> None:
        """Schedule, never await, the background work this turn may have made due."""
        self.jobs.schedule("check", session.id, partial(self._schedule_due_work, session.id))
        self.jobs.schedule_later(
            "facts-idle",
            session.id,
            self._settings.facts_idle_seconds,
            partial(self.facts.run, session.id),
        )

    async def _schedule_due_work(self, session_id: int) -> None:
        session = await self.storage.sessions.get(session_id)
        if session is None:
            return
        unsummarized_tokens, unread_user_messages = await self.storage.messages.pending(session)
        if unsummarized_tokens > self._settings.summary_trigger_tokens:
            self._schedule_summary(session_id)
        if unread_user_messages >= self._settings.facts_batch_messages:
            self._schedule_facts(session_id)

    def _schedule_summary(self, session_id: int) -> None:
        self.jobs.schedule("summary", session_id, partial(self.summarizer.run, session_id))

    def _schedule_facts(self, session_id: int) -> None:
        self.jobs.schedule("facts", session_id, partial(self.facts.run, session_id))
