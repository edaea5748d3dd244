"""What goes into the engine and what comes out of it: plain records, no behaviour."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from enum import Enum

from bot.memory.context import DEFAULT_VIEW, SessionReport
from bot.memory.prompt import Prompt
from bot.model.llm import LLMError, Usage
from bot.policy.access import ChannelView
from bot.policy.limits import Refusal
from storage.models import SessionKey

__all__ = [
    "DEFAULT_VIEW",
    "THINKING",
    "DeletedMessage",
    "DeliverCallback",
    "IncomingMessage",
    "Outcome",
    "ProgressCallback",
    "ReplyResult",
    "SessionReport",  # the context builder's, as the engine hands it out
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
DeliverCallback = Callable[["ReplyResult"], Awaitable[bool | Sequence[int]]]


@dataclass(frozen=True, slots=True)
class IncomingMessage:
    """A user's message as the engine needs it: ids from the Discord event, cleaned text."""

    key: SessionKey
    discord_id: int
    content: str
    author_name: str
    view: ChannelView = DEFAULT_VIEW  # this place's persona, model and memory setting


class Outcome(Enum):
    ANSWERED = "answered"
    DUPLICATE = "duplicate"  # already stored: a redelivered event, answered once already
    STOPPING = "stopping"  # the bot is shutting down and takes no new messages
    REFUSED = "refused"  # a limit: rate, daily budget, or the reply queue is full
    FAILED = "failed"
    ERASED = "erased"  # the user's memory was erased while the message waited or was answered
    DELETED = "deleted"  # the user deleted the message before its turn came


@dataclass(frozen=True, slots=True)
class ReplyResult:
    outcome: Outcome
    text: str = ""
    error: LLMError | None = None
    prompt: Prompt | None = None
    usage: Usage | None = None
    refusal: Refusal | None = None
    cut_at_limit: bool = False  # the model stopped at MAX_REPLY_TOKENS
    paused: bool = False  # the user's memory is paused: nothing of this turn was stored
    delivered: bool = False  # the `deliver` callback showed the answer


@dataclass(frozen=True, slots=True)
class DeletedMessage:
    """A stored message the user deleted: where the answers to it were shown in Discord,
    as (channel id, message id)."""

    answers_shown_as: tuple[tuple[int, int], ...] = ()
