"""Chat: messages addressed to the bot in, streamed replies out."""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, assert_never

import discord
from discord.ext import commands

from bot.client.attachments import ATTACHMENT_MAX_BYTES, ReadAttachments, read_attachments
from bot.client.places import place_of_message
from bot.client.replies import StreamedReply, take_down
from bot.client.splitter import append_outside_code
from bot.engine.records import (
    Answered,
    Failed,
    IncomingMessage,
    Outcome,
    Refused,
    ReplyResult,
    Skipped,
)
from bot.model.media import image_type
from bot.model.text import cap_stored, clean_text
from bot.policy.access import ChannelView, Decision
from storage.errors import StorageError
from storage.models import SessionKey, StoredMessage

if TYPE_CHECKING:
    from bot.client.bot import MemoryBot

log = logging.getLogger(__name__)

_USER_MENTION = re.compile(r"<@!?(\d+)>")
_ROLE_MENTION = re.compile(r"<@&(\d+)>")
_CHANNEL_MENTION = re.compile(r"<#(\d+)>")
_CHAT_TYPES = (discord.MessageType.default, discord.MessageType.reply)

STORAGE_ERROR = "I couldn't save this (the database is unavailable). Please try again soon."
INTERNAL_ERROR = "Something went wrong on my side. Please try again."
NOT_HERE = "I'm not available to you here."
NO_DMS = "I don't answer direct messages. Talk to me in a server we share."
PAUSED_NOTE = "\n-# memory paused"
NOTICE_INTERVAL_SECONDS = 600.0  # one notice per person and channel per 10 minutes
ERASED_NOTICE = (
    "🗑️ Your memory was erased while I was working on this message, so I dropped my answer."
)


