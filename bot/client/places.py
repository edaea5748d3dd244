"""Where a message or a command comes from, as the ids access and controls decide on (a
`Place`): the user, the server, the channel, a thread's channel, the category, the roles, and
who may read it (its `Audience`, read from discord.py's cache: no REST call)."""

from __future__ import annotations

import discord

from bot.policy.access import Place
from bot.policy.audience import Audience


def place_of_message(message: discord.Message, public: PublicPlaces | None = None) -> Place:
    """The ids access and controls are decided on (the server's public places from `public`,
    the bot's cache of them, when given)."""
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
        audience=audience_of(message.guild, channel, public),
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


def place_of_interaction(
    interaction: discord.Interaction, public: PublicPlaces | None = None
) -> Place:
    """The ids access and controls are decided on, for a slash command."""
    channel = interaction.channel
    user = interaction.user
    if interaction.guild_id is None:
        return Place(user.id, None, interaction.channel_id or 0)
    parent_id = channel.parent_id if isinstance(channel, discord.Thread) else None
    roles = getattr(user, "roles", [])
    guild = interaction.guild
    return Place(
        user.id,
        interaction.guild_id,
        interaction.channel_id or 0,
        parent_id,
        category_of(channel),
        frozenset(role.id for role in roles),
        audience=(
            audience_of(guild, channel, public)
            if guild is not None
            else Audience(interaction.channel_id or 0)  # a server not in the cache: this place
        ),
    )


def audience_of(
    guild: discord.Guild, channel: object, cache: PublicPlaces | None = None
) -> Audience:
    """Who may read this place of `guild` now, from the cache (bot.policy.audience).

    A private thread (type 12) is a place of its own; a public thread is its parent's place;
    a channel is its own. A channel not in the cache is a place of its own among no public
    ones: nothing but its own memory is used there.
    """
    public = cache.of(guild) if cache is not None else public_places(guild)
    channel_id = getattr(channel, "id", 0)
    if isinstance(channel, discord.Thread):
        if channel.type is discord.ChannelType.private_thread:
            return Audience(channel.id, public)
        return Audience(channel.parent_id, public)
    if not isinstance(channel, discord.abc.GuildChannel):
        return Audience(channel_id)
    return Audience(channel.id, public)


def public_places(guild: discord.Guild) -> frozenset[int]:
    """The server's channels its @everyone role can view now (threads follow their parent).

    From the cached channels and their permission overwrites: what Discord sends in
    GUILD_CREATE and CHANNEL_UPDATE."""
    everyone = guild.default_role
    return frozenset(
        channel.id
        for channel in guild.channels
        if not isinstance(channel, discord.CategoryChannel)
        and channel.permissions_for(everyone).view_channel
    )


def audience_here(
    interaction: discord.Interaction, public: PublicPlaces | None = None
) -> Audience | None:
    """The audience of the place a command is used in (None in DMs): what it may show."""
    return place_of_interaction(interaction, public).audience


class PublicPlaces:
    """Each server's public places, worked out once (a permission check per channel: 2.6 ms
    on a server of 500 channels) and kept until discord.py reports a change that can alter
    them: a channel created, deleted or updated (its overwrites), a role updated (@everyone's
    permissions), the server left. A server object discord.py built anew (a new session's
    GUILD_CREATE) is worked out again."""

    def __init__(self) -> None:
        self._known: dict[int, tuple[discord.Guild, frozenset[int]]] = {}

    def of(self, guild: discord.Guild) -> frozenset[int]:
        known = self._known.get(guild.id)
        if known is not None and known[0] is guild:
            return known[1]
        public = public_places(guild)
        self._known[guild.id] = (guild, public)
        return public

    def forget(self, guild_id: int) -> None:
        self._known.pop(guild_id, None)
