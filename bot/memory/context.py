"""The context builder: what goes into one prompt, read from storage and the learners.

The system prompt (the place's persona and who is talking), every learner's section, the
conversation's newest messages that fit, recalled older ones, and the new message: assembled
under the budget by `bot.memory.prompt.PromptBuilder`. Also the same picture for `/memory show`.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from bot.config import Settings
from bot.memory.channel import ChannelLine, ChannelSource, speaker_label, usable_lines
from bot.memory.learner import Learner
from bot.memory.prompt import SECTIONS, Prompt, PromptBuilder, PromptLimits, Section
from bot.memory.recall import RecalledExcerpt, RecallLog, recall_for
from bot.memory.vectors import VectorRecall
from bot.model.media import AttachedImage
from bot.model.tokens import Tokenizer
from bot.policy.access import ChannelView
from bot.policy.audience import Audience, places_of
from bot.policy.controls import Controls
from storage import Storage
from storage.models import Session, SessionKey, StoredMessage, space_of

WINDOW_FETCH_BATCH = 64
DEFAULT_VIEW = ChannelView()


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
class Heard:
    """The channel's recent lines and what keeps some of them out of a prompt."""

    lines: list[ChannelLine] = dataclasses.field(default_factory=list)
    erased_at: dict[int, float] = dataclasses.field(default_factory=dict)
    blocked: frozenset[int] = frozenset()
    forgotten: frozenset[int] = frozenset()


