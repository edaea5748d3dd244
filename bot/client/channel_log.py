"""The channel context's lines: a bounded buffer per channel, in this process's memory only.

Filled from gateway events (every message a person writes in a channel where channel context
is on, addressed to Mnemo or not, and Mnemo's own messages there), changed by edits (the new
text only, marked edited) and emptied of a message its author deleted. A buffer this process has
not filled since it started (after a restart, say) reads the channel's recent history once, in
one REST call, the first time a prompt needs it. Nothing is written to disk; a buffer holds at
most `LINES_PER_CHANNEL` lines of at most `LINE_MAX_CHARS` characters, none older than
`LINE_MAX_AGE_SECONDS`, and the least recently used channels are dropped past `CHANNELS_MAX`.

What a prompt may use of the lines (no blocked author, nothing erased, nothing the speaker's
window holds) is decided by the engine, when the prompt is built: `bot.memory.channel`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence

import discord

from bot.memory.channel import LINE_MAX_AGE_SECONDS, LINE_MAX_CHARS, ChannelLine

log = logging.getLogger(__name__)

LINES_PER_CHANNEL = 100
CHANNELS_MAX = 1000
_CHAT_TYPES = (discord.MessageType.default, discord.MessageType.reply)


class ChannelBuffer:
    """One channel's newest lines, by message id, oldest first."""

    def __init__(self, channel_id: int) -> None:
        self.channel_id = channel_id
        self.lines: OrderedDict[int, ChannelLine] = OrderedDict()
        self.backfilled = False
        self._backfill: asyncio.Lock = asyncio.Lock()

    def add(self, line: ChannelLine) -> None:
        newest = next(reversed(self.lines), 0)
        self.lines[line.message_id] = line
        if line.message_id < newest:
            # Out of order (history read after newer events): keep them sorted by id.
            self.lines = OrderedDict(sorted(self.lines.items()))
        while len(self.lines) > LINES_PER_CHANNEL:
            self.lines.popitem(last=False)

    def size_bytes(self) -> int:
        """About what the buffer holds in memory (its lines' text and names, and their
        records), for the benchmark."""
        per_line = 200  # the record, its key and the dict's slot
        return sum(
            per_line + len(line.text.encode()) + len(line.author_name.encode())
            for line in self.lines.values()
        )


class ChannelLog:
    """Every channel's buffer, least recently used dropped first."""

    def __init__(
        self, my_id: Callable[[], int | None] = lambda: None, *, channels_max: int = CHANNELS_MAX
    ) -> None:
        self._buffers: OrderedDict[int, ChannelBuffer] = OrderedDict()
        self._channels_max = channels_max
        self._my_id = my_id  # the bot's user id, once logged in

    def __len__(self) -> int:
        return len(self._buffers)

    def buffer(self, channel_id: int) -> ChannelBuffer | None:
        return self._buffers.get(channel_id)

    # -- gateway events -------------------------------------------------------------------

    def heard(self, message: discord.Message) -> None:
        """A person's message in a channel where channel context is on (the caller checked)."""
        line = self._line(message)
        if line is not None:
            self._open(message.channel.id).add(line)

    def heard_mine(self, message: discord.Message) -> None:
        """One of Mnemo's own messages: kept where a buffer is open (channel context is on)."""
        buffer = self._buffers.get(message.channel.id)
        if buffer is not None and (line := self._line(message, mine=True)) is not None:
            buffer.add(line)

    def edited(self, message: discord.Message) -> None:
        """A message's new text replaces the old one (marked edited, but for Mnemo's own
        messages: it edits them while an answer streams)."""
        buffer = self._buffers.get(message.channel.id)
        if buffer is None or message.id not in buffer.lines:
            return
        old = buffer.lines[message.id]
        line = self._line(message, mine=old.mine)
        if line is None:
            del buffer.lines[message.id]
            return
        buffer.lines[message.id] = ChannelLine(
            line.message_id,
            line.author_id,
            line.author_name,
            line.text,
            line.created_at,
            edited=not old.mine and (line.edited or old.edited or line.text != old.text),
            mine=old.mine,
            reply_to=old.reply_to,
        )

    def deleted(self, message_ids: Sequence[int], channel_id: int | None = None) -> None:
        """Deleted in Discord: gone from the buffer."""
        buffers = (
            [self._buffers[channel_id]]
            if channel_id is not None and channel_id in self._buffers
            else list(self._buffers.values())
        )
        for buffer in buffers:
            for message_id in message_ids:
                buffer.lines.pop(message_id, None)

    # -- what a prompt reads -------------------------------------------------------------

    def source(self, channel: discord.abc.Messageable) -> ChannelSource:
        """The channel's lines as the engine reads them, when it builds the prompt."""
        return ChannelSource(self, channel)

    async def lines(self, channel: discord.abc.Messageable) -> list[ChannelLine]:
        channel_id = getattr(channel, "id", 0)
        buffer = self._open(channel_id)
        if not buffer.backfilled:
            await self._read_history(buffer, channel)
        oldest = time.time() - LINE_MAX_AGE_SECONDS
        for message_id, line in list(buffer.lines.items()):
            if line.created_at >= oldest:
                break
            del buffer.lines[message_id]
        return list(buffer.lines.values())

    async def _read_history(self, buffer: ChannelBuffer, channel: discord.abc.Messageable) -> None:
        """Once per buffer: the channel's recent messages, in one REST call."""
        async with buffer._backfill:
            if buffer.backfilled:
                return
            try:
                async for message in channel.history(limit=LINES_PER_CHANNEL):
                    mine = message.author.id == self._my_id()
                    if message.id in buffer.lines or not (mine or _from_a_person(message)):
                        continue
                    line = self._line(message, mine=mine)
                    if line is not None:
                        buffer.add(line)
            except discord.HTTPException as error:
                log.warning(
                    "Could not read the history of channel %s: %s", buffer.channel_id, error
                )
            buffer.backfilled = True  # once: a channel the bot cannot read stays as heard

    def _open(self, channel_id: int) -> ChannelBuffer:
        buffer = self._buffers.get(channel_id)
        if buffer is None:
            buffer = self._buffers[channel_id] = ChannelBuffer(channel_id)
            while len(self._buffers) > self._channels_max:
                self._buffers.popitem(last=False)
        else:
            self._buffers.move_to_end(channel_id)
        return buffer

    @staticmethod
    def _line(message: discord.Message, *, mine: bool = False) -> ChannelLine | None:
        """The message as a line; None when there is no text the bot can read (without the
        Message Content intent, messages that do not mention Mnemo arrive empty)."""
        text = message.clean_content.strip()
        if not text:
            return None
        reference = message.reference
        return ChannelLine(
            message.id,
            message.author.id,
            message.author.display_name,
            text[:LINE_MAX_CHARS],
            message.created_at.timestamp(),
            edited=message.edited_at is not None and not mine,
            mine=mine,
            reply_to=reference.message_id if reference is not None else None,
        )


class ChannelSource:
    """One channel's lines for one prompt (`bot.memory.channel.ChannelSource`)."""

    def __init__(self, log: ChannelLog, channel: discord.abc.Messageable) -> None:
        self._log = log
        self._channel = channel

    async def lines(self) -> Sequence[ChannelLine]:
        return await self._log.lines(self._channel)


def _from_a_person(message: discord.Message) -> bool:
    """Not a bot, a webhook or a system message: bots' and webhooks' lines are left out."""
    return not message.author.bot and message.webhook_id is None and message.type in _CHAT_TYPES
