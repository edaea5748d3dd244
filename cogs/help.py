"""/help: what Mnemo is, how to talk to it right here, what it remembers, and for admins their
commands. Always ephemeral, and about the place it is asked in."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import discord
from discord import app_commands
from discord.ext import commands

from bot.client.places import place_of_interaction
from bot.policy.access import ChannelView, Decision
from storage.guild_settings import ServerRules

if TYPE_CHECKING:
    from bot.client.bot import MemoryBot

INTRO = (
    "**Mnemo** is a chatbot that remembers: the recent conversation word for word, a summary of"
    " older parts, and facts you tell it about yourself, kept per server (or per DMs)."
)
MESSAGE_LIMIT = 2000  # Discord's limit on one message's content
ADMIN_GROUP = "mnemo-admin"


def command_list(tree: app_commands.CommandTree[Any]) -> list[tuple[str, str]]:
    """Every slash command the bot has, as (`/qualified name`, description), from the command
    tree itself: a command added or renamed is listed without touching /help."""
    found: list[tuple[str, str]] = []

    def walk(command: app_commands.Command[Any, ..., Any] | app_commands.Group) -> None:
        if isinstance(command, app_commands.Group):
            for sub in command.commands:
                walk(sub)
        else:
            found.append((f"/{command.qualified_name}", command.description))

    for command in tree.get_commands(type=discord.AppCommandType.chat_input):
        if isinstance(command, app_commands.Command | app_commands.Group):
            walk(command)
    return sorted(found)


def commands_section(title: str, commands: list[tuple[str, str]]) -> str:
    return "\n".join([title, *(f"`{name}` · {description}" for name, description in commands)])


def pages(parts: list[str], limit: int = MESSAGE_LIMIT) -> list[str]:
    """`parts` joined by blank lines into messages of at most `limit` characters, cut between
    parts, else between lines (a single longer line is cut at the limit, the rest following)."""
    lines: list[str] = []
    for index, part in enumerate(parts):
        if index:
            lines.append("")
        lines.extend(part.split("\n"))
    messages: list[str] = []
    current = ""
    for line in lines:
        while len(line) > limit:
            if current:
                messages.append(current)
                current = ""
            messages.append(line[:limit])
            line = line[limit:]
        candidate = f"{current}\n{line}" if current else line
        if len(candidate) <= limit:
            current = candidate
            continue
        messages.append(current)
        current = line
    if current.strip():
        messages.append(current)
    return [message.strip("\n") for message in messages if message.strip()]


class Help(commands.Cog):
    def __init__(self, bot: MemoryBot) -> None:
        self.bot = bot

    @app_commands.command(name="help", description="What Mnemo is and how to use it here")
    @app_commands.allowed_contexts(guilds=True, dms=True, private_channels=False)
    async def help(self, interaction: discord.Interaction) -> None:
        controls = self.bot.engine.controls
        place = await self.bot.members.with_memberships(
            place_of_interaction(interaction, self.bot.public_places)
        )
        decision, view = await controls.check(place)
        paused = await controls.is_paused(interaction.user.id)
        parts = [INTRO, self.how_to_talk(interaction, decision, view)]
        if interaction.guild_id is not None and controls.policy.guild_allowed(interaction.guild_id):
            parts.append(where_allowed(await controls.rules(interaction.guild_id)))
        parts.append(self.memory_here(view))
        if paused:
            parts.append("-# Your memory is paused: `/memory resume` to end it.")
        commands_ = command_list(self.bot.tree)
        mine = [c for c in commands_ if not c[0].startswith(f"/{ADMIN_GROUP} ")]
        parts.append(commands_section("**Commands**", mine))
        if interaction.guild_id is not None and interaction.permissions.manage_guild:
            admin = [c for c in commands_ if c[0].startswith(f"/{ADMIN_GROUP} ")]
            parts.append(commands_section("**Admin commands** (Manage Server)", admin))
        # Never cut mid-text: what does not fit in one message follows in more (ephemeral too).
        first, *rest = pages(parts)
        await interaction.response.send_message(first, ephemeral=True)
        for page in rest:
            await interaction.followup.send(page, ephemeral=True)

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


async def setup(bot: MemoryBot) -> None:
    await bot.add_cog(Help(bot))
