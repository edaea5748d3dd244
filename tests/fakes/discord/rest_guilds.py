"""REST: users, the application and its commands, guilds and members."""

from __future__ import annotations

import re

from aiohttp import web

from tests.fakes.discord.protocol import JSON, _error, _invalid_form, _json
from tests.fakes.discord.records import RecordedRequest


class RestGuilds:
    """REST routes about users, the application (commands) and guilds."""

    async def _get_me(self, record: RecordedRequest) -> web.Response:
        return _json(200, self._bot_user_payload())

    async def _get_user(self, record: RecordedRequest, user_id: str) -> web.Response:
        user = self.users.get(int(user_id)) if user_id.isdigit() else None
        if user is None:
            return _error(404, 10013, "Unknown User")
        return _json(200, user.payload())

    async def _create_dm(self, record: RecordedRequest) -> web.Response:
        user = self.users.get(int((record.json or {}).get("recipient_id", 0)))
        if user is None:
            return _invalid_form(["recipient_id"], "NUMBER_TYPE_COERCE", "Unknown user")
        return _json(200, self._channels[self.dm_channel_id(user)])

    async def _get_gateway(self, record: RecordedRequest) -> web.Response:
        return _json(200, {"url": self.gateway_url.rstrip("/")})

    async def _get_gateway_bot(self, record: RecordedRequest) -> web.Response:
        limit = {
            "total": 1000,
            "remaining": 1000 - self.identify_count,
            "reset_after": 0,
            "max_concurrency": self.max_concurrency,
        }
        url = self.gateway_url.rstrip("/")
        return _json(200, {"url": url, "shards": self.shard_count, "session_start_limit": limit})

    async def _get_application(self, record: RecordedRequest) -> web.Response:
        return _json(
            200,
            {
                "id": str(self.APPLICATION_ID),
                "name": "Mnemo",
                "description": "",
                "icon": None,
                "bot_public": True,
                "bot_require_code_grant": False,
                "owner": self.owner.payload(),
                "team": None,
                "verify_key": "0" * 64,
                "flags": (1 << 19) | (1 << 15),
                "summary": "",
                "tags": [],
                "bot": self._bot_user_payload(),
            },
        )

    async def _get_guild(self, record: RecordedRequest, guild_id: str) -> web.Response:
        if int(guild_id) not in self._guilds:
            return _error(404, 10004, "Unknown Guild")
        full = self._guild_create_payload(int(guild_id))
        drop = ("channels", "threads", "members", "voice_states", "presences")
        return _json(200, {k: v for k, v in full.items() if k not in drop})

    async def _get_member(
        self, record: RecordedRequest, guild_id: str, user_id: str
    ) -> web.Response:
        user = self.users.get(int(user_id))
        if (
            int(guild_id) not in self._guilds
            or user is None
            or (int(guild_id), user.id) in self._not_members
        ):
            return _error(404, 10007, "Unknown Member")
        return _json(200, self._member_payload(int(guild_id), user))

    async def _get_commands(
        self, record: RecordedRequest, app_id: str, guild_id: str | None = None
    ) -> web.Response:
        if int(app_id) != self.APPLICATION_ID:
            return _error(404, 10002, "Unknown Application")
        scope = (
            self.global_commands if guild_id is None else self.guild_commands.get(int(guild_id), [])
        )
        return _json(200, scope)

    async def _put_commands(
        self, record: RecordedRequest, app_id: str, guild_id: str | None = None
    ) -> web.Response:
        if int(app_id) != self.APPLICATION_ID:
            return _error(404, 10002, "Unknown Application")
        gid = int(guild_id) if guild_id is not None else None
        commands = [self._registered_command(c, gid) for c in record.json or []]
        for index, command in enumerate(commands):
            name = command["name"]
            # A slash command's name is lower-case, no spaces; a user or message command's
            # (right-click → Apps) is any 1 to 32 characters, as shown.
            slash = command["type"] == 1
            if (
                (not re.fullmatch(r"[-_\w]{1,32}", name) or name != name.lower())
                if slash
                else not 1 <= len(name) <= 32
            ):
                return _invalid_form(
                    [str(index), "name"], "APPLICATION_COMMAND_INVALID_NAME", "Invalid name"
                )
        if gid is None:
            self.global_commands = commands
        else:
            self.guild_commands[gid] = commands
        return _json(200, commands)

    def _registered_command(self, body: JSON, guild_id: int | None) -> JSON:
        kind = body.get("type", 1)
        command = {
            "description": "",
            "options": [],
            "default_member_permissions": None,
            "nsfw": False,
            **body,
            "id": str(self._command_id(guild_id, body["name"], kind)),
            "application_id": str(self.APPLICATION_ID),
            "type": kind,
            "version": str(self._ids.next()),
        }
        if guild_id is not None:
            command["guild_id"] = str(guild_id)
        return command
