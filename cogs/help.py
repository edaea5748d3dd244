"""/help: what Mnemo is, how to talk to it right here, what it remembers, and for admins their
commands. Always ephemeral, and about the place it is asked in."""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

import discord
from discord import app_commands
from discord.ext import commands

from bot.access import ChannelView, Decision, Place
from cogs.chat import category_of
from storage.guild_settings import ServerRules

if TYPE_CHECKING:
    from bot.client import MemoryBot

INTRO = (
    "**Mnemo** is a chatbot that remembers: the recent conversation word for word, a summary of"
    " older parts, and facts you tell it about yourself, kept per server (or per DMs)."
)
YOUR_MEMORY = (
    "**Your memory** · `/memory show` what it keeps of this conversation · `/facts show` what it"
    " learned about you here · `/memory export` download everything · `/memory clear` erase this"
    " conversation or everything · `/facts forget` erase one fact · `/memory pause` and"
    " `/memory resume` stop and restart remembering (while paused nothing you say is stored)."
)
ADMIN = (
    "**Admin commands** (Manage Server) · `/mnemo-admin access show|channel|role|block|unblock"
    "|notice` who may use Mnemo and where · `/mnemo-admin answer-mode` mention-only or always in"
    " a channel · `/mnemo-admin threads` answer mentions in a new thread · `/mnemo-admin persona"
    " set|show|reset` and `/mnemo-admin model set|show|reset` per server or channel ·"
    " `/mnemo-admin memory` on or off for the server · `/mnemo-admin forget` erase a member's"
    " data here · `/mnemo-admin stats` usage counts and tokens."
)


class Help(commands.Cog):
    def __init__(self, bot: MemoryBot) -> None:
        self.bot = bot

    @app_commands.command(name="help", description="What Mnemo is and how to use it here")
    @app_commands.allowed_contexts(guilds=True, dms=True, private_channels=False)
    async def help(self, interaction: discord.Interaction) -> None:
        controls = self.bot.engine.controls
        place = place_of(interaction)
        if interaction.guild_id is None and controls.policy.dms_need_membership:
            memberships = await self.bot.members.memberships(interaction.user.id)
            place = dataclasses.replace(place, memberships=memberships)
        decision, view = await controls.check(place)
        paused = await controls.is_paused(interaction.user.id)
        parts = [INTRO, self.how_to_talk(interaction, decision, view)]
        if interaction.guild_id is not None and controls.policy.guild_allowed(interaction.guild_id):
            parts.append(where_allowed(await controls.rules(interaction.guild_id)))
        parts.append(self.memory_here(view))
        if paused:
            parts.append("-# Your memory is paused: `/memory resume` to end it.")
        parts.append(YOUR_MEMORY)
        if interaction.guild_id is not None and interaction.permissions.manage_guild:
            parts.append(ADMIN)
        await interaction.response.send_message("\n\n".join(parts)[:2000], ephemeral=True)

    def how_to_talk(
        self, interaction: discord.Interaction, decision: Decision, view: ChannelView
    ) -> str:
        if interaction.guild_id is None:
            if not decision.allowed:
                return "**Here** · I don't answer direct messages; talk to me in a server."
            return "**Here** · just write: every message in our DMs is for me."
        if not decision.allowed:
            return "**Here** · I don't answer you in this channel (the server's or bot's rules)."
        if view.answer_mode == "always" and self.bot.settings.message_content_intent:
            how = "just write: I answer every message in this channel."
        else:
            how = "mention me (`@Mnemo …`) or reply to one of my messages."
        if view.threads:
            how += " A mention opens a thread for our conversation."
        return f"**Here** · {how} Each person has their own conversation per channel or thread."

    @staticmethod
    def memory_here(view: ChannelView) -> str:
        if view.memory:
            return "**Memory here** · on."
        return (
            "**Memory here** · off: I answer from the recent conversation only and learn nothing"
            " (no summaries, no facts); older messages are deleted as the conversation moves on."
        )


def where_allowed(rules: ServerRules) -> str:
    """The channels this server allows (a category stands for its channels)."""
    allowed = sorted(c for c, rule in rules.channels.items() if rule.access == "allow")
    denied = sorted(c for c, rule in rules.channels.items() if rule.access == "deny")
    text = "**Where** · " + (
        "in " + ", ".join(f"<#{c}>" for c in allowed[:20]) if allowed else "in every channel"
    )
    if denied:
        text += ", except " + ", ".join(f"<#{c}>" for c in denied[:20])
    return text + " (and their threads)."


def place_of(interaction: discord.Interaction) -> Place:
    channel = interaction.channel
    user = interaction.user
    if interaction.guild_id is None:
        return Place(user.id, None, interaction.channel_id or 0)
    parent_id = channel.parent_id if isinstance(channel, discord.Thread) else None
    roles = getattr(user, "roles", [])
    return Place(
        user.id,
        interaction.guild_id,
        interaction.channel_id or 0,
        parent_id,
        category_of(channel),
        frozenset(role.id for role in roles),
    )


async def setup(bot: MemoryBot) -> None:
    await bot.add_cog(Help(bot))
