"""Chat: messages addressed to the bot in, streamed replies out."""

from __future__ import annotations

import logging
import re
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import discord
from discord.ext import commands

from bot.memory import IncomingMessage, Outcome, ReplyResult
from bot.replies import StreamedReply
from bot.text import clean_text
from storage.errors import StorageError
from storage.models import SessionKey

if TYPE_CHECKING:
    from bot.client import MemoryBot

log = logging.getLogger(__name__)

_USER_MENTION = re.compile(r"<@!?(\d+)>")
_ROLE_MENTION = re.compile(r"<@&(\d+)>")
_CHANNEL_MENTION = re.compile(r"<#(\d+)>")
_CHAT_TYPES = (discord.MessageType.default, discord.MessageType.reply)

ATTACHMENT_MAX_BYTES = 100_000
TEXT_EXTENSIONS = frozenset(
    [
        ".txt",
        ".md",
        ".rst",
        ".py",
        ".js",
        ".ts",
        ".tsx",
        ".jsx",
        ".json",
        ".yaml",
        ".yml",
        ".toml",
        ".ini",
        ".cfg",
        ".csv",
        ".log",
        ".sql",
        ".sh",
        ".rs",
        ".go",
        ".java",
        ".kt",
        ".c",
        ".h",
        ".cpp",
        ".hpp",
        ".cs",
        ".rb",
        ".php",
        ".html",
        ".css",
        ".xml",
        ".swift",
        ".lua",
    ]
)
STORAGE_ERROR = "I couldn't save this (the database is unavailable). Please try again soon."
INTERNAL_ERROR = "Something went wrong on my side. Please try again."