class Chat(commands.Cog):
    def __init__(self, bot: MemoryBot) -> None:
        self.bot = bot
        self._noticed: dict[tuple[int, int], float] = {}

    async def cog_load(self) -> None:
        self.bot.conversations = self  # what restart recovery hands fetched messages to

    @commands.Cog.listener()
    async def on_message(self, message: discord.Message) -> None:
        if not self._from_a_person(message):
            if self.bot.user is not None and message.author.id == self.bot.user.id:
                self.bot.channel_log.heard_mine(message)  # where channel context is on
            return
        # Access is decided before anything is read, stored or sent to a model.
        decision, view = await self.check(message)
        if decision.allowed and self._channel_context(message, view):
            self.bot.channel_log.heard(message)  # addressed to Mnemo or not
        mentioned = self.is_addressed(message)
        if not (mentioned or self._always_here(message, view)):
            return
        if not decision.allowed:
            await self._refuse(message, decision)
            return
        if not mentioned and _only_images(message):
            return  # in an always-answer channel, an image with no words is not a question
        read = await self.model_text(message, images=True)
        if not read.text:
            if mentioned:  # in an always-answer channel, an unreadable file alone gets none
                await self._greet(message, read.unreadable)
            return
        thread = await self._open_thread(message, read.text) if mentioned and view.threads else None
        await self._converse(message, read.text, view, thread, read=read)

    async def answer_stored(
        self, message: discord.Message, stored: StoredMessage, thread: discord.Thread | None
    ) -> None:
        """Answer a message stored before a stop (restart recovery, bot/client/resume.py):
        access is decided again, as it is now."""
        decision, view = await self.check(message)
        if decision.allowed:
            await self._converse(message, stored.content, view, thread, stored=stored)

    async def forget_deleted(self, message_id: int) -> None:
        await self._message_deleted(message_id)

    async def check(self, message: discord.Message) -> tuple[Decision, ChannelView]:
        """Access and the place's view; a DM under an allow-list is checked against the
        author's memberships of the allowed servers (looked up over REST, cached)."""
        place = await self.bot.members.with_memberships(
            place_of_message(message, self.bot.public_places)
        )
        return await self.bot.engine.controls.check(place)

    async def _converse(
        self,
        message: discord.Message,
        text: str,
        view: ChannelView,
        thread: discord.Thread | None,
        *,
        stored: StoredMessage | None = None,
        read: ReadAttachments | None = None,
    ) -> None:
        """One turn: the engine's answer streamed into Discord, in the thread if one is open.
        `read`: the attachments as read now (a resumed turn is answered from its stored text)."""
        channel = thread or message.channel
        notes = tuple(read.notes) if read is not None else ()
        incoming = IncomingMessage(
            key=SessionKey(
                message.guild.id if message.guild else None, channel.id, message.author.id
            ),
            discord_id=message.id,
            content=text,
            author_name=message.author.display_name,
            view=view,
            channel=self.bot.channel_log.source(channel)
            if self._channel_context(message, view)
            else None,
            images=tuple(read.images) if read is not None else (),
        )
        # The reply's tasks (typing, rendering) end with this block, even when the handler is
        # cancelled at shutdown or fails.
        async with StreamedReply(message, channel=thread) as reply:

            async def deliver(result: Answered) -> bool | list[int]:
                await reply.finish(answer_text(result, notes))
                return reply.message_ids if reply.delivered else False

            try:
                result = await self.bot.engine.reply(
                    incoming, reply.progress, deliver, stored=stored
                )
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

    def _channel_context(self, message: discord.Message, view: ChannelView) -> bool:
        """Whether prompts here hold the channel's recent messages (servers only)."""
        return message.guild is not None and self.bot.engine.controls.channel_context_for(view)

    @commands.Cog.listener()
    async def on_raw_message_edit(self, payload: discord.RawMessageUpdateEvent) -> None:
        message = payload.message
        if "content" in payload.data:
            self.bot.channel_log.edited(message)  # the new text only, marked edited
        if "content" not in payload.data or message.author.bot:
            return
        # Whether or not the new text still addresses the bot, a stored (or waiting) message
        # takes it; a message never stored is not read, and its attachments not downloaded.
        if not await self.bot.engine.knows(message.id):
            return
        # The same gate as a new message: access (the operator's and the server's lists, the
        # block lists, DMs' memberships) here; the pause and the per-minute rate in the engine.
        decision, _ = await self.check(message)
        if not decision.allowed:
            log.debug("Edit of message %s not taken: %s", message.id, decision.reason)
            return
        read = await self.model_text(message, images=False)
        if read.text:
            await self.bot.engine.message_edited(
                message.id, read.text, user_id=message.author.id, admit=True
            )

    @commands.Cog.listener()
    async def on_raw_message_delete(self, payload: discord.RawMessageDeleteEvent) -> None:
        self.bot.channel_log.deleted([payload.message_id], payload.channel_id)
        await self._message_deleted(payload.message_id)

    @commands.Cog.listener()
    async def on_raw_bulk_message_delete(self, payload: discord.RawBulkMessageDeleteEvent) -> None:
        self.bot.channel_log.deleted(list(payload.message_ids), payload.channel_id)
        for message_id in payload.message_ids:
            await self._message_deleted(message_id)

    async def _message_deleted(self, message_id: int) -> None:
        """Forget a deleted message and the answers to it, and take those answers down in
        Discord too: they may repeat what the user deleted."""
        deleted = await self.bot.engine.message_deleted(message_id)
        if deleted is not None:
            await take_down(self.bot, deleted)

    def _from_a_person(self, message: discord.Message) -> bool:
        """Not a bot, a webhook, the bot itself, or a system message."""
        if self.bot.user is None or message.author.bot or message.webhook_id is not None:
            return False
        return message.type in _CHAT_TYPES

    def _always_here(self, message: discord.Message, view: ChannelView) -> bool:
        """Every message is for the bot in an always-answer channel, and in a thread the bot
        opened for a conversation. Both need the message text, so the Message Content intent."""
        if message.guild is None or not self.bot.settings.message_content_intent:
            return False
        if view.answer_mode == "always":
            return True
        me = self.bot.user
        channel = message.channel
        return isinstance(channel, discord.Thread) and me is not None and channel.owner_id == me.id

    async def _refuse(self, message: discord.Message, decision: Decision) -> None:
        """Silence, or a short notice at most every NOTICE_INTERVAL_SECONDS per person."""
        log.debug("Not answering message %s: %s", message.id, decision.reason)
        if not decision.notice:
            return
        key = (message.channel.id, message.author.id)
        now = time.monotonic()
        if self._noticed.get(key, float("-inf")) > now - NOTICE_INTERVAL_SECONDS:
            return
        if len(self._noticed) > 10_000:
            self._noticed.clear()
        self._noticed[key] = now
        notice = NO_DMS if message.guild is None and not self.bot.settings.allow_dms else NOT_HERE
        await StreamedReply(message).finish(notice)

    async def _open_thread(self, message: discord.Message, text: str) -> discord.Thread | None:
        """Thread-per-conversation: a mention in a channel opens a thread from the message,
        and the conversation (its own session) goes on there."""
        if message.guild is None or not isinstance(message.channel, discord.TextChannel):
            return None  # already in a thread, or a channel type without threads
        name = " ".join(text.split())[:80] or f"Mnemo and {message.author.display_name}"
        try:
            return await message.create_thread(name=name, auto_archive_duration=1440)
        except discord.HTTPException as error:
            log.warning("Could not open a thread in %s: %s", message.channel.id, error)
            return None  # answer in the channel instead

    def is_addressed(self, message: discord.Message) -> bool:
        """A DM, a mention of the bot's user or managed role, or a reply to the bot."""
        me = self.bot.user
        if me is None or not self._from_a_person(message):
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

    async def model_text(self, message: discord.Message, *, images: bool) -> ReadAttachments:
        """The text the model sees: the bot's mention removed, other mentions as names, text
        files and PDFs appended, a record of each image, all within MAX_STORED_MESSAGE_CHARS
        (a file past it is not downloaded; the cut is marked); with `images`, the images
        prepared for the model (bot/client/attachments.py). Also the names of attachments it
        could not read, and notes for the user.

        The text is empty when the user said nothing readable (only the mention, or only a
        file that is not text): then the bot answers directly and stores nothing.
        """
        settings = self.bot.settings
        text = cap_stored(self._resolve_mentions(message), settings.max_stored_message_chars)
        read = await read_attachments(message.attachments, text, settings, images=images)
        read.text = clean_text(read.text).strip()
        if read.text:
            # Tell the model what it cannot see, so it does not pretend to.
            read.text += "".join(
                f"\n[attached file {name}: not readable as text]" for name in read.unreadable
            )
        return read

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
        async with StreamedReply(message) as reply:
            if unreadable:
                await reply.finish(
                    "I can read text, images, PDFs and text files up to"
                    f" {ATTACHMENT_MAX_BYTES // 1000} KB; I couldn't read {', '.join(unreadable)}."
                )
                return
            await reply.finish(
                f"Hi {message.author.display_name}! What would you like to talk about?"
            )

    async def _show(self, reply: StreamedReply, result: ReplyResult) -> None:
        """How a turn ended, in Discord (an answer was shown already, by `deliver`)."""
        match result:
            case Answered():
                pass  # shown by `deliver` (or refused by Discord, and then not stored)
            case Skipped(outcome=Outcome.DELETED):  # deleted while waiting, or while answered
                await reply.withdraw()
            case Skipped(outcome=Outcome.ERASED):
                await reply.finish(ERASED_NOTICE)
            case Skipped():  # a redelivered event (answered once already), or a stop
                await reply.abandon()
            case Refused(refusal=refusal) if not refusal.notify:
                await reply.abandon()  # told once in this limit window already
            case Refused():
                when = datetime.fromtimestamp(result.refusal.resets_at, tz=UTC)
                await reply.finish(
                    f"⏳ {result.refusal.message} Try again {discord.utils.format_dt(when, 'R')}."
                )
            case Failed():
                # What arrived is shown, marked as interrupted; it was not stored as an answer.
                await reply.finish(with_notice(result.text, result.error.user_message))
            case _:
                assert_never(result)


def _only_images(message: discord.Message) -> bool:
    """No words, only images."""
    return not message.content.strip() and all(
        image_type(a.filename, a.content_type) is not None for a in message.attachments
    )


def answer_text(result: Answered, notes: Sequence[str] = ()) -> str:
    """An answer as shown: a length note outside any code block the cut left open, the notes
    on its attachments (an image not shown to the model, a PDF not read), and a reminder when
    the user's memory is paused."""
    shown = result.text
    if result.cut_at_limit:
        shown = append_outside_code(shown, "-# (the answer reached the reply length limit)")
    for note in (*result.notes, *notes):
        shown = append_outside_code(shown, f"-# ⚠️ {note}")
    return shown + (PAUSED_NOTE if result.paused else "")


def with_notice(shown: str, notice: str) -> str:
    """Keep what the user already sees and add the notice under it."""
    return f"{shown}\n\n⚠️ *{notice}*" if shown.strip() else f"⚠️ {notice}"


async def setup(bot: MemoryBot) -> None:
    await bot.add_cog(Chat(bot))
