"""The memory engine: store a turn, build its prompt, answer, and schedule background work.

Takes plain ids and records, never `discord` objects, so it is tested without Discord. Messages
of one session are handled strictly in order; different sessions run concurrently.

`MemoryEngine` is the one façade the Discord side calls; each concern is a part of its own:

- the turns in hand (`bot.engine.turns`): order, waiting, in flight, erased, unstored changes;
- the reply pipeline (`bot.engine.reply`): admit → store → answer → deliver → charge;
- the resume ledger (`bot.engine.resume`): what a stop or a crash left to answer;
- changes (`bot.engine.changes`): edits, deletions, erasures;
- learning (`bot.memory.learning`): the learners' due work, sweeps, retention;
- the context builder (`bot.memory.context`): what goes into a prompt, and `/memory show`.
"""

from __future__ import annotations

import asyncio
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
    Answered,
    DeletedMessage,
    DeliverCallback,
    Failed,
    IncomingMessage,
    Outcome,
    ProgressCallback,
    Refused,
    Remembered,
    ReplyResult,
    SessionReport,
    Skipped,
    Status,
)
from bot.engine.reply import ReplyPipeline
from bot.engine.resume import ResumeLedger
from bot.engine.turns import TurnsInHand
from bot.memory.channel import LINE_MAX_AGE_SECONDS
from bot.memory.context import ContextBuilder
from bot.memory.describe import ImageDescriber
from bot.memory.facts import FactExtractor
from bot.memory.learner import LearnerTools
from bot.memory.learning import LEARNERS, Learning
from bot.memory.prompt import Prompt, PromptLimits
from bot.memory.recall import LastRecall, RecallLog
from bot.memory.summary import Summarizer
from bot.memory.vectors import Embedder, VectorRecall
from bot.model.llm import LLMClient
from bot.model.tokens import Tokenizer
from bot.model.vision import Vision
from bot.policy.access import ChannelView
from bot.policy.audience import Audience, places_of
from bot.policy.controls import Controls
from bot.policy.limits import Cooldown, Limits
from bot.runtime.background import BackgroundJobs, RetryableJobError
from bot.runtime.fleet import Fleet
from storage import Storage
from storage.erasures import ErasedMeanwhile
from storage.models import (
    Fact,
    FactSource,
    QueuedMessage,
    Session,
    SessionKey,
    StoredMessage,
)
from storage.users import DeletedCounts, GuildStats

log = logging.getLogger(__name__)

