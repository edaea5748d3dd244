"""The world: guilds, channels, threads, roles, members and DM channels, and what Discord says
about them (permissions, member and GUILD_CREATE payloads)."""

from __future__ import annotations

from collections.abc import Sequence

from tests.fakes.discord.protocol import (
    ADMINISTRATOR,
    ALL_PERMISSIONS,
    JSON,
    MANAGE_GUILD,
    MEMBER_PERMISSIONS,
    VIEW_CHANNEL,
    _now_iso,
)
from tests.fakes.discord.records import FakeUser

THREAD_TYPES = (10, 11, 12)  # announcement, public and private threads


class World:
    """The guilds, channels, roles and members the bot finds, and their payloads."""

    def dm_channel_id(self, user: FakeUser) -> int:
        """The DM channel between ``user`` and the bot (the same id on every run)."""
        return user.id + self.DM_CHANNEL_OFFSET

    def guild_of(self, channel_id: int) -> int | None:
        return self._channel_guild.get(channel_id)

    def bot_role_id(self, guild_id: int) -> int:
        return self.BOT_ROLE_ID if guild_id == self.GUILD_ID else self.GUILD2_BOT_ROLE_ID

    def _build_world(self) -> None:
        admin_role = self._role(self.ADMIN_ROLE_ID, "Admin", MANAGE_GUILD, position=2)
        member_role = self._role(self.MEMBER_ROLE_ID, "Regulars", 0, position=3)
        self._add_guild(self.GUILD_ID, "Test Server", self.BOT_ROLE_ID, [admin_role, member_role])
        self._add_text_channel(self.GUILD_ID, self.CHANNEL_ID, "general", 0)
        self._add_text_channel(self.GUILD_ID, self.OTHER_CHANNEL_ID, "random", 1)
        self._add_text_channel(self.GUILD_ID, self.CATEGORY_ID, "projects", 2)
        self._channels[self.CATEGORY_ID]["type"] = 4
        self._add_text_channel(self.GUILD_ID, self.CATEGORY_CHANNEL_ID, "project-a", 3)
        self._channels[self.CATEGORY_CHANNEL_ID]["parent_id"] = str(self.CATEGORY_ID)
        self._add_thread(self.GUILD_ID, self.THREAD_ID, self.CHANNEL_ID, "a thread")
        self._add_guild(self.GUILD2_ID, "Second Server", self.GUILD2_BOT_ROLE_ID, [])
        self._add_text_channel(self.GUILD2_ID, self.GUILD2_CHANNEL_ID, "lobby", 0)
        self._member_roles[(self.GUILD_ID, self.admin.id)] = [self.ADMIN_ROLE_ID]
        for user in self.users.values():
            self._add_dm_channel(user)

    def _add_guild(self, guild_id: int, name: str, bot_role: int, extra: list[JSON]) -> None:
        everyone = self._role(guild_id, "@everyone", MEMBER_PERMISSIONS, position=0)
        bot = self._role(bot_role, "Mnemo", MEMBER_PERMISSIONS, position=1, bot=True)
        self._roles[guild_id] = [everyone, bot, *extra]
        self._guilds[guild_id] = {"id": str(guild_id), "name": name, "joined_at": _now_iso()}
        self._member_roles[(guild_id, self.BOT_USER_ID)] = [bot_role]

    def _role(
        self, role_id: int, name: str, perms: int, *, position: int, bot: bool = False
    ) -> JSON:
        role: JSON = {
            "id": str(role_id),
            "name": name,
            "permissions": str(perms),
            "position": position,
            "color": 0,
            "colors": {"primary_color": 0, "secondary_color": None, "tertiary_color": None},
            "hoist": False,
            "managed": bot,
            "mentionable": False,
            "icon": None,
            "unicode_emoji": None,
            "flags": 0,
        }
        if bot:
            role["tags"] = {"bot_id": str(self.BOT_USER_ID)}
        return role

    def _add_text_channel(self, guild_id: int, channel_id: int, name: str, position: int) -> None:
        self._channels[channel_id] = {
            "id": str(channel_id),
            "type": 0,
            "guild_id": str(guild_id),
            "name": name,
            "position": position,
            "permission_overwrites": [],
            "parent_id": None,
            "topic": None,
            "nsfw": False,
            "rate_limit_per_user": 0,
            "last_message_id": None,
            "flags": 0,
        }
        self._channel_guild[channel_id] = guild_id

    def _add_thread(
        self, guild_id: int, thread_id: int, parent_id: int, name: str, owner_id: int = 0
    ) -> None:
        self._channels[thread_id] = {
            "id": str(thread_id),
            "type": 11,
            "guild_id": str(guild_id),
            "parent_id": str(parent_id),
            "owner_id": str(owner_id or self.alice.id),
            "name": name,
            "last_message_id": None,
            "rate_limit_per_user": 0,
            "message_count": 0,
            "member_count": 2,
            "total_message_sent": 0,
            "flags": 0,
            "thread_metadata": {
                "archived": False,
                "auto_archive_duration": 1440,
                "archive_timestamp": _now_iso(),
                "locked": False,
                "create_timestamp": _now_iso(),
            },
        }
        self._channel_guild[thread_id] = guild_id

    def add_private_channel(
        self, channel_id: int, name: str, members: Sequence[FakeUser] = ()
    ) -> None:
        """A text channel of GUILD_ID that @everyone cannot view, open to the bot's role and
        to ``members`` (permission overwrites, as Discord sends them). Call before the bot
        connects; later, :meth:`make_private` a channel the bot already knows."""
        self._add_text_channel(self.GUILD_ID, channel_id, name, len(self._channels))
        self._channels[channel_id]["permission_overwrites"] = self._private_overwrites(
            self.GUILD_ID, members
        )

    def add_public_thread(self, thread_id: int, parent_id: int, name: str = "public") -> None:
        """A public thread (type 11) of GUILD_ID under ``parent_id``. Call before the bot
        connects."""
        self._add_thread(self.GUILD_ID, thread_id, parent_id, name)

    def add_private_thread(self, thread_id: int, parent_id: int, name: str = "private") -> None:
        """A private thread (type 12) of GUILD_ID under ``parent_id``: only those added to it
        see it. Call before the bot connects (GUILD_CREATE lists it with the threads)."""
        self._add_thread(self.GUILD_ID, thread_id, parent_id, name)
        thread = self._channels[thread_id]
        thread["type"] = 12
        thread["thread_metadata"]["invitable"] = False

    async def make_private(self, channel_id: int, members: Sequence[FakeUser] = ()) -> None:
        """An admin makes a channel private (denies View Channel to @everyone, allows it to
        the bot's role and to ``members``): Discord sends CHANNEL_UPDATE with the channel's
        new ``permission_overwrites``."""
        guild_id = self._channel_guild[channel_id]
        assert guild_id is not None, "a DM channel has no permissions"
        self._channels[channel_id]["permission_overwrites"] = self._private_overwrites(
            guild_id, members
        )
        await self._dispatch("CHANNEL_UPDATE", dict(self._channels[channel_id]))

    async def make_public(self, channel_id: int) -> None:
        """The overwrites are removed: @everyone views the channel again (CHANNEL_UPDATE)."""
        self._channels[channel_id]["permission_overwrites"] = []
        await self._dispatch("CHANNEL_UPDATE", dict(self._channels[channel_id]))

    async def set_role_permissions(self, guild_id: int, role_id: int, permissions: int) -> None:
        """An admin changes a role's server-wide permissions (the @everyone role's id is the
        guild's): Discord sends GUILD_ROLE_UPDATE with the whole role."""
        for role in self._roles[guild_id]:
            if int(role["id"]) == role_id:
                role["permissions"] = str(permissions)
                await self._dispatch(
                    "GUILD_ROLE_UPDATE", {"guild_id": str(guild_id), "role": dict(role)}
                )
                return
        raise KeyError(role_id)

    def _private_overwrites(self, guild_id: int, members: Sequence[FakeUser]) -> list[JSON]:
        """Discord's overwrite objects: id, type (0 role, 1 member), allow, deny (strings)."""
        seen = str(MEMBER_PERMISSIONS)
        return [
            {"id": str(guild_id), "type": 0, "allow": "0", "deny": str(VIEW_CHANNEL)},
            {"id": str(self.bot_role_id(guild_id)), "type": 0, "allow": seen, "deny": "0"},
            *({"id": str(user.id), "type": 1, "allow": seen, "deny": "0"} for user in members),
        ]

    def add_thread_of_unseen_channel(self, thread_id: int, parent_id: int) -> None:
        """A thread in GUILD_ID whose parent channel is never sent to the bot, so discord.py
        has the thread cached and not its parent (`Thread.parent` is None and
        `Thread.category_id` raises). Call before the bot connects."""
        self._add_thread(self.GUILD_ID, thread_id, parent_id, "thread of an unseen channel")

    def _add_dm_channel(self, user: FakeUser) -> None:
        channel_id = self.dm_channel_id(user)
        self._channels[channel_id] = {
            "id": str(channel_id),
            "type": 1,
            "last_message_id": None,
            "recipients": [user.payload()],
            "flags": 0,
        }
        self._channel_guild[channel_id] = None

    def set_roles(self, guild_id: int, user: FakeUser, role_ids: Sequence[int]) -> None:
        """Give ``user`` these roles in ``guild_id`` (seen in their next messages and commands)."""
        self._member_roles[(guild_id, user.id)] = list(role_ids)

    def remove_member(self, guild_id: int, user: FakeUser) -> None:
        """``user`` is no longer a member of ``guild_id``: GET …/members/{user} answers 404
        Unknown Member, and the next GUILD_CREATE leaves them out (they keep their DM channel)."""
        self._not_members.add((guild_id, user.id))

    def member_lookups(self, user: FakeUser) -> int:
        """How many times the bot asked for ``user``'s membership of any server over REST."""
        suffix = f"/members/{user.id}"
        return sum(
            1
            for r in self.requests
            if r.method == "GET" and r.path.startswith("/guilds/") and r.path.endswith(suffix)
        )

    def permissions(self, guild_id: int, user_id: int) -> int:
        """A member's guild permissions (channel overwrites not applied)."""
        if user_id == self.owner.id:
            return ALL_PERMISSIONS
        role_ids = {guild_id, *self._member_roles.get((guild_id, user_id), [])}
        value = 0
        for role in self._roles[guild_id]:
            if int(role["id"]) in role_ids:
                value |= int(role["permissions"])
        return ALL_PERMISSIONS if value & ADMINISTRATOR else value

    def _member_payload(self, guild_id: int, user: FakeUser, *, with_user: bool = True) -> JSON:
        member: JSON = {
            "roles": [str(r) for r in self._member_roles.get((guild_id, user.id), [])],
            "joined_at": self._guilds[guild_id]["joined_at"],
            "deaf": False,
            "mute": False,
            "flags": 0,
            "nick": None,
            "avatar": None,
            "pending": False,
            "premium_since": None,
            "communication_disabled_until": None,
        }
        if with_user:
            member["user"] = user.payload()
        return member

    def _guild_create_payload(self, guild_id: int) -> JSON:
        channels = [c for cid, c in self._channels.items() if self._channel_guild[cid] == guild_id]
        members = [
            self._member_payload(guild_id, user)
            for user in self.users.values()
            if (guild_id, user.id) not in self._not_members
        ]
        return {
            **self._guilds[guild_id],
            "unavailable": False,
            "icon": None,
            "splash": None,
            "banner": None,
            "description": None,
            "owner_id": str(self.owner.id),
            "roles": self._roles[guild_id],
            "channels": [c for c in channels if c["type"] not in THREAD_TYPES],
            "threads": [c for c in channels if c["type"] in THREAD_TYPES],
            "members": members,
            "member_count": len(members),
            "large": False,
            "features": [],
            "emojis": [],
            "stickers": [],
            "voice_states": [],
            "presences": [],
            "stage_instances": [],
            "guild_scheduled_events": [],
            "soundboard_sounds": [],
            "preferred_locale": "en-US",
            "verification_level": 0,
            "default_message_notifications": 0,
            "explicit_content_filter": 0,
            "mfa_level": 0,
            "nsfw_level": 0,
            "premium_tier": 0,
            "system_channel_id": None,
            "afk_timeout": 300,
        }

    def _bot_user_payload(self) -> JSON:
        return {**self.bot_user.payload(), "verified": True, "mfa_enabled": False, "flags": 0}
