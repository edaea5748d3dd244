"""Restart recovery, in one place: once connected, answer what this process's shards accepted
before a stop (of this process, or of the one that ran these shards before) and never
answered.

Two kinds are left: messages stored but not answered (the process died between storing and
answering), and messages still waiting behind the same person's previous one (kept as ids in
`queued_messages`). Each is fetched again from Discord, as it is now: a message deleted
meanwhile is forgotten as a deletion would be, an edited one is answered as edited, and one
whose answer the dead process had already delivered is settled without a second answer.
Conversations are resumed at once, each in its own order (the stored messages first).

What a turn is stays with the chat cog (`Conversations`); this module only finds, fetches
and hands over.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Protocol

import discord

from bot.engine.engine import MemoryEngine
from storage.errors import StorageError
from storage.models import QueuedMessage, StoredMessage

log = logging.getLogger(__name__)

HISTORY_LIMIT = 100  # messages after the one to answer in which its answer is looked for

Left = StoredMessage | QueuedMessage


class Conversations(Protocol):
    """What recovery hands a fetched message to (the chat cog)."""

    async def on_message(self, message: discord.Message) -> None:
        """A message handled as it arrives (one that waited for its turn)."""

    async def answer_stored(
        self, message: discord.Message, stored: StoredMessage, thread: discord.Thread | None
    ) -> None:
        """Answer a message already stored (access is decided again, now)."""

    async def forget_deleted(self, message_id: int) -> None:
        """A message deleted in Discord: forget it and its answers."""


class Connected(Protocol):
    """What recovery needs of the bot (`bot.client.bot.MemoryBot`)."""

    @property
    def engine(self) -> MemoryEngine: ...

    @property
    def user(self) -> discord.ClientUser | None: ...

    async def wait_until_ready(self) -> None: ...

    def owns(self, guild_id: int | None) -> bool: ...

    def get_channel(self, id: int, /) -> Any: ...

    async def fetch_channel(self, channel_id: int, /) -> Any: ...


class RestartRecovery:
    def __init__(self, bot: Connected, conversations: Conversations) -> None:
        self._bot = bot
        self._conversations = conversations

    async def run(self) -> None:
        """Once connected: answer what was left, each conversation in order."""
        await self._bot.wait_until_ready()
        left = await self._left()
        if not left:
            return
        log.info("Answering %d messages left unanswered by a stop", len(left))
        conversations: dict[tuple[int, int], list[Left]] = {}
        for message in left:
            conversations.setdefault((message.channel_id, message.user_id), []).append(message)
        await asyncio.gather(*(self._resume(messages) for messages in conversations.values()))

    async def _left(self) -> list[Left]:
        """This process's shards' unanswered messages: the stored ones, then the queued ones
        (a queued message already stored was stored just before the stop: answered as
        stored)."""
        engine, owns = self._bot.engine, self._bot.owns
        try:
            stored = [m for m in await engine.awaiting_reply() if owns(m.guild_id)]
            queued = [m for m in await engine.left_in_queue() if owns(m.guild_id)]
            stored_ids = {m.discord_id for m in stored}
            for known in [m for m in queued if m.discord_id in stored_ids]:
                await engine.forget_queued(known.discord_id)
                queued.remove(known)
        except StorageError as error:
            log.warning("Could not look for unanswered messages: %s", error)
            return []
        return [*stored, *queued]

    async def _resume(self, messages: list[Left]) -> None:
        for message in messages:
            try:
                if isinstance(message, QueuedMessage):
                    await self._answer_queued(message)
                else:
                    await self._answer_stored(message)
            except Exception:
                log.exception("Could not answer message %s after the restart", message.discord_id)

    async def _answer_stored(self, stored: StoredMessage) -> None:
        """A message a process stored but died before answering."""
        channel = self._bot.get_channel(stored.channel_id)
        # Thread-per-conversation: the thread has its first message's id, which is in the parent.
        opened_thread = isinstance(channel, discord.Thread) and channel.id == stored.discord_id
        source = channel.parent if opened_thread else channel
        if not isinstance(source, discord.abc.Messageable) or stored.discord_id is None:
            return
        try:
            message = await source.fetch_message(stored.discord_id)
        except discord.NotFound:  # deleted meanwhile: forgotten as a deletion would be
            await self._conversations.forget_deleted(stored.discord_id)
            return
        except discord.HTTPException as error:
            log.warning("Could not fetch message %s to answer it: %s", stored.discord_id, error)
            return
        if await self._answered_on_discord(channel, message):
            # The process that died had delivered the answer, not yet recorded it.
            await self._bot.engine.settle(stored)
            return
        thread = channel if opened_thread and isinstance(channel, discord.Thread) else None
        await self._conversations.answer_stored(message, stored, thread)

    async def _answer_queued(self, queued: QueuedMessage) -> None:
        """A message that was waiting for its turn: handled as it arrives."""
        bot = self._bot
        try:
            channel = bot.get_channel(queued.channel_id) or await bot.fetch_channel(
                queued.channel_id
            )
            if isinstance(channel, discord.abc.Messageable):
                message = await channel.fetch_message(queued.discord_id)
                await self._conversations.on_message(message)
        except discord.NotFound:
            pass  # deleted meanwhile (or its channel): nothing to answer
        except discord.HTTPException as error:
            log.warning("Could not fetch message %s to answer it: %s", queued.discord_id, error)
            return  # kept: a later restart may reach it
        if bot.engine.accepting:  # not stopping again meanwhile: its turn has ended
            await bot.engine.forget_queued(queued.discord_id)

    async def _answered_on_discord(self, channel: Any, message: discord.Message) -> bool:
        """Whether a reply of this bot to `message` is already in the channel."""
        if not isinstance(channel, discord.abc.Messageable):
            return False
        me = self._bot.user
        try:
            async for later in channel.history(
                after=message, limit=HISTORY_LIMIT, oldest_first=True
            ):
                reference = later.reference
                if (
                    me is not None
                    and later.author.id == me.id
                    and reference is not None
                    and reference.message_id == message.id
                ):
                    return True
        except discord.HTTPException as error:
            log.warning("Could not read the channel after message %s: %s", message.id, error)
        return False
