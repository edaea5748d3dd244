"""The reply pipeline: admit → store → answer → deliver → charge, one turn at a time.

A turn is taken in hand as it arrives (its place in its conversation, before any await), then
admitted (rate, budget, and a queue that can be answered within the deadline), stored (as it
is now: edited or deleted while it waited), answered by the chat model within the budgeted
prompt, delivered through the caller's callback, stored as the answer once shown, and charged
against the budgets. Every write of the turn is fenced by the erasure fence read on arrival.
A paused user's turn is answered from what is stored, and stores nothing.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Callable, Sequence

from bot.config import Settings
from bot.engine.changes import Changes
from bot.engine.images import TurnImages
from bot.engine.records import (
    THINKING,
    Answered,
    DeliverCallback,
    Failed,
    IncomingMessage,
    Outcome,
    ProgressCallback,
    Refused,
    ReplyResult,
    Skipped,
)
from bot.engine.resume import ResumeLedger
from bot.engine.turns import Hand, TurnsInHand
from bot.memory.context import ContextBuilder
from bot.memory.describe import ImageDescriber
from bot.memory.learning import Learning
from bot.memory.prompt import Prompt
from bot.memory.recall import LastRecall, RecallLog
from bot.model.llm import ErrorKind, LLMClient, LLMError, StreamState, Usage
from bot.model.scheduler import ModelScheduler, Overdue, Ticket
from bot.model.tokens import Tokenizer
from bot.model.vision import Vision
from bot.policy.access import ChannelView
from bot.policy.controls import Controls
from bot.policy.limits import Limits, Refusal
from storage import Storage
from storage.erasures import ErasedMeanwhile, ErasureRepository
from storage.errors import StorageError
from storage.models import Session, SessionKey, StoredMessage

# A child of the engine's logger, as before the engine was split: a level set on
# "bot.engine.engine" (by an operator, or a test) still applies here.
log = logging.getLogger("bot.engine.engine").getChild("reply")

UNSTORED_ID = 2**63 - 1  # the id a paused user's message would have: after every stored one


class Admission:
    """Admit: as a message arrives, the erasure fence its writes are held to, the limits it
    must pass, and whether its author paused memory; and the refusal of a queue too long."""

    def __init__(
        self,
        storage: Storage,
        settings: Settings,
        controls: Controls,
        limits: Limits,
        slots: ModelScheduler,
        *,
        clock: Callable[[], float],
    ) -> None:
        self._storage = storage
        self._settings = settings
        self._controls = controls
        self._limits = limits
        self._llm_slots = slots
        self._clock = clock

    async def arrive(
        self, key: SessionKey, *, admit: bool, pause: bool
    ) -> tuple[int, Refusal | None, bool]:
        """(the erasure fence, a refusal, whether the user paused memory) as the message
        arrives; admission and the pause only when asked. The fence and the pause are one
        read; admission's reads run beside it (on PostgreSQL side by side on pooled
        connections, instead of one round trip after the other)."""
        erasures = self._storage.erasures
        read = erasures.fence_and_pause(key) if pause else _fence_alone(erasures, key)
        (fence, paused), refusal = await asyncio.gather(
            read, self._admit(key) if admit else _none()
        )
        return fence, refusal, paused

    async def _admit(self, key: SessionKey) -> Refusal | None:
        """Rate and budget limits, and a queue as long as can be answered within the deadline.

        The expected wait comes from recent reply latencies and the server's parallelism, with
        users served in turn; only a message that would wait past the reply deadline is refused.
        """
        wait = self._llm_slots.expected_wait(key.user_id)
        if wait > self._settings.reply_deadline_seconds:
            return self.busy(wait)
        rate, budget = await asyncio.gather(
            self._limits.check_rate(key.user_id), self._limits.check_budget(key)
        )
        return rate or budget

    def busy(self, wait: float) -> Refusal:
        """The refusal of a message that would wait too long (`wait` seconds, if known)."""
        return Refusal(
            "I'm busy with a lot of messages right now. Please try again in a minute.",
            self._clock() + min(max(wait, 30.0), 300.0),
        )


class ReplyPipeline:
    def __init__(
        self,
        storage: Storage,
        llm: LLMClient,
        tokenizer: Tokenizer,
        settings: Settings,
        *,
        turns: TurnsInHand,
        ledger: ResumeLedger,
        context: ContextBuilder,
        changes: Changes,
        learning: Learning,
        controls: Controls,
        limits: Limits,
        recall_log: RecallLog,
        vision: Vision,
        describer: ImageDescriber,
        clock: Callable[[], float],
    ) -> None:
        self._storage = storage
        self._images = TurnImages(vision, controls)
        self._describer = describer
        self._llm = llm
        self._llm_slots = llm.scheduler  # every model call: replies first, background after
        self._admission = Admission(
            storage, settings, controls, limits, self._llm_slots, clock=clock
        )
        self._tokenizer = tokenizer
        self._settings = settings
        self._turns = turns
        self._ledger = ledger
        self._context = context
        self._changes = changes
        self._learning = learning
        self._controls = controls
        self._limits = limits
        self._recall_log = recall_log
        self._clock = clock

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
        if not self._turns.accepting or task is None:
            return Skipped(Outcome.STOPPING)
        with self._turns.take(incoming.key, incoming.discord_id) as hand:
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
        readmitted = self._ledger.readmitted(incoming.discord_id)
        fence, refusal, paused = await self._admission.arrive(
            incoming.key, admit=stored is None and not readmitted, pause=stored is None
        )
        if refusal is not None:
            return Refused(refusal)
        with self._turns.flying(task):
            ticket = self._llm_slots.enter(incoming.key.user_id)
            try:
                if paused:
                    await hand.wait_turn()
                    return await self._reply_unstored(incoming, on_progress, deliver, ticket)
                if stored is None and not hand.first_in_line:
                    await self._ledger.note_queued(incoming.key, incoming.discord_id, fence)
                try:
                    await hand.wait_turn()
                    return await self._reply_in_order(
                        incoming, fence, on_progress, deliver, ticket, stored
                    )
                except asyncio.CancelledError:
                    # Stopped before it was stored: the next start answers it.
                    self._ledger.stopped(incoming.discord_id)
                    raise
                finally:
                    await self._ledger.unqueue(incoming.discord_id)  # refused, dropped, or failed
            finally:
                self._llm_slots.leave(ticket)

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
            return Refused(self._admission.busy(0.0))
        stored = stored_before or await self._store_incoming(incoming, fence)
        if isinstance(stored, Skipped):
            return stored
        result = await self._answer_stored(incoming, stored, fence, on_progress, deliver, ticket)
        answered = isinstance(result, Answered) and (result.delivered or deliver is None)
        erased = isinstance(result, Skipped) and result.outcome is Outcome.ERASED
        if not (answered or erased):
            # No answer stored (it failed, or Discord refused it): the user saw why, so the
            # message is not answered again after a restart.
            await self._storage.messages.settle(stored.id)
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
        session = await self._storage.sessions.get(stored.session_id)
        assert session is not None
        try:
            prompt, answer = await self._generate(session, stored, incoming, on_progress, ticket)
        except Overdue:
            # The queue grew slower than estimated at admission: say so now, not late.
            self._learning.after_turn(session)
            return Refused(self._admission.busy(0.0))
        self._recall_log.record(
            session.channel_id,
            session.user_id,
            LastRecall(prompt.recalled, prompt.section_tokens.get("recall", 0)),
        )
        answer_tokens = self._tokenizer.count(answer.text)  # once: usage and storage
        result: ReplyResult = answer
        try:
            if isinstance(answer, Answered):
                if await self._storage.erasures.fence(incoming.key) != fence:
                    # Erased while it was generated: the answer drew on erased memory.
                    return Skipped(Outcome.ERASED, prompt, answer.usage)
                result = await self._deliver_and_store(
                    incoming, stored, answer, answer_tokens, fence, deliver
                )
        finally:
            # Charged after the answer is shown (accounting is not on the way to the user),
            # and whatever happened since the model answered: its tokens were spent.
            await self._charge(incoming.key, answer.usage, prompt.tokens + answer_tokens)
        if incoming.view.memory:
            self._learning.after_turn(session)
            if isinstance(result, Answered) and (result.delivered or deliver is None):
                self._describer.after_turn(incoming.key, stored, incoming.images, fence)
        else:
            await self._learning.keep_only_window(session)
        return result

    async def _generate(
        self,
        session: Session | None,
        stored: StoredMessage,
        incoming: IncomingMessage,
        on_progress: ProgressCallback | None,
        ticket: Ticket,
    ) -> tuple[Prompt, Answered | Failed]:
        """The prompt and the model's answer to it, in the turn's reply slot (Overdue when
        the slot comes too late): again without the images if the model refuses them, and
        again trimmed harder if the server's context is smaller than our budget."""
        view = incoming.view
        images, notes = await self._images.for_turn(incoming)
        channel = incoming.channel

        async def build(share: float = 1.0) -> Prompt:
            return await self._context.build(
                session,
                stored,
                incoming.author_name,
                budget_share=share,
                view=view,
                channel=channel,
                images=images,
            )

        prompt = await build()
        async with self._llm_slots.reply(ticket):
            answer = await self._answer(prompt, on_progress, view)
            if isinstance(answer, Failed) and answer.error.kind == ErrorKind.IMAGES_REFUSED:
                images, notes = await self._images.refused(view)  # once more without them
                prompt = await build()
                answer = await self._answer(prompt, on_progress, view)
            if isinstance(answer, Failed) and answer.error.kind == "context_length":
                # The server's context is smaller than our budget: trim harder, once.
                prompt = await build(0.5)
                answer = await self._answer(prompt, on_progress, view)
        return prompt, await self._images.settle(view, images, prompt, answer, notes)

    async def _charge(self, key: SessionKey, usage: Usage | None, estimate: int) -> None:
        """Count a model call's tokens against the budgets; a database error is logged (the
        answer was already shown, or the error already told)."""
        try:
            await self._limits.charge(key, usage, lambda: estimate)
        except StorageError as error:
            log.warning("Could not count the tokens of a reply to user %s: %s", key.user_id, error)

    async def _answer(
        self, prompt: Prompt, on_progress: ProgressCallback | None, view: ChannelView
    ) -> Answered | Failed:
        model = self._controls.model_for(view)
        max_tokens = self._settings.max_reply_tokens
        return await stream_answer(
            self._llm, model, prompt, max_tokens=max_tokens, on_progress=on_progress
        )

    async def _store_incoming(
        self, incoming: IncomingMessage, fence: int
    ) -> StoredMessage | Skipped:
        """Store the user's message as it is now (edited or deleted while it waited)."""
        change = self._turns.unstored.take(incoming.discord_id)
        if change is not None and change.deleted:
            return Skipped(Outcome.DELETED)
        content = change.content if change is not None and change.content else incoming.content
        try:
            stored = await self._storage.messages.add(
                incoming.key,
                role="user",
                content=content,
                tokens=self._tokenizer.count(content),
                discord_id=incoming.discord_id,
                now=self._clock(),
                fence=fence,
                place_id=_place(incoming),
            )
        except ErasedMeanwhile:
            return Skipped(Outcome.ERASED)
        self._turns.stored(incoming.discord_id)
        if stored is None:
            await self._ledger.unqueue(incoming.discord_id)  # known already: no longer waiting
            return Skipped(Outcome.DUPLICATE)
        self._ledger.stored(incoming.discord_id)
        # A change that arrived while the row was being written (no await since).
        late = self._turns.unstored.take(incoming.discord_id)
        if late is not None and late.deleted:
            await self._changes.message_deleted(incoming.discord_id)
            return Skipped(Outcome.DELETED)
        if late is not None and late.content:
            await self._changes.message_edited(
                incoming.discord_id, late.content, user_id=incoming.key.user_id
            )
            [stored] = await self._storage.messages.by_ids([stored.id])
        return stored

    async def _deliver_and_store(
        self,
        incoming: IncomingMessage,
        stored: StoredMessage,
        result: Answered,
        answer_tokens: int,
        fence: int,
        deliver: DeliverCallback | None,
    ) -> Answered | Skipped:
        """Show the answer, then store it: an answer the user never saw is not memory. It is
        stored as the answer to `stored`, and goes when that message is deleted."""
        shown_as: Sequence[int] = ()
        if self._turns.deleted(incoming.discord_id):
            # Deleted while it was answered: the answer might repeat it. Not shown, not kept.
            return Skipped(Outcome.DELETED, usage=result.usage)
        if deliver is not None:
            delivered = await deliver(result)
            if not delivered:
                log.info("Answer to message %s was not delivered; not stored", incoming.discord_id)
                return result
            if not isinstance(delivered, bool):
                shown_as = delivered
            result = dataclasses.replace(result, delivered=True)
        try:
            answer = await self._storage.messages.add(
                incoming.key,
                role="assistant",
                content=result.text,
                tokens=answer_tokens,
                discord_id=None,
                now=self._clock(),
                fence=fence,
                reply_to=stored.id,
                shown_as=shown_as,
                place_id=_place(incoming),
            )
        except ErasedMeanwhile:
            log.info("Memory of user %s erased as an answer was delivered", incoming.key.user_id)
            return result
        if self._turns.deleted(incoming.discord_id):
            # Deleted while the answer was shown: withdrawn, here and (by the caller) there.
            if answer is not None:
                await self._storage.messages.delete_answer(answer.id)
            return Skipped(Outcome.DELETED, usage=result.usage)
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
        if not self._turns.first_unstored(incoming.discord_id):
            return Skipped(Outcome.DUPLICATE)
        session = await self._storage.sessions.find(key.channel_id, key.user_id)
        transient = self._transient(incoming, session)
        if on_progress is not None:
            await on_progress("")
        try:
            prompt, answer = await self._generate(session, transient, incoming, on_progress, ticket)
        except Overdue:
            return Refused(self._admission.busy(0.0))
        await self._limits.charge(
            key,
            answer.usage,
            lambda: prompt.tokens + self._tokenizer.count(answer.text),
            private=True,
        )
        answer = dataclasses.replace(answer, paused=True)
        if isinstance(answer, Answered) and deliver is not None:
            answer = dataclasses.replace(answer, delivered=bool(await deliver(answer)))
        return answer

    def _transient(self, incoming: IncomingMessage, session: Session | None) -> StoredMessage:
        """A paused user's message as if stored (for the prompt only): after every stored one."""
        key, content = incoming.key, incoming.content
        return StoredMessage(
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


async def stream_answer(
    llm: LLMClient,
    model: str,
    prompt: Prompt,
    *,
    max_tokens: int,
    on_progress: ProgressCallback | None,
) -> Answered | Failed:
    """Stream the model's answer to `prompt`, showing it as it grows (a status while the
    model only thinks); an error, or an answer with no text, fails."""
    state = StreamState()
    shown = ""
    try:
        async for _ in llm.stream_chat(model, prompt.messages, max_tokens=max_tokens, state=state):
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
        return Failed(error, state.text, prompt, state.usage)
    if not state.text.strip():
        empty = LLMError("The model returned an empty answer. Please try again.", kind="empty")
        if state.thinking:
            empty = LLMError(
                "The model's answer was cut off while it was still thinking. Please try again.",
                kind="cut_thinking",
            )
        return Failed(empty, "", prompt, state.usage)
    return Answered(state.text, prompt, state.usage, cut_at_limit=state.finish_reason == "length")


async def _none() -> None:
    """In place of a read that is not needed (to `asyncio.gather` with the ones that are)."""
    return None


async def _fence_alone(erasures: ErasureRepository, key: SessionKey) -> tuple[int, bool]:
    """The fence, when the pause is not asked for (as not paused)."""
    return await erasures.fence(key), False


def _place(incoming: IncomingMessage) -> int | None:
    """The place a turn is stored under: its audience's (None, in DMs: the channel)."""
    audience = incoming.view.audience
    return audience.place_id if audience is not None else None
