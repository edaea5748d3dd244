"""/facts show · forget: the facts Mnemo learned about you in this server (or in DMs)."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import discord
from discord import app_commands
from discord.ext import commands

from bot.client.places import audience_here
from bot.client.splitter import DISCORD_LIMIT, utf16_len
from bot.client.ui import (
    CONFIRM_TIMEOUT_SECONDS,
    SERVERS_AND_DMS,
    PagerView,
    confirm,
    erasure_cooldown_notice,
    timestamp,
)
from bot.memory.prompt import quote
from storage.models import Fact, FactSource, space_of

if TYPE_CHECKING:
    from bot.client.bot import MemoryBot

log = logging.getLogger(__name__)

PAGE_TITLE = "**What I know about you here**"
# A page is one message: Discord's 2000 UTF-16 units, less the pager's "Page n of m" line.
PAGE_LIMIT = DISCORD_LIMIT - utf16_len(PagerView.footer(99_999, 99_999))


class Facts(commands.Cog):
    facts = app_commands.Group(
        name="facts",
        description="The facts Mnemo learned about you here",
        allowed_contexts=SERVERS_AND_DMS,
    )

    def __init__(self, bot: MemoryBot) -> None:
        self.bot = bot
        self.confirm_timeout = CONFIRM_TIMEOUT_SECONDS

    @facts.command(name="show", description="Your facts in this server (or in DMs)")
    async def show(self, interaction: discord.Interaction) -> None:
        space = space_of(interaction.guild_id)
        facts = await self.bot.engine.current_facts(
            interaction.user.id, space, audience_here(interaction, self.bot.public_places)
        )
        if not facts:
            where = "in DMs" if interaction.guild_id is None else "in this server"
            await interaction.response.send_message(
                f"I haven't learned any facts about you {where} yet.", ephemeral=True
            )
            return
        sources = await self.bot.engine.fact_sources([fact.id for fact in facts])
        stored = await self._stored_message_ids(sources)
        lines = [render_fact(fact, sources.get(fact.id, []), stored) for fact in facts]
        pages = paginate(PAGE_TITLE, lines, PAGE_LIMIT)
        if len(pages) == 1:
            await interaction.response.send_message(pages[0], ephemeral=True)
            return
        view = PagerView(interaction.user.id, pages)
        await interaction.response.send_message(view.page_text(), view=view, ephemeral=True)

    @facts.command(name="forget", description="Make Mnemo forget one fact about you")
    @app_commands.describe(fact="Start typing to pick one of your facts")
    async def forget(self, interaction: discord.Interaction, fact: str) -> None:
        space = space_of(interaction.guild_id)
        try:
            fact_id = int(fact)
        except ValueError:
            fact_id = 0
        here = audience_here(interaction, self.bot.public_places)
        known = {
            f.id: f for f in await self.bot.engine.current_facts(interaction.user.id, space, here)
        }
        chosen = known.get(fact_id)
        if chosen is None:
            await interaction.response.send_message(
                "I couldn't find that fact among yours here; pick one from the list.",
                ephemeral=True,
            )
            return
        if (wait := self.bot.engine.erasure_wait(interaction.user.id)) > 0:
            await interaction.response.send_message(erasure_cooldown_notice(wait), ephemeral=True)
            return
        question = f"Forget **{chosen.attribute}**: {quote(chosen.value)} and its history?"
        if not await confirm(interaction, question, "Forget", wait_seconds=self.confirm_timeout):
            return
        deleted = await self.bot.engine.forget_fact(interaction.user.id, space, chosen.id)
        await interaction.edit_original_response(
            content=f"Forgotten ({deleted} record{'s' * (deleted != 1)} deleted).", view=None
        )

    @forget.autocomplete("fact")
    async def forget_autocomplete(
        self, interaction: discord.Interaction, current: str
    ) -> list[app_commands.Choice[str]]:
        facts = await self.bot.engine.current_facts(
            interaction.user.id,
            space_of(interaction.guild_id),
            audience_here(interaction, self.bot.public_places),
        )
        typed = current.casefold()
        choices = []
        for fact in reversed(facts):  # newest first
            label = f"{fact.attribute}: {fact.value}"
            if typed in label.casefold():
                choices.append(app_commands.Choice(name=label[:100], value=str(fact.id)))
        return choices[:25]

    async def _stored_message_ids(self, sources: dict[int, list[FactSource]]) -> set[int]:
        ids = [source.message_id for found in sources.values() for source in found]
        return await self.bot.engine.stored_message_ids(ids)


def render_fact(fact: Fact, sources: list[FactSource], stored: set[int]) -> str:
    """One line: the fact, when and where it was learned, and a link to its source message
    while that message is still stored."""
    line = f"• **{fact.attribute}**: {discord.utils.escape_markdown(fact.value)}"
    line += f" (learned {timestamp(fact.created_at)}"
    if sources:
        where = sources[-1]
        line += " in DMs" if where.guild_id is None else f" in <#{where.channel_id}>"
    live = next((s for s in sources if s.message_id in stored and s.discord_message_id), None)
    if live is not None:
        guild = live.guild_id if live.guild_id is not None else "@me"
        url = f"https://discord.com/channels/{guild}/{live.channel_id}/{live.discord_message_id}"
        line += f", [source]({url})"
    return line + ")"


def paginate(title: str, lines: list[str], limit: int) -> list[str]:
    """Pages of whole lines under `title`, each at most `limit` UTF-16 units, cut by size (a fact
    can be 40 + 200 characters before markdown escapes, a link and a timestamp)."""
    pages: list[str] = []
    page = title
    for line in lines:
        line = _within(line, limit - utf16_len(title) - 1)
        if page != title and utf16_len(page) + 1 + utf16_len(line) > limit:
            pages.append(page)
            page = title
        page += "\n" + line
    pages.append(page)
    return pages


def _within(line: str, limit: int) -> str:
    """A line too long for any page (never with today's limits on facts) is shortened."""
    if utf16_len(line) <= limit:
        return line
    while utf16_len(line) > limit - 1:
        line = line[: len(line) - max(1, (utf16_len(line) - limit + 2) // 2)]
    return line + "…"


async def setup(bot: MemoryBot) -> None:
    await bot.add_cog(Facts(bot))