class ContextBuilder:
    def __init__(
        self,
        storage: Storage,
        tokenizer: Tokenizer,
        settings: Settings,
        controls: Controls,
        learners: Sequence[Learner],
        *,
        recall_log: RecallLog,
        clock: Callable[[], float],
        vectors: VectorRecall | None = None,
    ) -> None:
        self._storage = storage
        self._vectors = vectors  # hybrid recall (EMBEDDING_MODEL), else words only
        self._tokenizer = tokenizer
        self._settings = settings
        self._controls = controls
        if unplaced := [each.kind for each in learners if each.kind not in SECTIONS]:
            raise ValueError(f"No place in the prompt for {unplaced}: add them to SECTIONS")
        self._learners = tuple(learners)
        self._recall_log = recall_log
        self._clock = clock
        self._counted_lines: dict[str, int] = {}  # channel context lines' token counts
        self.limits = PromptLimits(
            max_prompt_tokens=settings.max_prompt_tokens,
            max_message_tokens=settings.max_message_tokens,
            summary_max_tokens=settings.summary_max_tokens,
            facts_max_tokens=settings.facts_max_tokens,
            recall_max_tokens=settings.recall_max_tokens,
            channel_context_tokens=settings.channel_context_tokens,
        )

    async def build(
        self,
        session: Session | None,
        new_message: StoredMessage,
        author_name: str,
        *,
        budget_share: float = 1.0,
        view: ChannelView = DEFAULT_VIEW,
        channel: ChannelSource | None = None,
        images: Sequence[AttachedImage] = (),
    ) -> Prompt:
        """The prompt for `new_message`, from this session and what the learners know of this
        user in this space, and with `channel` (where channel context is on), what everyone
        said lately in the channel (`bot.memory.channel`).

        `budget_share` < 1 shrinks every section's cap, for a server whose context turned out
        smaller than MAX_PROMPT_TOKENS. With memory off (`view.memory`), only the window: no
        learner's section, no recall. `session` is None for a paused user who never talked here.
        `images` go with the new message as content parts, within the budget.
        """
        limits = self.limits
        if budget_share < 1.0:
            limits = PromptLimits(
                *(max(int(value * budget_share), 1) for value in dataclasses.astuple(limits))
            )
        space = space_of(new_message.guild_id)
        places = places_of(view.audience)  # the audience rule: memory said where it may be used
        # The sections and the newest messages do not depend on each other: read them at once.
        sections, newest, heard = await asyncio.gather(
            self._sections(
                session, new_message.user_id, space, limits, memory=view.memory, places=places
            ),
            self._newest(session, before_id=new_message.id) if session is not None else _none(),
            self._heard(channel, new_message),
        )
        speaker = (new_message.user_id, author_name)
        lines = self._usable(heard, newest or [], new_message)
        builder = PromptBuilder(self._tokenizer, limits, counted_lines=self._counted_lines)
        builder.place_sections(
            system_prompt=self.system_prompt(
                author_name, view, speaker_label(lines, speaker) if lines else None
            ),
            sections={kind: section.text for kind, section in sections.items()},
            new_message=new_message.content,
            channel=lines,
            speaker=speaker,
            images=images,
        )
        window: list[StoredMessage] = []
        recalled: list[RecalledExcerpt] = []
        if session is not None:
            window = await self._window(session, newest or [], budget=builder.window_budget)
            if view.memory:  # memory off: the recent window only, no recall
                recalled = await recall_for(
                    self._storage.recall,
                    session,
                    new_message,
                    window,
                    builder,
                    self._clock(),
                    places,
                    vectors=self._vectors,
                )
        return builder.finish(window, recalled)

    async def describe(
        self, key: SessionKey, author_name: str, audience: Audience | None = None
    ) -> SessionReport:
        """The conversation's memory as the next prompt would use it (with the memory the
        place's `audience` may use only)."""
        budget = self.limits.max_prompt_tokens
        session = await self._storage.sessions.find(key.channel_id, key.user_id)
        sections = await self._sections(
            session, key.user_id, key.space_id, self.limits, places=places_of(audience)
        )
        facts = sections["facts"].items
        if session is None:
            return SessionReport("", None, 0, 0, facts, {}, budget)
        builder = PromptBuilder(self._tokenizer, self.limits)
        builder.place_sections(
            system_prompt=self.system_prompt(author_name),
            sections={kind: section.text for kind, section in sections.items()},
            new_message="",
        )
        newest = await self._newest(session, before_id=2**63 - 1)
        window = await self._window(session, newest, budget=builder.window_budget)
        prompt = builder.finish(window)
        stats = await self._storage.messages.stats(session)
        last = self._recall_log.get(key.channel_id, key.user_id)
        return SessionReport(
            session.summary,
            session.summary_updated_at,
            stats.messages,
            prompt.window_messages,
            facts,
            prompt.section_tokens | {"recall": last.tokens if last else 0},
            budget,
        )

    def system_prompt(
        self, author_name: str, view: ChannelView = DEFAULT_VIEW, label: str | None = None
    ) -> str:
        """The place's persona and who is talking; with a channel context (`label`: the
        speaker's name as it shows them), that the others in it are not the speaker."""
        name = " ".join(author_name.split())[:64] or "someone"
        persona = self._controls.persona_for(view)
        prompt = f"{persona}\n\nYou are talking with the Discord user {name}."
        if label is not None:
            prompt += (
                f" Several people talk in this channel; the one speaking to you now is {label}."
                " What you know of them (facts, summary, earlier messages) is about them alone."
            )
        return prompt

    async def _heard(self, channel: ChannelSource | None, new_message: StoredMessage) -> Heard:
        """The channel's lines, when its context is on; with when each author's memory here
        was last erased (read now, from the database: an erasure on any process counts), whose
        lines never enter it (blocked here, or their memory paused) and which lines their
        authors forgot ("Forget this", on any process)."""
        if channel is None or new_message.guild_id is None:
            return Heard()
        lines = list(await channel.lines())
        if not lines:
            return Heard()
        authors = [line.author_id for line in lines if not line.mine]
        channel_id = new_message.channel_id
        erased_at, rules, paused, forgotten = await asyncio.gather(
            self._storage.erasures.erased_at(new_message.guild_id, channel_id, authors),
            self._controls.rules(new_message.guild_id),
            self._controls.paused_among(authors),
            self._storage.erasures.forgotten(channel_id, [line.message_id for line in lines]),
        )
        blocked = self._controls.blocked_here(rules) | paused
        return Heard(lines, erased_at, blocked, frozenset(forgotten))

    @staticmethod
    def _usable(
        heard: Heard, newest: Sequence[StoredMessage], new_message: StoredMessage
    ) -> list[ChannelLine]:
        if not heard.lines:
            return []
        in_window = {m.discord_id for m in newest if m.discord_id is not None}
        return usable_lines(
            heard.lines,
            blocked=heard.blocked,
            erased_at=heard.erased_at,
            in_window=in_window,
            new_message_id=new_message.discord_id,
            forgotten=heard.forgotten,
        )

    async def _sections(
        self,
        session: Session | None,
        user_id: int,
        space_id: int,
        limits: PromptLimits,
        *,
        memory: bool = True,
        places: frozenset[int] | None = None,
    ) -> dict[str, Section]:
        """Every learner's section, read at once; none with memory off."""
        if not memory:
            return {}
        sections = await asyncio.gather(
            *(
                learner.section(session, user_id, space_id, limits, places)
                for learner in self._learners
            )
        )
        pairs = zip(self._learners, sections, strict=True)
        return {learner.kind: section for learner, section in pairs}

    async def _newest(self, session: Session, *, before_id: int) -> list[StoredMessage]:
        """One batch of the session's newest unsummarized messages before `before_id`."""
        return await self._storage.messages.newest(
            session.id,
            after_id=session.summarized_through,
            before_id=before_id,
            limit=WINDOW_FETCH_BATCH,
        )

    async def _window(
        self, session: Session, first_batch: list[StoredMessage], *, budget: int
    ) -> list[StoredMessage]:
        """Unsummarized messages, newest first, until they surely exceed `budget`: the first
        batch (read already), then more batches while needed."""
        found: list[StoredMessage] = []
        batch = first_batch
        tokens = 0
        while True:
            found.extend(batch)
            tokens += sum(min(m.tokens, self._settings.max_message_tokens) for m in batch)
            if len(batch) < WINDOW_FETCH_BATCH or tokens > budget:
                return found
            batch = await self._newest(session, before_id=batch[-1].id)


async def _none() -> None:
    """In place of a read that is not needed (to `asyncio.gather` with the ones that are)."""
    return None
