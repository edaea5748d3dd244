"""Learning: when the learners run, and what is let go.

Every learner of `LEARNERS` is scheduled alike, never awaited on the reply path: after a turn
when its backlog is due (and once the conversation goes quiet, for those that say so), again
after an edit or a deletion (debounced), and by a sweep that picks up what a dead process or a
spent retry left. Retention runs here too: one pass a day across the fleet for messages a
summary already holds and for past days' limits, the window-only trimming of a server whose
memory is off, and the search index's merge after rows leave it. With EMBEDDING_MODEL, the
messages' vectors for hybrid recall are computed here too (`bot.memory.vectors.Embedder`):
after each turn, after an edit, and at start-up for what a stop or a new model left.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from functools import partial
from typing import TypeVar

from bot.config import Settings
from bot.memory.facts import FactExtractor
from bot.memory.learner import Learner, LearnerTools
from bot.memory.recall import RecallLog
from bot.memory.summary import Summarizer
from bot.memory.vectors import Embedder, VectorRecall
from bot.policy.controls import Controls
from bot.policy.limits import Cooldown
from bot.runtime.background import BackgroundJobs
from bot.runtime.fleet import Fleet
from storage import Storage
from storage.models import Session

log = logging.getLogger(__name__)

LEARNERS: tuple[Callable[[LearnerTools], Learner], ...] = (Summarizer, FactExtractor)
"""The memory strategies, in the order their work is scheduled."""

RETENTION_INTERVAL_SECONDS = 24 * 3600
RETENTION_CHECK_SECONDS = 3600  # how often a process asks whether today's pass is due
RECALL_PURGE_JOB = 0  # the search index's merge job: a key no session has (ids start at 1)

L = TypeVar("L")


def backlog(pending: tuple[int, int]) -> dict[str, int]:
    """Each learner's backlog, by kind, from the one read that measures them all
    (`storage.messages.pending`: one scan of the session past its older watermark)."""
    unsummarized_tokens, unread_user_messages = pending
    return {Summarizer.kind: unsummarized_tokens, FactExtractor.kind: unread_user_messages}


def lagging(row: tuple[int, bool, bool]) -> tuple[int, dict[str, bool]]:
    """A row of `storage.messages.lagging`: the session, and whether each learner lags."""
    session_id, summary_due, facts_unread = row
    return session_id, {Summarizer.kind: summary_due, FactExtractor.kind: facts_unread}


class Learning:
    def __init__(
        self,
        storage: Storage,
        settings: Settings,
        learners: Sequence[Learner],
        *,
        jobs: BackgroundJobs,
        fleet: Fleet,
        controls: Controls,
        recall_log: RecallLog,
        clock: Callable[[], float],
        embedder: Embedder | None = None,
        vectors: VectorRecall | None = None,
    ) -> None:
        self._storage = storage
        self.embedder = embedder
        self.vectors = vectors
        self._settings = settings
        self.learners = tuple(learners)
        self._jobs = jobs
        self._fleet = fleet
        self._controls = controls
        self._recall_log = recall_log
        self._clock = clock
        # Re-learning after edits, per session: at once, then once per EDIT_RELEARN_SECONDS.
        self._relearn_debounce = Cooldown(settings.edit_relearn_seconds)
        self._loops: list[asyncio.Task[None]] = []

    def learner(self, kind: type[L]) -> L:
        """The learner of this class."""
        return next(each for each in self.learners if isinstance(each, kind))

    async def start(self) -> None:
        """Re-schedule the background work that a stop or crash left undone."""
        resumed = await self.schedule_lagging()
        if resumed:
            log.info("Resumed background work for %d sessions", resumed)
        if self.embedder is not None:
            unembedded = await self._storage.vectors.sessions_missing(self.embedder.model)
            for session_id in unembedded:
                self.schedule_embedding(session_id)
            if unembedded:
                log.info("Embedding the messages of %d sessions", len(unembedded))
        self._loops = [
            asyncio.create_task(self._retention_loop(), name="mnemo-retention"),
            asyncio.create_task(self._sweep_loop(), name="mnemo-sweep"),
        ]

    async def close(self, grace: float) -> None:
        for loop_task in self._loops:
            loop_task.cancel()
        await asyncio.gather(*self._loops, return_exceptions=True)
        await self._jobs.close(grace)

    async def schedule_lagging(self) -> int:
        """Schedule every session's lagging background work (coalesced with what runs)."""
        rows = await self._storage.sessions.lagging(self._settings.summary_trigger_tokens)
        for row in rows:
            session_id, lags = lagging(row)
            for learner in self.learners:
                if lags[learner.kind]:
                    self.schedule(learner, session_id)
        return len(rows)

    def after_turn(self, session: Session) -> None:
        """Schedule, never await, the background work this turn may have made due."""
        self._jobs.schedule("check", session.id, partial(self._schedule_due_work, session.id))
        self.schedule_embedding(session.id)
        for learner in self.learners:
            if learner.idle_seconds is not None:
                self._jobs.schedule_later(
                    f"{learner.kind}-idle",
                    session.id,
                    learner.idle_seconds,
                    partial(self._learn, session.id, learner),
                )

    def relearn(self, session_id: int) -> None:
        """Learn again from a conversation that changed (rebuilt from what remains; work in
        flight on the old messages lands nothing)."""
        for learner in self.learners:
            self.schedule(learner, session_id)
        self.schedule_embedding(session_id)  # an edited message lost its vector with its text

    def relearn_after_edit(self, session_id: int) -> None:
        """Schedule learning again from a conversation whose messages were edited: at once
        for the first edit, then at most once per EDIT_RELEARN_SECONDS; the edits in between
        are folded into one pass at the end of the period (a coalesced timer). So a user who
        edits in a loop buys at most one summary rebuild and one extraction per conversation
        per period, and those are charged to their daily budget and stop when it is spent."""
        wait = self._relearn_debounce.wait(session_id)
        if wait <= 0:
            self._relearn_debounce.used(session_id)
            self.relearn(session_id)
            return
        self._jobs.schedule_later(
            "edit-relearn", session_id, wait, partial(self._relearn_debounced, session_id)
        )

    def schedule(self, learner: Learner, session_id: int) -> None:
        self._jobs.schedule(learner.kind, session_id, partial(self._learn, session_id, learner))

    def schedule_embedding(self, session_id: int) -> None:
        """Embed the session's messages that have no vector yet (EMBEDDING_MODEL set)."""
        if self.embedder is not None:
            self._jobs.schedule(Embedder.kind, session_id, partial(self._embed, session_id))

    def forget_vectors(self, user_id: int | None = None) -> None:
        """An erasure: drop the cached matrices it covers (a user's; all of them with None)."""
        if self.vectors is not None:
            if user_id is None:
                self.vectors.clear()
            else:
                self.vectors.forget_user(user_id)

    def schedule_recall_purge(self) -> None:
        """Merge the search index in the background, coalesced: a row deleted or rewritten
        leaves the index's rows at once, but its words stay in the index's pages until a merge,
        which rewrites the index, so many deletions share one instead of one each."""
        self._jobs.schedule("recall-purge", RECALL_PURGE_JOB, self._purge_recall_index)

    async def stop_jobs(self, session_ids: list[int]) -> None:
        # A job cancelled mid-call writes nothing; one that already finished its write is
        # covered by the deletion that follows. The deletion also defeats any later write,
        # since every job's write checks its session's watermark.
        tasks = [task for sid in session_ids for task in self._jobs.cancel_session(sid)]
        await asyncio.gather(*tasks, return_exceptions=True)

    async def keep_only_window(self, session: Session) -> None:
        """Memory off: keep only the newest messages any prompt's window could still use;
        the words of those deleted leave the search index too (as after a deletion)."""
        deleted = await self._storage.messages.delete_beyond_recent(
            session.id,
            keep_tokens=self._settings.max_prompt_tokens,
            message_cap=self._settings.max_message_tokens,
        )
        if deleted:
            self.schedule_recall_purge()

    async def purge_expired(self) -> int:
        """Retention: drop raw messages past RETENTION_DAYS that a summary already holds."""
        days = self._settings.retention_days
        if days <= 0:
            return 0
        deleted = await self._storage.messages.delete_expired(self._clock() - days * 86400)
        if deleted:
            self._recall_log.clear()
            self.forget_vectors()
            await self._storage.recall.purge_deleted()
            log.info("Retention deleted %d summarized messages older than %d days", deleted, days)
        return deleted

    async def expire_limits(self) -> int:
        """Each user's token count of a past day and rate windows past their minute: kept
        through an erasure while current (against abuse), deleted once their day is over."""
        now = self._clock()
        today = datetime.fromtimestamp(now, tz=UTC).strftime("%Y-%m-%d")
        return await self._storage.usage.expire(before_day=today, rate_before=now - 60.0)

    async def _schedule_due_work(self, session_id: int) -> None:
        session = await self._storage.sessions.get(session_id)
        if session is None:
            return
        backlogs = backlog(await self._storage.messages.pending(session))
        for learner in self.learners:
            if learner.due(backlogs[learner.kind]):
                self.schedule(learner, session_id)

    async def _learn(self, session_id: int, learner: Learner) -> None:
        """Run a learner's job unless its server turned memory off."""
        session = await self._storage.sessions.get(session_id)
        if session is None:
            return
        if session.guild_id is not None:
            rules = await self._controls.rules(session.guild_id)
            if not rules.memory:
                return
        await learner.run(session_id)

    async def _embed(self, session_id: int) -> None:
        """Embed a session's messages unless its server turned memory off; more left after
        one run (a long backlog, a new model): scheduled again, after other work."""
        assert self.embedder is not None
        session = await self._storage.sessions.get(session_id)
        if session is None:
            return
        if session.guild_id is not None:
            rules = await self._controls.rules(session.guild_id)
            if not rules.memory:
                return
        if await self.embedder.run(session_id):
            self.schedule_embedding(session_id)

    async def _relearn_debounced(self, session_id: int) -> None:
        self._relearn_debounce.used(session_id)
        self.relearn(session_id)

    async def _purge_recall_index(self) -> None:
        await self._storage.recall.purge_deleted()

    async def _sweep_loop(self) -> None:
        """Now and then, pick up work nobody holds: a job whose process died (its lease has
        expired by then), or one that gave up its retries."""
        while True:
            await asyncio.sleep(self._settings.job_lease_seconds)
            try:
                await self.schedule_lagging()
            except Exception:
                log.exception("Background sweep failed; trying again later")

    async def _retention_loop(self) -> None:
        """One retention pass a day for the whole fleet: whichever process claims the day."""
        # Erasure on PostgreSQL (#19 item 6): erased text is rewritten out of the database's
        # files within ERASURE_COMPACT_SECONDS, checked every minute (storage.compaction).
        self._storage.keep_erasures_compacted(self._settings.erasure_compact_seconds)
        while True:
            try:
                if await self._fleet.claim_period("retention", RETENTION_INTERVAL_SECONDS):
                    await self.purge_expired()
                    await self.expire_limits()
                await self._storage.expire_backups()  # this process's files: every pass
            except Exception:
                log.exception("Retention pass failed; trying again later")
            await asyncio.sleep(RETENTION_CHECK_SECONDS)
