"""Memory a user points at: message commands (right-click a message → Apps).

"Remember this" on one's own message stores it in the user's memory (if it is not already)
and reads it for facts now, with the usual fact rules; the answer says what was learned.
"Forget this" on one's own message forgets it with what it taught, as deleting it in Discord
would. Both answer privately, and only the message's author may use them on it.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import discord
from discord import app_commands
from discord.ext import commands

from bot.client.places import place_of_interaction
from bot.client.replies import take_down
from bot.engine.records import IncomingMessage, Remembered
from bot.model.text import cap_stored, clean_text
from storage.models import SessionKey

if TYPE_CHECKING:
    from bot.client.bot import MemoryBot

log = logging.getLogger(__name__)

NOT_YOURS = "You can only do this with your own messages."
NOTHING_TO_READ = "That message has no text I can remember."
NOT_ALLOWED = "I'm not available to you here, so I keep nothing of it."
NOT_STORED = "That message was not in my memory: there is nothing to forget."


class Pointed(commands.Cog):
    def __init__(self, bot: MemoryBot) -> None:
        self.bot = bot
        self.remember_menu = app_commands.ContextMenu(
            name="Remember this", callback=self.remember_this
        )
        self.forget_menu = app_commands.ContextMenu(name="Forget this", callback=self.forget_this)

    async def cog_load(self) -> None:
        self.bot.tree.add_command(self.remember_menu)
        self.bot.tree.add_command(self.forget_menu)

    async def cog_unload(self) -> None:
        for menu in (self.remember_menu, self.forget_menu):
            self.bot.tree.remove_command(menu.name, type=menu.type)

    async def remember_this(
        self, interaction: discord.Interaction, message: discord.Message
    ) -> None:
        if message.author.id != interaction.user.id:
            await interaction.response.send_message(NOT_YOURS, ephemeral=True)
            return
        limit = self.bot.settings.max_stored_message_chars
        text = clean_text(cap_stored(message.clean_content, limit))
        if not text.strip():
            await interaction.response.send_message(NOTHING_TO_READ, ephemeral=True)
            return
        place = await self.bot.members.with_memberships(place_of_interaction(interaction))
        decision, view = await self.bot.engine.controls.check(place)
        if not decision.allowed:
            await interaction.response.send_message(NOT_ALLOWED, ephemeral=True)
            return
        await interaction.response.defer(ephemeral=True, thinking=True)  # the model reads it
        incoming = IncomingMessage(
            key=SessionKey(interaction.guild_id, message.channel.id, interaction.user.id),
            discord_id=message.id,
            content=text.strip(),
            author_name=interaction.user.display_name,
            view=view,
        )
        result = await self.bot.engine.remember_message(incoming)
        await interaction.followup.send(remembered_text(result), ephemeral=True)

    async def forget_this(self, interaction: discord.Interaction, message: discord.Message) -> None:
        if message.author.id != interaction.user.id:
            await interaction.response.send_message(NOT_YOURS, ephemeral=True)
            return
        await interaction.response.defer(ephemeral=True, thinking=True)
        self.bot.channel_log.deleted([message.id], message.channel.id)
        deleted = await self.bot.engine.forget_message(message.id, message.channel.id)
        if deleted is None:
            await interaction.followup.send(NOT_STORED, ephemeral=True)
            return
        await take_down(self.bot, deleted)
        log.info("User %s had message %s forgotten", interaction.user.id, message.id)
        await interaction.followup.send(
            "Forgotten: that message, my answers to it and what I learned from it alone.",
            ephemeral=True,
        )


def remembered_text(result: Remembered) -> str:
    """What "Remember this" tells the user."""
    if result.refused:
        return result.refused
    start = "Remembered." if result.stored_now else "I had that message already."
    if not result.facts:
        return f"{start} I learned nothing new about you from it."
    learned = "\n".join(f"- {attribute}: {value}" for attribute, value in result.facts)
    return f"{start} What I learned from it:\n{learned}"[:2000]


async def setup(bot: MemoryBot) -> None:
    await bot.add_cog(Pointed(bot))