class Chat(commands.Cog):
    def __init__(self, bot: MemoryBot) -> None:
        self.bot = bot

    @commands.Cog.listener()
    async def on_message(self, message: discord.Message) -> None:
        if not self.is_addressed(message):
            return
        text, unreadable = await self.model_text(message)
        if not text:
            await self._greet(message, unreadable)
            return
        incoming = IncomingMessage(
            key=SessionKey(
                message.guild.id if message.guild else None, message.channel.id, message.author.id
            ),
            discord_id=message.id,
            content=text,
            author_name=message.author.display_name,
        )
        reply = StreamedReply(message)
        try:
            result = await self.bot.engine.reply(incoming, reply.progress)
        except StorageError as error:
            # Locked past the busy timeout, disk full, read-only, connection lost...
            log.error("Database error while handling message %s: %s", message.id, error)
            await reply.finish(with_notice(reply.text, STORAGE_ERROR))
            return
        except Exception:
            log.exception("Failed to handle message %s", message.id)
            await reply.finish(with_notice(reply.text, INTERNAL_ERROR))
            return
        await self._show(reply, result)

    @commands.Cog.listener()
    async def on_raw_message_edit(self, payload: discord.RawMessageUpdateEvent) -> None:
        message = payload.message
        if "content" not in payload.data or not self.is_addressed(message):
            return  # only messages that were for the bot can be stored (and read attachments)
        # Only messages already stored change; unknown ids are ignored by the engine.
        text, _ = await self.model_text(message)
        await self.bot.engine.message_edited(message.id, text)

    @commands.Cog.listener()
    async def on_raw_message_delete(self, payload: discord.RawMessageDeleteEvent) -> None:
        await self.bot.engine.message_deleted(payload.message_id)

    @commands.Cog.listener()
    async def on_raw_bulk_message_delete(self, payload: discord.RawBulkMessageDeleteEvent) -> None:
        for message_id in payload.message_ids:
            await self.bot.engine.message_deleted(message_id)

    def is_addressed(self, message: discord.Message) -> bool:
        """A DM, a mention of the bot's user or managed role, or a reply to the bot."""
        me = self.bot.user
        if me is None or message.author.bot or message.webhook_id is not None:
            return False
        if message.type not in _CHAT_TYPES:
            return False
        if message.guild is None:
            return True
        if me.id in message.raw_mentions:  # @everyone/@here alone do not count
            return True
        own_role = message.guild.self_role
        if own_role is not None and own_role.id in message.raw_role_mentions:
            return True
        return self._replies_to_me(message, me.id)

    def _replies_to_me(self, message: discord.Message, my_id: int) -> bool:
        reference = message.reference
        if reference is None or reference.message_id is None:
            return False
        replied = reference.resolved  # Discord includes the replied-to message in the event
        if not isinstance(replied, discord.Message):
            replied = discord.utils.get(self.bot.cached_messages, id=reference.message_id)
        return isinstance(replied, discord.Message) and replied.author.id == my_id

    async def model_text(self, message: discord.Message) -> tuple[str, list[str]]:
        """The text the model sees: the bot's mention removed, other mentions as names, text
        attachments appended. Also returns the names of attachments it could not read.

        The text is empty when the user said nothing readable (only the mention, or only an
        image): then the bot answers directly and stores nothing.
        """
        text = self._resolve_mentions(message)
        unreadable = []
        for attachment in message.attachments:
            body = await read_text_attachment(attachment)
            if body is None:
                unreadable.append(attachment.filename)
            else:
                name = attachment.filename
                text += f"\n\n--- {name} ---\n{body}\n--- end of {name} ---"
        text = clean_text(text).strip()
        if text:
            # Tell the model what it cannot see, so it does not pretend to.
            text += "".join(
                f"\n[attached file {name}: not readable as text]" for name in unreadable
            )
        return text, unreadable

    def _resolve_mentions(self, message: discord.Message) -> str:
        me = self.bot.user
        own_role = message.guild.self_role if message.guild else None
        users = {user.id: user for user in message.mentions}

        def user_name(match: re.Match[str]) -> str:
            user_id = int(match.group(1))
            if me is not None and user_id == me.id:
                return ""
            user = users.get(user_id)
            return f"@{user.display_name}" if user else "@unknown-user"

        def role_name(match: re.Match[str]) -> str:
            role_id = int(match.group(1))
            if own_role is not None and role_id == own_role.id:
                return ""
            role = message.guild.get_role(role_id) if message.guild else None
            return f"@{role.name}" if role else "@unknown-role"

        def channel_name(match: re.Match[str]) -> str:
            channel = self.bot.get_channel(int(match.group(1)))
            return f"#{getattr(channel, 'name', 'unknown-channel')}"

        text = _USER_MENTION.sub(user_name, message.content)
        text = _ROLE_MENTION.sub(role_name, text)
        return _CHANNEL_MENTION.sub(channel_name, text)

    async def _greet(self, message: discord.Message, unreadable: list[str]) -> None:
        reply = StreamedReply(message)
        if unreadable:
            await reply.finish(
                f"I can only read text, and text files up to {ATTACHMENT_MAX_BYTES // 1000} KB;"
                f" I couldn't read {', '.join(unreadable)}."
            )
            return
        await reply.finish(f"Hi {message.author.display_name}! What would you like to talk about?")

    async def _show(self, reply: StreamedReply, result: ReplyResult) -> None:
        if result.outcome in (Outcome.DUPLICATE, Outcome.STOPPING):
            await reply.abandon()
            return
        if result.outcome is Outcome.ANSWERED:
            note = (
                "\n\n-# (the answer reached the reply length limit)" if result.cut_at_limit else ""
            )
            await reply.finish(result.text + note)
            return
        if result.refusal is not None:
            when = datetime.fromtimestamp(result.refusal.resets_at, tz=UTC)
            await reply.finish(
                f"⏳ {result.refusal.message} Try again {discord.utils.format_dt(when, 'R')}."
            )
            return
        assert result.error is not None
        # What arrived is shown, marked as interrupted; it was not stored as an answer.
        await reply.finish(with_notice(result.text, result.error.user_message))


def with_notice(shown: str, notice: str) -> str:
    """Keep what the user already sees and add the notice under it."""
    return f"{shown}\n\n⚠️ *{notice}*" if shown.strip() else f"⚠️ {notice}"


async def read_text_attachment(attachment: discord.Attachment) -> str | None:
    """The text of a small text file, or None when it is not one (images, binaries, big files)."""
    suffix = (
        "." + attachment.filename.rsplit(".", 1)[-1].lower() if "." in attachment.filename else ""
    )
    content_type = (attachment.content_type or "").split(";")[0]
    is_text = content_type.startswith("text/") or content_type == "application/json"
    if not (is_text or suffix in TEXT_EXTENSIONS) or attachment.size > ATTACHMENT_MAX_BYTES:
        return None
    try:
        data = await attachment.read()
    except discord.HTTPException:
        log.warning("Could not download attachment %s", attachment.id)
        return None
    if b"\x00" in data:
        return None  # binary after all
    return data.decode("utf-8", errors="replace")


async def setup(bot: MemoryBot) -> None:
    await bot.add_cog(Chat(bot))
