"""The memory-strategy seam: a `Learner` learns from a conversation in the background and
adds one section to every prompt.

Summaries (`bot.memory.summary`) and facts (`bot.memory.facts`) are the two today. The learning
part (`bot.memory.learning`) schedules every learner of its `LEARNERS` list alike, and the
context builder (`bot.memory.context`) asks each for its section. A new strategy is:

1. one module in `bot/memory/` with a `ModelLearner` subclass: its `kind`, when it is `due`,
   what it does when it `run`s (its result and its watermark in one transaction), and its
   `section` (the text under its own header, within its cap);
2. one entry in `LEARNERS` (`bot/memory/learning.py`);
3. its section's name in `bot.memory.prompt.SECTIONS`, where it sits in the prompt.

A strategy that keeps a new kind of memory also needs where it keeps it: a migration per
backend for its table and watermark, its backlog as a column of the one scan that measures them
all (`storage.messages` `pending` and `lagging`, read by `learning.backlog`/`lagging`), and its
cap (a setting, in `PromptLimits`); and its rows in what `storage.users` erases and exports.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from dataclasses import dataclass
from typing import Protocol

from bot.config import Settings
from bot.memory.prompt import PromptLimits, Section
from bot.model.llm import LLMClient
from bot.model.tokens import Tokenizer
from bot.policy.limits import Limits
from storage import Storage
from storage.models import Session


class Learner(Protocol):
    kind: str
    """Its background job's kind (one job of a kind per session at a time, leased across a
    fleet), the key of its backlog, and the name of its prompt section."""

    @property
    def idle_seconds(self) -> float | None:
        """Also learn this long after a conversation's last turn, if it stays quiet (what is
        left in the backlog then is learned from); None: only when due."""
        ...

    def due(self, backlog: int) -> bool:
        """After a turn: whether its backlog (the session's `learning.backlog`) is large
        enough to learn from now."""
        ...

    async def run(self, session_id: int) -> None:
        """Learn from the session's backlog and move its watermark, in one transaction."""
        ...

    async def section(
        self,
        session: Session | None,
        user_id: int,
        space_id: int,
        limits: PromptLimits,
        places: Collection[int] | None = None,
    ) -> Section:
        """What it knows, for a prompt of `user_id` in `space_id` (in the conversation
        `session`; None for a paused user who never talked there), within its cap; of what
        was said in `places` only (the audience rule of `bot.policy.audience`; None: the
        whole space, in DMs). A conversation is one place: its own memory is always used."""
        ...


@dataclass(frozen=True, slots=True)
class LearnerTools:
    """What every learner is made with (one of each per engine)."""

    storage: Storage
    llm: LLMClient
    tokenizer: Tokenizer
    settings: Settings
    limits: Limits  # its memory-model calls count against the budgets
    clock: Callable[[], float]


class ModelLearner:
    """A learner that asks the memory model: the tools it needs, made once."""

    kind = ""

    def __init__(self, tools: LearnerTools) -> None:
        self._storage = tools.storage
        self._llm = tools.llm
        self._tokenizer = tools.tokenizer
        self._settings = tools.settings
        self._limits = tools.limits
        self._clock = tools.clock

    @property
    def idle_seconds(self) -> float | None:
        return None
