"""/memory show · why · clear · export · pause · resume (admins' commands: cogs/admin.py)."""

from __future__ import annotations

import asyncio
import gzip
import io
import json
import logging
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import discord
from discord import app_commands
from discord.ext import commands

from bot.client.places import audience_here
from bot.client.ui import (
    CONFIRM_TIMEOUT_SECONDS,
    SERVERS_AND_DMS,
    confirm,
    describe_deleted,
    erasure_cooldown_notice,
    timestamp,
)
from bot.memory.recall import LastRecall
from storage.models import SessionKey

if TYPE_CHECKING:
    from bot.client.bot import MemoryBot

log = logging.getLogger(__name__)

SCOPE_CHOICES = [
    app_commands.Choice(name="this channel", value="channel"),
    app_commands.Choice(name="everywhere", value="everywhere"),
]


def session_key(interaction: discord.Interaction) -> SessionKey:
    """The conversation this command is about: always the invoking user's own."""
    channel_id = interaction.channel_id
    assert channel_id is not None
    return SessionKey(interaction.guild_id, channel_id, interaction.user.id)


class Memory(commands.Cog):
    memory = app_commands.Group(
        name="memory",
        description="See, export or erase what Mnemo remembers about you",
        allowed_contexts=SERVERS_AND_DMS,
    )

    def __init__(self, bot: MemoryBot) -> None:
        self.bot = bot
        self.confirm_timeout = CONFIRM_TIMEOUT_SECONDS

    @memory.command(name="show", description="What Mnemo remembers of your conversation here")
    async def show(self, interaction: discord.Interaction) -> None:
        report = await self.bot.engine.describe(
            session_key(interaction),
            interaction.user.display_name,
            audience_here(interaction, self.bot.public_places),
        )
        embed = discord.Embed(title="Your memory in this conversation")
        if await self.bot.engine.controls.is_paused(interaction.user.id):
            embed.title = "Your memory in this conversation (paused)"
            embed.set_footer(
                text="Memory paused: nothing you say is stored or learned. /memory resume ends it."
            )
        updated = timestamp(report.summary_updated_at) if report.summary_updated_at else "never"
        embed.description = (
            f"**Summary** (updated {updated}):\n{report.summary[:3500]}"
            if report.summary
            else "**Summary:** none yet: older messages are summarized as the conversation grows."
        )
        embed.add_field(
            name="Messages",
            value=f"{report.stored_messages} stored, {report.window_messages} in the window",
        )
        embed.add_field(name="Facts about you here", value=str(report.facts))
        sections = report.section_tokens
        embed.add_field(
            name="Prompt tokens",
            value=" · ".join(
                f"{name} {sections.get(name, 0)}"
                for name in ("system", "facts", "summary", "recall", "window")
            )
            + f" of {report.budget} (recall: as in your last answer here)",
            inline=False,
        )
        await interaction.response.send_message(embed=embed, ephemeral=True)

    @memory.command(
        name="why", description="Which older messages Mnemo recalled for its last answer"
    )
    async def why(self, interaction: discord.Interaction) -> None:
        last = await self.bot.engine.last_recall(
            session_key(interaction), audience_here(interaction, self.bot.public_places)
        )
        await interaction.response.send_message(describe_recall(last), ephemeral=True)

    @memory.command(name="clear", description="Erase your conversation here, or everything")
    @app_commands.describe(scope="this channel (default): this conversation; everywhere: all")
    @app_commands.choices(scope=SCOPE_CHOICES)
    async def clear(
        self, interaction: discord.Interaction, scope: app_commands.Choice[str] | None = None
    ) -> None:
        if (wait := self.bot.engine.erasure_wait(interaction.user.id)) > 0:
            await interaction.response.send_message(erasure_cooldown_notice(wait), ephemeral=True)
            return
        everywhere = scope is not None and scope.value == "everywhere"
        question = (
            "Erase **everything** Mnemo stores about you: all messages, summaries and facts, "
            "in every server and DM?"
            if everywhere
            else "Erase the messages and summary of your conversation in this channel? "
            "(Facts stay; `/facts forget` removes them.)"
        )
        if not await confirm(interaction, question, "Erase", wait_seconds=self.confirm_timeout):
            return
        if everywhere:
            counts = await self.bot.engine.forget_user(interaction.user.id)
        else:
            counts = await self.bot.engine.clear_conversation(session_key(interaction))
        await interaction.edit_original_response(
            content=f"Done. Deleted {describe_deleted(counts)}.", view=None
        )

    @memory.command(name="export", description="Download everything Mnemo stores about you")
    async def export(self, interaction: discord.Interaction) -> None:
        await interaction.response.defer(ephemeral=True, thinking=True)
        data = await self.bot.engine.export_user(interaction.user.id)
        # Discord tells each interaction how big a file may be (10 MiB for a bot by default).
        limit = interaction.filesize_limit or DEFAULT_UPLOAD_LIMIT
        files = await asyncio.to_thread(export_files, data, limit)  # off the event loop
        summary = (
            f"Everything stored about you: {len(data['messages'])} messages, "
            f"{len(data['sessions'])} conversations, {len(data['facts'])} facts (with history)."
        )
        if len(files) > 1:
            summary += (
                f" It is large, so it comes gzipped in {len(files)} parts: join them in order"
                " (`cat mnemo-export.json.gz.* > mnemo-export.json.gz`), then unzip."
            )
        elif files[0][0].endswith(".gz"):
            summary += " It is large, so it comes gzipped."
        for index, (name, payload) in enumerate(files):
            await interaction.followup.send(
                summary if index == 0 else f"Part {index + 1} of {len(files)}.",
                file=discord.File(io.BytesIO(payload), filename=name),
                ephemeral=True,
            )

    @memory.command(name="pause", description="Stop Mnemo storing or learning what you say")
    async def pause(self, interaction: discord.Interaction) -> None:
        changed = await self.bot.engine.controls.set_paused(interaction.user.id, True)
        await interaction.response.send_message(
            ("Memory paused." if changed else "Your memory was already paused.")
            + " From now on nothing you say to Mnemo is stored or learned, in any server or DM,"
            " until `/memory resume`. Answers use only what was stored before, and each one"
            " says `memory paused`. (Model token counts for daily budgets still add up, with"
            " no content.)",
            ephemeral=True,
        )

    @memory.command(name="resume", description="Let Mnemo remember what you say again")
    async def resume(self, interaction: discord.Interaction) -> None:
        changed = await self.bot.engine.controls.set_paused(interaction.user.id, False)
        await interaction.response.send_message(
            "Memory resumed: what you say from now on is remembered again. What you said while"
            " paused was never stored and cannot be recovered."
            if changed
            else "Your memory was not paused: Mnemo remembers as usual.",
            ephemeral=True,
        )


