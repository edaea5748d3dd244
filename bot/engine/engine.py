"""The memory engine: store a turn, build its prompt, answer, and schedule background work.

Takes plain ids and records, never `discord` objects, so it is tested without Discord. Messages
of one session are handled strictly in order; different sessions run concurrently.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import Callable, Sequence
from typing import Any

from bot.config import Settings
from bot.engine.changes import Changes
from bot.engine.pending import UnstoredChanges
from bot.engine.records import (
    DEFAULT_VIEW,
    THINKING,
    DeletedMessage,
    DeliverCallback,
    IncomingMessage,
    Outcome,
    ProgressCallback,
    ReplyResult,
    SessionReport,
    Status,
)
from bot.engine.resume import ResumeLedger
from bot.engine.turns import Hand, TurnsInHand
from bot.memory.context import ContextBuilder
from bot.memory.facts import FactExtractor
from bot.memory.learner import LearnerTools
from bot.memory.learning import LEARNERS, Learning
from bot.memory.prompt import Prompt, PromptLimits
from bot.memory.recall import LastRecall, RecallLog
from bot.memory.summary import Summarizer
from bot.model.llm import LLMClient, LLMError, StreamState, Usage
from bot.model.scheduler import Overdue, Ticket
from bot.model.tokens import Tokenizer
from bot.policy.access import ChannelView
from bot.policy.controls import Controls
from bot.policy.limits import Cooldown, Limits, Refusal
from bot.runtime.background import BackgroundJobs
from bot.runtime.fleet import Fleet
from storage import Storage
from storage.erasures import ErasedMeanwhile
from storage.errors import StorageError
from storage.models import (
    Fact,
    FactSource,
    QueuedMessage,
    Session,
    SessionKey,
    StoredMessage,
)
from storage.users import DeletedCounts, GuildStats

# Callers import the records from here, where the engine's interface has always been.
__all__ = [
    "THINKING",
    "DeletedMessage",
    "DeliverCallback",
    "IncomingMessage",
    "MemoryEngine",
    "Outcome",
    "ProgressCallback",
    "ReplyResult",
    "SessionReport",
    "Status",
]

log = logging.getLogger(__name__)

UNSTORED_ID = 2**63 - 1  # the id a paused user's message would have: after every stored one


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
        self.ledger = ResumeLedger(storage, clock=clock)
        # A message is admitted only if it can be answered within the reply deadline, and
        # its answer takes up to another: changes are remembered a little longer than that.
        self.turns = TurnsInHand(unstored_ttl=2 * settings.reply_deadline_seconds + 60)
        self.limits = Limits(settings, storage.usage, storage.fleet, clock=clock)
        self.erasure_cooldown = Cooldown(settings.erasure_cooldown_seconds)
        self.controls = Controls(storage, settings, tokenizer, clock=clock)
        llm.set_parallel(settings.model_parallel)
        self._llm_slots = llm.scheduler  # every model call: replies first, background after
        self.fleet = Fleet(storage.fleet, lease_seconds=settings.job_lease_seconds, clock=clock)
        self.jobs = BackgroundJobs(
            settings.background_concurrency, retry_delays=job_retry_delays, leases=self.fleet
        )
        self.recall_log = RecallLog()
        tools = LearnerTools(storage, llm, tokenizer, settings, self.limits, clock)
        learners = [make(tools) for make in LEARNERS]
        self.context = ContextBuilder(
            storage,
            tokenizer,
            settings,
            self.controls,
            learners,
            recall_log=self.recall_log,
            clock=clock,
        )
        self.learning = Learning(
            storage,
            settings,
            learners,
            jobs=self.jobs,
            fleet=self.fleet,
            controls=self.controls,
            recall_log=self.recall_log,
            clock=clock,
        )
        self.changes = Changes(
            storage,
            tokenizer,
            turns=self.turns,
            learning=self.learning,
            controls=self.controls,
            limits=self.limits,
            recall_log=self.recall_log,
            erasure_cooldown=self.erasure_cooldown,
            clock=clock,
        )

    async def start(self) -> None:
        """Re-schedule the background work that a stop or crash left undone."""
        self.ledger.started()
        await self.learning.start()

    async def _schedule_lagging(self) -> int:
        """Schedule every session's lagging background work (tests call it)."""
        return await self.learning.schedule_lagging()

    @property
    def summarizer(self) -> Summarizer:
        return self.learning.learner(Summarizer)

    @property
    def facts(self) -> FactExtractor:
        return self.learning.learner(FactExtractor)

    async def drain(self, grace: float) -> None:
        """Take no new messages; give replies in flight `grace` seconds, then cancel them."""
        await self.turns.drain(grace)

    @property
    def _in_flight(self) -> set[asyncio.Task[object]]:
        """The replies being handled (tests wait for none)."""
        return self.turns.in_flight

    @property
    def _unstored(self) -> UnstoredChanges:
        """Edits and deletions of messages not stored yet (tests wait for them)."""
        return self.turns.unstored

    async def close(self, grace: float = 3.0) -> None:
        await self.drain(grace)
        await self.learning.close(grace)

    async def reply(
        self,
        incoming: IncomingMessage,
        on_progress: ProgressCallback | None = None,
        deliver: DeliverCallback | None = None,
        *,
        stored: StoredMessage | None = None,
    ) -> ReplyResult:
        """Store the message, stream an answer (reporting the text so far), deliver it through
        `deliver` and store it once delivered. With `stored`: the message was stored before
        (by a process that died before answering it), so it is answered as it was stored.

        Every write of the turn is fenced by the erasure fence read now, as the message
        arrives: an erasure confirmed while it waits or is answered leaves nothing of it.
        """
        task = asyncio.current_task()
        if not self.turns.accepting or task is None:
            return ReplyResult(Outcome.STOPPING)
        with self.turns.take(incoming.key, incoming.discord_id) as hand:
            return await self._take_turn(
                hand, task, incoming, hand.silenced(on_progress), deliver, stored
            )

    async def _take_turn(
        self,
        hand: Hand,
        task: asyncio.Task[object],
        incoming: IncomingMessage,
        on_progress: ProgressCallback | None,
        deliver: DeliverCallback | None,
        stored: StoredMessage | None,
    ) -> ReplyResult:
        """Admit the turn, wait for its place in its conversation, and answer it."""
        # A message left in the queue by a stop was admitted when it first arrived; one
        # stored before a stop was also stored (so not paused).
        readmitted = self.ledger.readmitted(incoming.discord_id)
        fence, refusal, paused = await self._arrival_checks(
            incoming.key, admit=stored is None and not readmitted, pause=stored is None
        )
        if refusal is not None:
            return ReplyResult(Outcome.REFUSED, refusal=refusal)
        with self.turns.flying(task):
            ticket = self._llm_slots.enter(incoming.key.user_id)
            try:
                if paused:
                    await hand.wait_turn()
                    return await self._reply_unstored(incoming, on_progress, deliver, ticket)
                if stored is None and not hand.first_in_line:
                    await self.ledger.note_queued(incoming.key, incoming.discord_id, fence)
                try:
                    await hand.wait_turn()
                    return await self._reply_in_order(
                        incoming, fence, on_progress, deliver, ticket, stored
                    )
                except asyncio.CancelledError:
                    # Stopped before it was stored: the next start answers it.
                    self.ledger.stopped(incoming.discord_id)
                    raise
                finally:
                    await self.ledger.unqueue(incoming.discord_id)  # refused, dropped, or failed
            finally:
                self._llm_slots.leave(ticket)

    async def left_in_queue(self) -> list[QueuedMessage]:
        """Messages that were waiting for their turn when their process stopped, recent
        enough to answer now, in arrival order (see `ResumeLedger.left_in_queue`)."""
        return await self.ledger.left_in_queue()

    @property
    def accepting(self) -> bool:
        """False once the engine is stopping: messages are no longer answered."""
        return self.turns.accepting

    async def forget_queued(self, discord_id: int) -> None:
        """A message left in the queue is dealt with (answered again, or not to be)."""
        await self.ledger.forget_queued(discord_id)

    async def awaiting_reply(self) -> list[StoredMessage]:
        """Messages stored but never answered (their process died), recent enough to answer
        now, oldest first."""
        return await self.ledger.awaiting_reply()

    async def settle(self, stored: StoredMessage) -> None:
        """A stored message needs no answer after all (it was answered on Discord)."""
        await self.ledger.settle(stored)

    async def knows(self, discord_id: int) -> bool:
        """Whether a message is stored or waiting for its turn: only then is an edit of it
        worth reading (and its attachments worth downloading)."""
        return self.turns.waiting(discord_id) or await self.storage.messages.exists(discord_id)

    async def _arrival_checks(
        self, key: SessionKey, *, admit: bool, pause: bool
    ) -> tuple[int, Refusal | None, bool]:
        """(the erasure fence, a refusal, whether the user paused memory) as the message
        arrives; admission and the pause only when asked. Independent reads, made at once:
        on PostgreSQL they run side by side on pooled connections, instead of one round trip
        after the other."""
        return await asyncio.gather(
            self.storage.erasures.fence(key),
            self._admit(key) if admit else _none(),
            self.controls.is_paused(key.user_id) if pause else _false(),
        )

    async def _admit(self, key: SessionKey) -> Refusal | None:
        """Rate and budget limits, and a queue as long as can be answered within the deadline.

        The expected wait comes from recent reply latencies and the server's parallelism, with
        users served in turn; only a message that would wait past the reply deadline is refused.
        """
        wait = self._llm_slots.expected_wait(key.user_id)
        if wait > self._settings.reply_deadline_seconds:
            return self._busy(wait)
        rate, budget = await asyncio.gather(
            self.limits.check_rate(key.user_id), self.limits.check_budget(key)
        )
        return rate or budget

    def _busy(self, wait: float) -> Refusal:
        return Refusal(
            "I'm busy with a lot of messages right now. Please try again in a minute.",
            self._clock() + min(max(wait, 30.0), 300.0),
        )

    async def _reply_in_order(
        self,
        incoming: IncomingMessage,
        fence: int,
        on_progress: ProgressCallback | None,
        deliver: DeliverCallback | None,
        ticket: Ticket,
        stored_before: StoredMessage | None = None,
    ) -> ReplyResult:
        """The turn itself; the caller waited for this conversation's earlier turns."""
        if ticket.overdue:  # queued behind this user's earlier messages for too long
            return ReplyResult(Outcome.REFUSED, refusal=self._busy(0.0))
        stored = stored_before or await self._store_incoming(incoming, fence)
        if isinstance(stored, Outcome):
            return ReplyResult(stored)
        result = await self._answer_stored(incoming, stored, fence, on_progress, deliver, ticket)
        unanswered = result.outcome is not Outcome.ANSWERED or (
            deliver is not None and not result.delivered
        )
        if unanswered and result.outcome is not Outcome.ERASED:
            # No answer stored (it failed, or Discord refused it): the user saw why, so the
            # message is not answered again after a restart.
            await self.storage.messages.settle(stored.id)
        return result

    async def _answer_stored(
        self,
        incoming: IncomingMessage,
        stored: StoredMessage,
        fence: int,
        on_progress: ProgressCallback | None,
        deliver: DeliverCallback | None,
        ticket: Ticket,
    ) -> ReplyResult:
        """Answer a stored message: prompt, model, delivery, and the answer stored."""
        if on_progress is not None:
            await on_progress("")  # accepted: the caller may show "typing"
        session = await self.storage.sessions.get(stored.session_id)
        assert session is not None
        view = incoming.view
        prompt = await self.build_prompt(session, stored, incoming.author_name, view=view)
        try:
            async with self._llm_slots.reply(ticket):
                result = await self._answer(prompt, on_progress, view)
                if result.error is not None and result.error.kind == "context_length":
                    # The server's context is smaller than our budget: trim harder, once.
                    prompt = await self.build_prompt(
                        session, stored, incoming.author_name, budget_share=0.5, view=view
                    )
                    result = await self._answer(prompt, on_progress, view)
        except Overdue:
            # The queue grew slower than estimated at admission: say so now, not late.
            self.learning.after_turn(session)
            return ReplyResult(Outcome.REFUSED, refusal=self._busy(0.0))
        self.recall_log.record(
            session.channel_id,
            session.user_id,
            LastRecall(prompt.recalled, prompt.section_tokens.get("recall", 0)),
        )
        answer_tokens = self._tokenizer.count(result.text)  # once: usage and storage
        try:
            if result.outcome is Outcome.ANSWERED:
                if await self.storage.erasures.fence(incoming.key) != fence:
                    # Erased while it was generated: the answer drew on erased memory.
                    return ReplyResult(Outcome.ERASED, prompt=prompt, usage=result.usage)
                result = await self._deliver_and_store(
                    incoming, stored, result, answer_tokens, fence, deliver
                )
        finally:
            # Charged after the answer is shown (accounting is not on the way to the user),
            # and whatever happened since the model answered: its tokens were spent.
            await self._charge(incoming.key, result.usage, prompt.tokens + answer_tokens)
        if view.memory:
            self.learning.after_turn(session)
        else:
            await self.learning.keep_only_window(session)
        return result

    async def _charge(self, key: SessionKey, usage: Usage | None, estimate: int) -> None:
        """Count a model call's tokens against the budgets; a database error is logged (the
        answer was already shown, or the error already told)."""
        try:
            await self.limits.charge(key, usage, lambda: estimate)
        except StorageError as error:
            log.warning("Could not count the tokens of a reply to user %s: %s", key.user_id, error)

    async def _store_incoming(
        self, incoming: IncomingMessage, fence: int
    ) -> StoredMessage | Outcome:
        """Store the user's message as it is now (edited or deleted while it waited)."""
        change = self.turns.unstored.take(incoming.discord_id)
        if change is not None and change.deleted:
            return Outcome.DELETED
        content = change.content if change is not None and change.content else incoming.content
        try:
            stored = await self.storage.messages.add(
                incoming.key,
                role="user",
                content=content,
                tokens=self._tokenizer.count(content),
                discord_id=incoming.discord_id,
                now=self._clock(),
                fence=fence,
            )
        except ErasedMeanwhile:
            return Outcome.ERASED
        self.turns.stored(incoming.discord_id)
        await self.ledger.unqueue(incoming.discord_id)  # stored (or known): no longer waiting
        if stored is None:
            return Outcome.DUPLICATE
        # A change that arrived while the row was being written (no await since).
        late = self.turns.unstored.take(incoming.discord_id)
        if late is not None and late.deleted:
            await self.message_deleted(incoming.discord_id)
            return Outcome.DELETED
        if late is not None and late.content:
            await self.message_edited(
                incoming.discord_id, late.content, user_id=incoming.key.user_id
            )
            [stored] = await self.storage.messages.by_ids([stored.id])
        return stored

    async def _deliver_and_store(
        self,
        incoming: IncomingMessage,
        stored: StoredMessage,
        result: ReplyResult,
        answer_tokens: int,
        fence: int,
        deliver: DeliverCallback | None,
    ) -> ReplyResult:
        """Show the answer, then store it: an answer the user never saw is not memory. It is
        stored as the answer to `stored`, and goes when that message is deleted."""
        shown_as: Sequence[int] = ()
        if self.turns.deleted(incoming.discord_id):
            # Deleted while it was answered: the answer might repeat it. Not shown, not kept.
            return ReplyResult(Outcome.DELETED, usage=result.usage)
        if deliver is not None:
            delivered = await deliver(result)
            if not delivered:
                log.info("Answer to message %s was not delivered; not stored", incoming.discord_id)
                return result
            if not isinstance(delivered, bool):
                shown_as = delivered
            result = dataclasses.replace(result, delivered=True)
        try:
            answer = await self.storage.messages.add(
                incoming.key,
                role="assistant",
                content=result.text,
                tokens=answer_tokens,
                discord_id=None,
                now=self._clock(),
                fence=fence,
                reply_to=stored.id,
                shown_as=shown_as,
            )
        except ErasedMeanwhile:
            log.info("Memory of user %s erased as an answer was delivered", incoming.key.user_id)
            return result
        if self.turns.deleted(incoming.discord_id):
            # Deleted while the answer was shown: withdrawn, here and (by the caller) there.
            if answer is not None:
                await self.storage.messages.delete_answer(answer.id)
            return ReplyResult(Outcome.DELETED, usage=result.usage, delivered=result.delivered)
        return result

    async def _reply_unstored(
        self,
        incoming: IncomingMessage,
        on_progress: ProgressCallback | None,
        deliver: DeliverCallback | None,
        ticket: Ticket,
    ) -> ReplyResult:
        """A paused user: answer from what is already stored, store and learn nothing.

        With no stored row to recognise a redelivered event by, recent ids are remembered in
        memory only (ids, no text), so a replay after a gateway resume is answered once."""
        key = incoming.key
        if not self.turns.first_unstored(incoming.discord_id):
            return ReplyResult(Outcome.DUPLICATE)
        session = await self.storage.sessions.find(key.channel_id, key.user_id)
        content = incoming.content
        transient = StoredMessage(
            UNSTORED_ID,
            session.id if session else 0,
            incoming.discord_id,
            key.guild_id,
            key.channel_id,
            key.user_id,
            "user",
            content,
            self._tokenizer.count(content),
            self._clock(),
        )
        if on_progress is not None:
            await on_progress("")
        view = incoming.view
        prompt = await self.build_prompt(session, transient, incoming.author_name, view=view)
        try:
            async with self._llm_slots.reply(ticket):
                result = await self._answer(prompt, on_progress, view)
        except Overdue:
            return ReplyResult(Outcome.REFUSED, refusal=self._busy(0.0))
        await self.limits.charge(
            key,
            result.usage,
            lambda: prompt.tokens + self._tokenizer.count(result.text),
            private=True,
        )
        result = dataclasses.replace(result, paused=True)
        if result.outcome is Outcome.ANSWERED and deliver is not None:
            result = dataclasses.replace(result, delivered=bool(await deliver(result)))
        return result

    async def build_prompt(
        self,
        session: Session | None,
        new_message: StoredMessage,
        author_name: str,
        *,
        budget_share: float = 1.0,
        view: ChannelView = DEFAULT_VIEW,
    ) -> Prompt:
        """The prompt for `new_message` (`ContextBuilder.build`)."""
        return await self.context.build(
            session, new_message, author_name, budget_share=budget_share, view=view
        )

    @property
    def _prompt_limits(self) -> PromptLimits:
        """The prompt's budget and caps (the bench reads them)."""
        return self.context.limits

    # -- what users see and erase -------------------------------------------------------------

    async def describe(self, key: SessionKey, author_name: str) -> SessionReport:
        """The conversation's memory as the next prompt would use it."""
        return await self.context.describe(key, author_name)

    # Thin reads and one deletion for the commands: cogs reach data only through the engine.

    async def current_facts(self, user_id: int, space_id: int) -> list[Fact]:
        return await self.storage.facts.current(user_id, space_id)

    async def fact_sources(self, fact_ids: Sequence[int]) -> dict[int, list[FactSource]]:
        return await self.storage.facts.sources(fact_ids)

    async def stored_message_ids(self, message_ids: Sequence[int]) -> set[int]:
        """Which of these message ids are still stored."""
        return {message.id for message in await self.storage.messages.by_ids(message_ids)}

    def erasure_wait(self, user_id: int) -> float:
        """Seconds before the user may erase again (`/memory clear`, `/facts forget`): 0 now.
        Each erasure rewrites the search index, so they are one per ERASURE_COOLDOWN_SECONDS."""
        return self.changes.erasure_wait(user_id)

    async def forget_fact(self, user_id: int, space_id: int, fact_id: int) -> int:
        """Delete one of the user's facts with its history; 0 when it is not theirs."""
        return await self.changes.forget_fact(user_id, space_id, fact_id)

    async def export_user(self, user_id: int) -> dict[str, Any]:
        return await self.storage.users.export(user_id)

    async def guild_stats(self, guild_id: int) -> GuildStats:
        return await self.storage.users.guild_stats(guild_id)

    async def last_recall(self, key: SessionKey) -> LastRecall | None:
        """What was recalled for the user's last answer in this conversation (`/memory why`),
        as far as it is still stored.

        The log is this process's: an erasure or deletion handled by another process of the
        fleet does not reach it, so each excerpt is checked against storage before it is
        shown (one read on the primary key), and those gone are dropped from the log too.
        """
        last = self.recall_log.get(key.channel_id, key.user_id)
        if last is None or not last.excerpts:
            return last
        still = await self.stored_message_ids([item.message_id for item in last.excerpts])
        if len(still) == len(last.excerpts):
            return last
        kept = tuple(item for item in last.excerpts if item.message_id in still)
        if not kept:  # as after an erasure here
            self.recall_log.forget_conversation(key.channel_id, key.user_id)
            return None
        trimmed = LastRecall(kept, last.tokens)
        self.recall_log.record(key.channel_id, key.user_id, trimmed)
        return trimmed

    async def clear_conversation(self, key: SessionKey) -> DeletedCounts:
        """Delete one conversation's messages and summary, and stop its background jobs."""
        return await self.changes.clear_conversation(key)

    async def forget_user(self, user_id: int) -> DeletedCounts:
        """Delete everything of the user everywhere; nothing derived is written back after."""
        return await self.changes.forget_user(user_id)

    async def forget_member(self, user_id: int, guild_id: int) -> DeletedCounts:
        """Delete what the user said in one server (an admin's request), nothing elsewhere."""
        return await self.changes.forget_member(user_id, guild_id)

    async def message_edited(
        self,
        discord_id: int,
        new_content: str,
        *,
        user_id: int | None = None,
        admit: bool = False,
    ) -> bool:
        """The user edited a message: store the new text and learn again from it
        (`Changes.message_edited`); False when it was not taken."""
        return await self.changes.message_edited(
            discord_id, new_content, user_id=user_id, admit=admit
        )

    async def message_deleted(self, discord_id: int) -> DeletedMessage | None:
        """The user deleted a message: delete it, the answers to it, and what was derived
        from it alone (`Changes.message_deleted`); where the answers were shown, if stored."""
        return await self.changes.message_deleted(discord_id)

    async def purge_expired(self) -> int:
        """Retention: drop raw messages past RETENTION_DAYS that a summary already holds."""
        return await self.learning.purge_expired()

    async def expire_limits(self) -> int:
        """Each user's token count of a past day and rate windows past their minute: kept
        through an erasure while current (against abuse), deleted once their day is over."""
        return await self.learning.expire_limits()

    async def _answer(
        self,
        prompt: Prompt,
        on_progress: ProgressCallback | None,
        view: ChannelView = DEFAULT_VIEW,
    ) -> ReplyResult:
        state = StreamState()
        shown = ""
        try:
            async for _ in self.llm.stream_chat(
                self.controls.model_for(view),
                prompt.messages,
                max_tokens=self._settings.max_reply_tokens,
                state=state,
            ):
                if on_progress is None:
                    continue
                if state.text and state.text != shown:
                    shown = state.text
                    await on_progress(shown)
                elif state.thinking and not shown:
                    shown = THINKING  # shown once, until the answer replaces it
                    await on_progress(THINKING)
        except LLMError as error:
            log.warning("Chat model call failed (%s): %s", error.kind, error)
            return ReplyResult(Outcome.FAILED, state.text, error, prompt, state.usage)
        if not state.text.strip():
            empty = LLMError("The model returned an empty answer. Please try again.", kind="empty")
            if state.thinking:
                empty = LLMError(
                    "The model's answer was cut off while it was still thinking. Please try again.",
                    kind="cut_thinking",
                )
            return ReplyResult(Outcome.FAILED, "", empty, prompt, state.usage)
        return ReplyResult(
            Outcome.ANSWERED,
            state.text,
            prompt=prompt,
            usage=state.usage,
            cut_at_limit=state.finish_reason == "length",
        )


async def _none() -> None:
    """In place of a read that is not needed (to `asyncio.gather` with the ones that are)."""
    return None


async def _false() -> bool:
    return False
