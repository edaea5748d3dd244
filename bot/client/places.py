"""Where a message or a command comes from, as the ids access and controls decide on (a
`Place`): the user, the server, the channel, a thread's channel, the category, the roles."""

from __future__ import annotations

import discord

from bot.policy.access import Place


def place_of_message(message: discord.Message) -> Place:
    """The ids access and controls are decided on."""
    channel = message.channel
    if message.guild is None:
        return Place(message.author.id, None, channel.id)
    parent_id = channel.parent_id if isinstance(channel, discord.Thread) else None
    roles = getattr(message.author, "roles", [])
    return Place(
        message.author.id,
        message.guild.id,
        channel.id,
        parent_id,
        category_of(channel),
        frozenset(role.id for role in roles),
    )


def category_of(channel: object) -> int | None:
    """The category a channel (or a thread's channel) is in, from the cache.

    `Thread.category_id` raises `ClientException` when the thread's parent channel is not
    cached; then the category is unknown and the place is decided on the thread and its
    channel alone (as a channel outside any category).
    """
    if isinstance(channel, discord.Thread):
        parent = channel.parent
        return parent.category_id if parent is not None else None
    category_id = getattr(channel, "category_id", None)
    return category_id if isinstance(category_id, int) else None


def place_of_interaction(interaction: discord.Interaction) -> Place:
    """The ids access and controls are decided on, for a slash command."""
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