DEFAULT_UPLOAD_LIMIT = 10 * 1024 * 1024  # a bot's upload limit, when Discord does not say
EXPORT_COMPRESS_ABOVE = 1024 * 1024  # bytes of JSON past which an export is gzipped


def export_files(data: dict[str, Any], limit: int) -> list[tuple[str, bytes]]:
    """An export as files of at most `limit` bytes each: JSON; gzipped JSON when it is large;
    the gzipped JSON cut into numbered parts when even that is too big for one upload.
    Blocking (serialization, compression): run it in a thread."""
    payload = json.dumps(data, ensure_ascii=False, indent=2).encode("utf-8")
    if len(payload) <= min(limit, EXPORT_COMPRESS_ABOVE):
        return [("mnemo-export.json", payload)]
    packed = gzip.compress(payload, compresslevel=6, mtime=0)
    if len(packed) <= limit:
        return [("mnemo-export.json.gz", packed)]
    parts = [packed[start : start + limit] for start in range(0, len(packed), limit)]
    return [(f"mnemo-export.json.gz.{n:03d}", part) for n, part in enumerate(parts, 1)]


WHY_EXCERPT_CHARS = 160
WHY_LIMIT_CHARS = 1900


def describe_recall(last: LastRecall | None) -> str:
    """The recalled messages of the last answer: date, who said it, a short excerpt."""
    if last is None:
        return "I haven't answered you in this channel since I last started (or since an erasure)."
    if not last.excerpts:
        return "Nothing older was recalled for my last answer here: it used the recent messages."
    lines = [f"For my last answer here I recalled {len(last.excerpts)} older message(s):"]
    for item in last.excerpts:
        day = datetime.fromtimestamp(item.created_at, tz=UTC).strftime("%Y-%m-%d")
        who = "you" if item.role == "user" else "me"
        text = discord.utils.escape_mentions(discord.utils.escape_markdown(item.text))
        if len(text) > WHY_EXCERPT_CHARS:
            text = text[: WHY_EXCERPT_CHARS - 1] + "…"
        line = f"• {day}, {who}: {text}"
        if sum(len(part) + 1 for part in lines) + len(line) > WHY_LIMIT_CHARS:
            lines.append("…")
            break
        lines.append(line)
    return "\n".join(lines)


def is_server_admin(interaction: discord.Interaction) -> bool:
    """Re-checked here: a server can override a command's default permissions."""
    return interaction.guild_id is not None and interaction.permissions.manage_guild


async def setup(bot: MemoryBot) -> None:
    await bot.add_cog(Memory(bot))
