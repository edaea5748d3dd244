"""What goes into the engine and what comes out of it: plain records, no behaviour."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from enum import Enum
from typing import ClassVar

from bot.memory.channel import ChannelSource
from bot.memory.context import DEFAULT_VIEW, SessionReport
from bot.memory.prompt import Prompt
from bot.model.llm import LLMError, Usage
from bot.model.media import AttachedImage
from bot.policy.access import ChannelView
from bot.policy.limits import Refusal
from storage.models import SessionKey

__all__ = [
    "DEFAULT_VIEW",
    "THINKING",
    "Answered",
    "DeletedMessage",
    "DeliverCallback",
    "Failed",
    "IncomingMessage",
    "Outcome",
    "ProgressCallback",
    "Refused",
    "Remembered",
    "ReplyResult",
    "SessionReport",  # the context builder's, as the engine hands it out
    "Skipped",
    "Status",
]

ProgressCallback = Callable[[str], Awaitable[None]]
"""Called with the answer so far; "" when accepted; a `Status` while there is no answer yet."""


class Status(str):
    """A short status to show in place of an answer that has not begun (e.g. "thinking…")."""


THINKING = Status("thinking…")
# Shows a finished answer to the user; False when it could not be delivered (e.g. a 403).
# It may return the Discord ids of the messages that show the answer instead of True (kept
# with the answer, so that it can be deleted there when the user deletes their message).
DeliverCallback = Callable[["Answered"], Awaitable[bool | Sequence[int]]]


@dataclass(frozen=True, slots=True)
class IncomingMessage:
    """A user's message as the engine needs it: ids from the Discord event, cleaned text."""

    key: SessionKey
    discord_id: int
    content: str
    author_name: str
    view: ChannelView = DEFAULT_VIEW  # this place's persona, model and memory setting
    # The channel's recent lines, where channel context is on (read when the prompt is built).
    channel: ChannelSource | None = None
    # Images of the message, prepared for the model (never stored: `content` holds their
    # records); sent when VISION is auto and the model is not known to refuse them.
    images: tuple[AttachedImage, ...] = ()


class Outcome(Enum):
    ANSWERED = "answered"
    DUPLICATE = "duplicate"  # already stored: a redelivered event, answered once already
    STOPPING = "stopping"  # the bot is shutting down and takes no new messages
    REFUSED = "refused"  # a limit: rate, daily budget, or the reply queue is full
    FAILED = "failed"
    ERASED = "erased"  # the user's memory was erased while the message waited or was answered
    DELETED = "deleted"  # the user deleted the message before its turn came


# A turn ends in one of four results, told apart by their class (`match result: case
# Answered(): ...`). Each also carries the attributes the others have (`outcome`, `text`,
# `error`, `refusal`, `prompt`, `usage`), fixed where they cannot apply, for code that only
# asks what happened.


@dataclass(frozen=True, slots=True)
class Answered:
    """The model answered; `delivered` once the `deliver` callback showed it (then it was
    stored, unless the user's memory is paused)."""

    text: str
    prompt: Prompt
    usage: Usage | None = None
    cut_at_limit: bool = False  # the model stopped at MAX_REPLY_TOKENS
    paused: bool = False  # the user's memory is paused: nothing of this turn was stored
    delivered: bool = False
    notes: tuple[str, ...] = ()  # short notes to show under the answer (the model saw no image)
    outcome: ClassVar[Outcome] = Outcome.ANSWERED
    error: ClassVar[None] = None
    refusal: ClassVar[None] = None


@dataclass(frozen=True, slots=True)
class Refused:
    """A limit: the user's rate or daily budget, or a reply queue too long to answer in time.
    Nothing of the turn was stored (or, once stored, it is not answered)."""

    refusal: Refusal
    outcome: ClassVar[Outcome] = Outcome.REFUSED
    text: ClassVar[str] = ""
    error: ClassVar[None] = None
    prompt: ClassVar[None] = None
    usage: ClassVar[None] = None


@dataclass(frozen=True, slots=True)
class Failed:
    """The model failed (or answered nothing); `text` is what it streamed before, if any."""

    error: LLMError
    text: str = ""
    prompt: Prompt | None = None
    usage: Usage | None = None
    paused: bool = False
    outcome: ClassVar[Outcome] = Outcome.FAILED
    refusal: ClassVar[None] = None


SKIPPED = frozenset({Outcome.DUPLICATE, Outcome.STOPPING, Outcome.ERASED, Outcome.DELETED})


@dataclass(frozen=True, slots=True)
class Skipped:
    """No answer to show, and `outcome` says why: a redelivered event (DUPLICATE), a stop
    (STOPPING), an erasure (ERASED) or a deletion (DELETED) while the turn waited or was
    answered. `prompt` and `usage` when the model had answered already."""

    outcome: Outcome
    prompt: Prompt | None = None
    usage: Usage | None = None
    text: ClassVar[str] = ""
    error: ClassVar[None] = None
    refusal: ClassVar[None] = None

    def __post_init__(self) -> None:
        if self.outcome not in SKIPPED:
            raise ValueError(f"{self.outcome} is not a reason to skip a turn")


ReplyResult = Answered | Refused | Failed | Skipped
"""What `MemoryEngine.reply` returns: how the turn ended."""


@dataclass(frozen=True, slots=True)
class DeletedMessage:
    """A stored message the user deleted: where the answers to it were shown in Discord,
    as (channel id, message id)."""

    answers_shown_as: tuple[tuple[int, int], ...] = ()


@dataclass(frozen=True, slots=True)
class Remembered:
    """What "Remember this" did: whether the message was stored now (False: it was already),
    the facts drawn from it (as stored, with their attribute and value), and why nothing was
    done, when nothing was (`refused`: a short sentence for the user)."""

    stored_now: bool = False
    facts: tuple[tuple[str, str], ...] = ()
    refused: str = ""