# Callers import the records from here, where the engine's interface has always been.
__all__ = [
    "THINKING",
    "Answered",
    "DeletedMessage",
    "DeliverCallback",
    "Failed",
    "IncomingMessage",
    "MemoryEngine",
    "Outcome",
    "ProgressCallback",
    "Refused",
    "Remembered",
    "ReplyResult",
    "SessionReport",
    "Skipped",
    "Status",
]


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
        llm.set_parallel(settings.model_parallel)
        self.limits = Limits(settings, storage.usage, storage.fleet, clock=clock)
        self.erasure_cooldown = Cooldown(settings.erasure_cooldown_seconds)
        self.controls = Controls(storage, settings, tokenizer, clock=clock)
        self.fleet = Fleet(storage.fleet, lease_seconds=settings.job_lease_seconds, clock=clock)
        self.jobs = BackgroundJobs(
            settings.background_concurrency, retry_delays=job_retry_delays, leases=self.fleet
        )
        self.recall_log = RecallLog()
        # A message is admitted only if it can be answered within the reply deadline, and
        # its answer takes up to another: changes are remembered a little longer than that.
        self.turns = TurnsInHand(unstored_ttl=2 * settings.reply_deadline_seconds + 60)
        self.ledger = ResumeLedger(storage, clock=clock)
        tools = LearnerTools(storage, llm, tokenizer, settings, self.limits, clock)
        learners = [make(tools) for make in LEARNERS]
        # Hybrid recall, with EMBEDDING_MODEL only: without it, no vector is made or read.
        model = settings.embedding_model
        self.vectors = (
            VectorRecall(storage, llm, model, timeout=settings.embedding_timeout_seconds)
            if model
            else None
        )
        embedder = Embedder(storage, llm, model) if model else None
        self.context = ContextBuilder(
            storage,
            tokenizer,
            settings,
            self.controls,
            learners,
            recall_log=self.recall_log,
            clock=clock,
            vectors=self.vectors,
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
            embedder=embedder,
            vectors=self.vectors,
        )
        self.vision = Vision(storage.capabilities, enabled=settings.vision, clock=clock)
        self.describer = ImageDescriber(
            storage, llm, tokenizer, settings, self.limits, self.vision, self.jobs
        )
        self.changes = self._make_changes(clock)
        self.replies = self._make_replies(clock)

    def _make_changes(self, clock: Callable[[], float]) -> Changes:
        return Changes(
            self.storage,
            self._tokenizer,
            turns=self.turns,
            learning=self.learning,
            controls=self.controls,
            limits=self.limits,
            recall_log=self.recall_log,
            erasure_cooldown=self.erasure_cooldown,
            clock=clock,
        )

    def _make_replies(self, clock: Callable[[], float]) -> ReplyPipeline:
        return ReplyPipeline(
            self.storage,
            self.llm,
            self._tokenizer,
            self._settings,
            turns=self.turns,
            ledger=self.ledger,
            context=self.context,
            changes=self.changes,
            learning=self.learning,
            controls=self.controls,
            limits=self.limits,
            recall_log=self.recall_log,
            vision=self.vision,
            describer=self.describer,
            clock=clock,
        )

    # -- life cycle ------------------------------------------------------------------------------

    async def start(self) -> None:
        """Re-schedule the background work that a stop or crash left undone."""
        self.ledger.started()
        await self.learning.start()

    async def drain(self, grace: float) -> None:
        """Take no new messages; give replies in flight `grace` seconds, then cancel them."""
        await self.turns.drain(grace)

    async def close(self, grace: float = 3.0) -> None:
        await self.drain(grace)
        await self.learning.close(grace)

    @property
    def accepting(self) -> bool:
        """False once the engine is stopping: messages are no longer answered."""
        return self.turns.accepting

    # -- turns: the reply pipeline and the turns in hand -----------------------------------------

    async def reply(
        self,
        incoming: IncomingMessage,
        on_progress: ProgressCallback | None = None,
        deliver: DeliverCallback | None = None,
        *,
        stored: StoredMessage | None = None,
    ) -> ReplyResult:
        """Store the message, stream an answer (reporting the text so far), deliver it through
        `deliver` and store it once delivered (`ReplyPipeline.reply`). With `stored`: the
        message was stored before (by a process that died before answering it)."""
        return await self.replies.reply(incoming, on_progress, deliver, stored=stored)

    async def knows(self, discord_id: int) -> bool:
        """Whether a message is stored or waiting for its turn: only then is an edit of it
        worth reading (and its attachments worth downloading)."""
        return self.turns.waiting(discord_id) or await self.storage.messages.exists(discord_id)

    @property
    def _in_flight(self) -> set[asyncio.Task[object]]:
        """The replies being handled (tests wait for none)."""
        return self.turns.in_flight

    @property
    def _unstored(self) -> UnstoredChanges:
        """Edits and deletions of messages not stored yet (tests wait for them)."""
        return self.turns.unstored

    # -- the resume ledger -----------------------------------------------------------------------

    async def left_in_queue(self) -> list[QueuedMessage]:
        """Messages that were waiting for their turn when their process stopped, recent
        enough to answer now, in arrival order (see `ResumeLedger.left_in_queue`)."""
        return await self.ledger.left_in_queue()

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

    # -- changes: edits, deletions, erasures -----------------------------------------------------

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

    async def forget_message(self, discord_id: int, channel_id: int) -> DeletedMessage | None:
        """ "Forget this" on one of the user's own messages: as a deletion, and its id kept
        for as long as a channel's lines are (the message stays on Discord, and a restart
        would read it again into the channel context)."""
        await self.storage.erasures.mark_forgotten(
            discord_id, channel_id, now=self._clock(), keep_seconds=LINE_MAX_AGE_SECONDS
        )
        return await self.changes.message_deleted(discord_id)

    async def remember_message(self, incoming: IncomingMessage) -> Remembered:
        """ "Remember this" on one of the user's own messages: store it in their conversation
        there (unless it is stored already), read it for facts now with the usual rules, and
        say which facts it taught. Refused while the user's memory is paused, and where
        memory is off."""
        key = incoming.key
        if await self.controls.is_paused(key.user_id):
            return Remembered(refused="Your memory is paused (`/memory resume` to resume).")
        if not incoming.view.memory:
            return Remembered(refused="Memory is off in this server, so I keep nothing here.")
        fence = await self.storage.erasures.fence(key)
        content = incoming.content
        try:
            stored = await self.storage.messages.add(
                key,
                role="user",
                content=content,
                tokens=self._tokenizer.count(content),
                discord_id=incoming.discord_id,
                now=self._clock(),
                fence=fence,
            )
        except ErasedMeanwhile:
            return Remembered(refused="Your memory was erased meanwhile; nothing was kept.")
        if stored is not None:
            await self.storage.messages.settle(stored.id)  # not a question to answer
        session = await self.storage.sessions.find(key.channel_id, key.user_id)
        if session is not None:
            try:
                await self.facts.run(session.id)
            except RetryableJobError as error:  # kept: the background reads it again later
                log.warning("Could not read message %s for facts: %s", incoming.discord_id, error)
        facts = await self.storage.facts.current(key.user_id, key.space_id)
        sources = await self.storage.facts.sources([fact.id for fact in facts])
        taught = tuple(
            (fact.attribute, fact.value)
            for fact in facts
            if any(s.discord_message_id == incoming.discord_id for s in sources.get(fact.id, []))
        )
        return Remembered(stored_now=stored is not None, facts=taught)

    def erasure_wait(self, user_id: int) -> float:
        """Seconds before the user may erase again (`/memory clear`, `/facts forget`): 0 now.
        Each erasure rewrites the search index, so they are one per ERASURE_COOLDOWN_SECONDS."""
        return self.changes.erasure_wait(user_id)

    async def forget_fact(self, user_id: int, space_id: int, fact_id: int) -> int:
        """Delete one of the user's facts with its history; 0 when it is not theirs."""
        return await self.changes.forget_fact(user_id, space_id, fact_id)

    async def clear_conversation(self, key: SessionKey) -> DeletedCounts:
        """Delete one conversation's messages and summary, and stop its background jobs."""
        return await self.changes.clear_conversation(key)

    async def forget_user(self, user_id: int) -> DeletedCounts:
        """Delete everything of the user everywhere; nothing derived is written back after."""
        return await self.changes.forget_user(user_id)

    async def forget_member(self, user_id: int, guild_id: int) -> DeletedCounts:
        """Delete what the user said in one server (an admin's request), nothing elsewhere."""
        return await self.changes.forget_member(user_id, guild_id)

    # -- learning --------------------------------------------------------------------------------

    @property
    def summarizer(self) -> Summarizer:
        return self.learning.learner(Summarizer)

    @property
    def facts(self) -> FactExtractor:
        return self.learning.learner(FactExtractor)

    async def purge_expired(self) -> int:
        """Retention: drop raw messages past RETENTION_DAYS that a summary already holds."""
        return await self.learning.purge_expired()

    async def expire_limits(self) -> int:
        """Each user's token count of a past day and rate windows past their minute: kept
        through an erasure while current (against abuse), deleted once their day is over."""
        return await self.learning.expire_limits()

    async def _schedule_lagging(self) -> int:
        """Schedule every session's lagging background work (tests call it)."""
        return await self.learning.schedule_lagging()

    # -- the context builder, and what users see -------------------------------------------------

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

    async def describe(
        self, key: SessionKey, author_name: str, audience: Audience | None = None
    ) -> SessionReport:
        """The conversation's memory as the next prompt would use it, in a place of this
        `audience` (None: DMs)."""
        return await self.context.describe(key, author_name, audience)

    async def last_recall(
        self, key: SessionKey, audience: Audience | None = None
    ) -> LastRecall | None:
        """What was recalled for the user's last answer in this conversation (`/memory why`),
        as far as it is still stored, and of it what this place's `audience` may use now.

        The log is this process's: an erasure or deletion handled by another process of the
        fleet does not reach it, so each excerpt is checked against storage before it is
        shown (one read on the primary key), and those gone are dropped from the log too.
        """
        last = self.recall_log.get(key.channel_id, key.user_id)
        if last is None or not last.excerpts:
            return last
        still = await self.stored_message_ids([item.message_id for item in last.excerpts])
        if len(still) != len(last.excerpts):
            kept = tuple(item for item in last.excerpts if item.message_id in still)
            if not kept:  # as after an erasure here
                self.recall_log.forget_conversation(key.channel_id, key.user_id)
                return None
            last = LastRecall(kept, last.tokens)
            self.recall_log.record(key.channel_id, key.user_id, last)
        if audience is None:
            return last
        # The place's audience may have changed since: what it may not use now is not shown.
        allowed = tuple(item for item in last.excerpts if audience.allows(item.place_id))
        return last if len(allowed) == len(last.excerpts) else LastRecall(allowed, last.tokens)

    # Thin reads for the commands: cogs reach data only through the engine.

    async def current_facts(
        self, user_id: int, space_id: int, audience: Audience | None = None
    ) -> list[Fact]:
        """The facts in force that a place of this `audience` may use (None: all, in DMs)."""
        return await self.storage.facts.current(user_id, space_id, places_of(audience))

    async def fact_sources(self, fact_ids: Sequence[int]) -> dict[int, list[FactSource]]:
        return await self.storage.facts.sources(fact_ids)

    async def stored_message_ids(self, message_ids: Sequence[int]) -> set[int]:
        """Which of these message ids are still stored."""
        return {message.id for message in await self.storage.messages.by_ids(message_ids)}

    async def export_user(self, user_id: int) -> dict[str, Any]:
        return await self.storage.users.export(user_id)

    async def guild_stats(self, guild_id: int) -> GuildStats:
        return await self.storage.users.guild_stats(guild_id)
