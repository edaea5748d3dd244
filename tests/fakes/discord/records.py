"""What the fake keeps and hands to tests: users, option values, the bot's messages, the REST
requests it received, the interactions it dispatched."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from tests.fakes.discord.protocol import FLAG_EPHEMERAL, FLAG_LOADING, JSON, _now_iso

if TYPE_CHECKING:
    from tests.fakes.discord.server import FakeDiscord


@dataclass(frozen=True)
class ChannelRef:
    """A channel (or category, or thread) as a slash command option value."""

    id: int


@dataclass(frozen=True)
class RoleRef:
    """A role as a slash command option value."""

    id: int


@dataclass(frozen=True)
class FakeUser:
    """A Discord user the tests act as."""

    id: int
    username: str
    global_name: str | None
    bot: bool = False

    @property
    def mention(self) -> str:
        return f"<@{self.id}>"

    def payload(self) -> JSON:
        return {
            "id": str(self.id),
            "username": self.username,
            "global_name": self.global_name,
            "discriminator": "0",
            "avatar": None,
            "bot": self.bot,
            "system": False,
            "public_flags": 0,
        }


@dataclass
class StoredFile:
    """A file uploaded to the fake (by the bot) or attached to a user message."""

    id: int
    filename: str
    data: bytes
    content_type: str


@dataclass(eq=False)
class BotMessage:
    """A message the bot created through REST (a channel message or an interaction message).

    ``history`` holds every content the message had, the first one included; ``edits`` is
    ``history[1:]``. ``bodies`` are the JSON bodies the bot sent for it (create, then each edit).
    """

    id: int
    channel_id: int
    guild_id: int | None
    content: str = ""
    flags: int = 0
    allowed_mentions: JSON | None = None
    message_reference: JSON | None = None
    components: list[JSON] = field(default_factory=list)
    embeds: list[JSON] = field(default_factory=list)
    files: list[StoredFile] = field(default_factory=list)
    history: list[str] = field(default_factory=list)
    bodies: list[JSON] = field(default_factory=list)
    deleted: bool = False
    interaction_id: int | None = None
    timestamp: str = field(default_factory=_now_iso)
    edited_timestamp: str | None = None
    created_at: float = field(default_factory=time.monotonic)
    updated_at: float = field(default_factory=time.monotonic)

    @property
    def edits(self) -> list[str]:
        return self.history[1:]

    @property
    def attachments(self) -> list[tuple[str, bytes]]:
        return [(f.filename, f.data) for f in self.files]

    @property
    def reply_to_id(self) -> int | None:
        """The id of the message this one replies to (``message_reference`` as the bot sent it
        may carry the id as an int or a str)."""
        if not self.message_reference or self.message_reference.get("message_id") is None:
            return None
        return int(self.message_reference["message_id"])

    @property
    def ephemeral(self) -> bool:
        return bool(self.flags & FLAG_EPHEMERAL)

    @property
    def loading(self) -> bool:
        """A deferred ("thinking…") interaction response not filled in yet."""
        return bool(self.flags & FLAG_LOADING)

    @property
    def custom_ids(self) -> list[str]:
        """custom_id of every component, nested ones included."""
        found: list[str] = []
        stack = list(self.components)
        while stack:
            component = stack.pop(0)
            if "custom_id" in component:
                found.append(component["custom_id"])
            stack.extend(component.get("components", []))
        return found

    def component(self, custom_id: str) -> JSON | None:
        stack = list(self.components)
        while stack:
            component = stack.pop(0)
            if component.get("custom_id") == custom_id:
                return component
            stack.extend(component.get("components", []))
        return None


@dataclass
class RecordedRequest:
    """One REST request as the fake received it (``path`` is relative to ``/api/v10``)."""

    method: str
    path: str
    query: dict[str, str]
    json: Any
    files: list[tuple[str, bytes]]
    headers: dict[str, str]
    time: float
    status: int = 0
    injected: bool = False


@dataclass(eq=False)
class FakeInteraction:
    """An interaction the fake dispatched, and everything the bot answered to it."""

    id: int
    token: str
    type: int
    user: FakeUser
    channel_id: int
    guild_id: int | None
    payload: JSON
    fake: FakeDiscord = field(repr=False)
    message: BotMessage | None = None  # the message a component belongs to
    created_at: float = field(default_factory=time.monotonic)
    responses: list[JSON] = field(default_factory=list)  # callback bodies (normally one)
    original: BotMessage | None = None
    followups: list[BotMessage] = field(default_factory=list)
    edits: list[JSON] = field(default_factory=list)  # PATCH bodies of @original
    expired: bool = False

    @property
    def acknowledged(self) -> bool:
        return bool(self.responses)

    @property
    def flags(self) -> int:
        if self.original is not None:
            return self.original.flags
        if self.responses:
            return int((self.responses[0].get("data") or {}).get("flags") or 0)
        return 0

    @property
    def ephemeral(self) -> bool:
        return bool(self.flags & FLAG_EPHEMERAL)

    @property
    def messages(self) -> list[BotMessage]:
        first = [self.original] if self.original is not None else []
        return first + self.followups

    @property
    def attachments(self) -> list[tuple[str, bytes]]:
        return [item for message in self.messages for item in message.attachments]

    @property
    def choices(self) -> list[JSON] | None:
        """The autocomplete choices, once the bot answered an autocomplete interaction."""
        for body in self.responses:
            if body.get("type") == 8:
                return list((body.get("data") or {}).get("choices", []))
        return None

    async def response(self, timeout: float = 5.0) -> JSON:  # noqa: ASYNC109
        """The first callback body the bot sent: ``{"type": …, "data": …}``."""
        return await self.fake.wait_for(
            lambda: self.responses[0] if self.responses else None,
            timeout,
            f"a response to interaction {self.id}",
        )

    async def wait_text(self, timeout: float = 5.0) -> str:  # noqa: ASYNC109
        """The first non-empty text the user sees: the original response or a follow-up."""
        return await self.fake.wait_for(self._visible_text, timeout, f"text for {self.id}")

    def _visible_text(self) -> str | None:
        for message in self.messages:
            if not message.loading and message.content:
                return message.content
        return None
