"""What the command cogs share on the Discord side: buttons usable only by their owner (a
confirmation and a pager), the confirmation question, and how times and erasures are shown."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import UTC, datetime

import discord
from discord import app_commands

from bot.client.bot import EXPIRED_INTERACTION, send_ephemeral
from storage.users import DeletedCounts

log = logging.getLogger(__name__)

NOT_YOURS = "These buttons belong to someone else's command."


class OwnedView(discord.ui.View):
    """A view whose buttons only the user who ran the command can press."""

    def __init__(self, owner_id: int, *, timeout: float) -> None:
        super().__init__(timeout=timeout)
        self.owner_id = owner_id

    async def on_error(
        self, interaction: discord.Interaction, error: Exception, item: discord.ui.Item, /
    ) -> None:
        if isinstance(error, discord.NotFound) and error.code == EXPIRED_INTERACTION:
            log.warning("A button press expired before the answer (Discord's 3 s)")
            return
        log.error("A button of %s failed", type(self).__name__, exc_info=error)
        await send_ephemeral(interaction, "Something went wrong; nothing was changed.")

    async def interaction_check(self, interaction: discord.Interaction, /) -> bool:
        if interaction.user.id != self.owner_id:
            await interaction.response.send_message(NOT_YOURS, ephemeral=True)
            return False
        return True


class ConfirmView(OwnedView):
    """Confirm / Cancel. `confirmed` is True, False, or None after a timeout."""

    def __init__(self, owner_id: int, *, confirm_label: str, timeout: float = 60.0) -> None:
        super().__init__(owner_id, timeout=timeout)
        self.confirmed: bool | None = None
        self.pressed: discord.Interaction | None = None
        self.confirm.label = confirm_label

    @discord.ui.button(label="Confirm", style=discord.ButtonStyle.danger)
    async def confirm(self, interaction: discord.Interaction, button: discord.ui.Button) -> None:
        await self._decide(interaction, True)

    @discord.ui.button(label="Cancel", style=discord.ButtonStyle.secondary)
    async def cancel(self, interaction: discord.Interaction, button: discord.ui.Button) -> None:
        await self._decide(interaction, False)

    async def _decide(self, interaction: discord.Interaction, confirmed: bool) -> None:
        self.confirmed = confirmed
        self.pressed = interaction
        # Deletion may take a moment: acknowledge within Discord's 3 s, answer by editing.
        await interaction.response.defer()
        self.stop()


class PagerView(OwnedView):
    """Previous / Next over pre-rendered pages."""

    def __init__(self, owner_id: int, pages: Sequence[str], *, timeout: float = 300.0) -> None:
        super().__init__(owner_id, timeout=timeout)
        self.pages = list(pages)
        self.index = 0
        self._update_buttons()

    @discord.ui.button(label="◀ Previous", style=discord.ButtonStyle.secondary)
    async def previous(self, interaction: discord.Interaction, button: discord.ui.Button) -> None:
        await self._turn(interaction, -1)

    @discord.ui.button(label="Next ▶", style=discord.ButtonStyle.secondary)
    async def next(self, interaction: discord.Interaction, button: discord.ui.Button) -> None:
        await self._turn(interaction, 1)

    def page_text(self) -> str:
        return self.pages[self.index] + self.footer(self.index + 1, len(self.pages))

    @staticmethod
    def footer(number: int, count: int) -> str:
        """The line under a page; callers size their pages to leave room for it."""
        return f"\n\n-# Page {number} of {count}"

    async def _turn(self, interaction: discord.Interaction, step: int) -> None:
        self.index = max(0, min(len(self.pages) - 1, self.index + step))
        self._update_buttons()
        await interaction.response.edit_message(content=self.page_text(), view=self)

    def _update_buttons(self) -> None:
        self.previous.disabled = self.index == 0
        self.next.disabled = self.index >= len(self.pages) - 1


def erasure_cooldown_notice(wait_seconds: float) -> str:
    """The answer to an erasure asked again too soon (each one rewrites the search index)."""
    return (
        "You erased something a moment ago; you can erase again in"
        f" {max(1, round(wait_seconds))} s."
    )


SERVERS_AND_DMS = app_commands.AppCommandContext(guild=True, dm_channel=True)
CONFIRM_TIMEOUT_SECONDS = 60.0
TIMED_OUT = "No answer within a minute, so nothing was deleted."
CANCELLED = "Cancelled: nothing was deleted."


def describe_deleted(counts: DeletedCounts) -> str:
    return (
        f"{counts.messages} message{'s' * (counts.messages != 1)}, "
        f"{counts.summaries} summar{'ies' if counts.summaries != 1 else 'y'} and "
        f"{counts.facts} fact{'s' * (counts.facts != 1)}"
    )


async def confirm(
    interaction: discord.Interaction, question: str, label: str, *, wait_seconds: float
) -> bool | None:
    """Ask with buttons only the invoker can press; True, False, or None on timeout."""
    view = ConfirmView(interaction.user.id, confirm_label=label, timeout=wait_seconds)
    await interaction.response.send_message(question, view=view, ephemeral=True)
    timed_out = await view.wait()
    if timed_out:
        await interaction.edit_original_response(content=TIMED_OUT, view=None)
        return None
    if not view.confirmed:
        await interaction.edit_original_response(content=CANCELLED, view=None)
    return view.confirmed


def timestamp(seconds: float) -> str:
    """A Discord timestamp that each reader sees in their own time zone ("3 days ago")."""
    return discord.utils.format_dt(datetime.fromtimestamp(seconds, tz=UTC), "R")
