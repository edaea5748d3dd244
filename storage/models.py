"""Small frozen records returned by the repositories; nothing outside storage/ sees a cursor."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Role = Literal["user", "assistant"]

DM_SPACE = 0
"""The space id of facts learned in direct messages (a server's space id is its guild id)."""


def space_of(guild_id: int | None) -> int:
    """Facts are scoped to a space: the server, or all DMs together."""
    return guild_id if guild_id is not None else DM_SPACE


@dataclass(frozen=True, slots=True)
class SessionKey:
    """Identifies a conversation: one user in one channel (thread or DM included)."""

    guild_id: int | None
    channel_id: int
    user_id: int

    @property
    def space_id(self) -> int:
        return space_of(self.guild_id)


@dataclass(frozen=True, slots=True)
class Session:
    id: int
    guild_id: int | None
    channel_id: int
    user_id: int
    summary: str
    summary_tokens: int
    summary_updated_at: float | None
    summarized_through: int
    facts_through: int
    # Background work's fence when this record was read: erasures and edits (storage.erasures).
    fence: int = 0

    @property
    def key(self) -> SessionKey:
        return SessionKey(self.guild_id, self.channel_id, self.user_id)


@dataclass(frozen=True, slots=True)
class StoredMessage:
    id: int
    session_id: int
    discord_id: int | None
    guild_id: int | None
    channel_id: int
    user_id: int
    role: Role
    content: str
    tokens: int
    created_at: float
    # The place whose audience heard it (docs/privacy.md, "Who hears what"): the channel, a
    # public thread's parent, a private thread itself. Rows older than migration 0015: the
    # channel.
    place_id: int | None = None

    @property
    def place(self) -> int:
        return self.place_id if self.place_id is not None else self.channel_id


@dataclass(frozen=True, slots=True)
class QueuedMessage:
    """A message that waited for its turn, not stored yet (ids only: see storage/queued.py)."""

    discord_id: int
    guild_id: int | None
    channel_id: int
    user_id: int
    fence: int
    arrived_at: float

    @property
    def key(self) -> SessionKey:
        return SessionKey(self.guild_id, self.channel_id, self.user_id)


@dataclass(frozen=True, slots=True)
class FactSource:
    message_id: int
    discord_message_id: int | None
    channel_id: int
    guild_id: int | None


@dataclass(frozen=True, slots=True)
class Fact:
    id: int
    user_id: int
    space_id: int
    attribute: str
    value: str
    tokens: int
    created_at: float
    valid_until: float | None
    place_id: int = 0  # where its sources were said (see StoredMessage.place_id)


@dataclass(frozen=True, slots=True)
class NewFact:
    """A validated fact ready to store, with the stored messages it was learned from."""

    attribute: str
    value: str
    tokens: int
    sources: tuple[StoredMessage, ...]


@dataclass(frozen=True, slots=True)
class SessionStats:
    messages: int
    unsummarized_messages: int
    unsummarized_tokens: int
    unread_user_messages: int
