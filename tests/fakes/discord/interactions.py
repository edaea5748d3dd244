"""Users run slash commands and message commands (right-click → Apps), type into autocompleted
options and press buttons: each an INTERACTION_CREATE, as Discord sends it."""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from typing import Any

from tests.fakes.discord.protocol import (
    ALL_PERMISSIONS,
    INTERACTION_AUTOCOMPLETE,
    INTERACTION_COMMAND,
    INTERACTION_COMPONENT,
    JSON,
    MEMBER_PERMISSIONS,
)
from tests.fakes.discord.records import BotMessage, ChannelRef, FakeInteraction, FakeUser, RoleRef


class Interactions:
    """Slash commands, autocomplete and component clicks, as Discord sends them."""

    async def slash(
        self,
        user: FakeUser,
        command: str,
        subcommand: str | None = None,
        options: dict[str, Any] | None = None,
        *,
        channel_id: int | None = None,
        guild_id: int | None = None,
        dm: bool = False,
        group: str | None = None,
    ) -> FakeInteraction:
        """``user`` runs ``/command [group] [subcommand] options…``: dispatch INTERACTION_CREATE.

        Option types come from the Python values: str → 3, bool → 5, int → 4, float → 10,
        FakeUser → 6 (with ``resolved`` users and members). The channel defaults to
        ``CHANNEL_ID`` (or the first channel of ``guild_id``; the user's DM with ``dm=True``).
        If the bot registered the command for that guild, ``data.guild_id`` is set as Discord does.
        """
        channel = self._interaction_channel(user, channel_id, guild_id, dm)
        data = self._command_data(command, group, subcommand, options or {}, channel, None)
        return await self._interact(INTERACTION_COMMAND, user, channel, data)

    async def message_command(
        self, user: FakeUser, name: str, target: JSON | BotMessage
    ) -> FakeInteraction:
        """``user`` right-clicks a message → Apps → ``name``: an APPLICATION_COMMAND interaction
        (type 2) whose ``data.type`` is 3 (MESSAGE), with ``target_id`` and the message itself
        in ``resolved.messages``, as Discord sends it. ``target``: a user message payload (as
        :meth:`send_message` returned it) or a :class:`BotMessage`."""
        message = self._message_payload(target) if isinstance(target, BotMessage) else target
        message = {k: v for k, v in message.items() if k != "member"}  # a message object
        channel_id = int(message["channel_id"])
        command_id, registered_guild = self._command_identity(
            name, self.guild_of(channel_id), kind=3
        )
        data: JSON = {
            "id": str(command_id),
            "name": name,
            "type": 3,
            "target_id": message["id"],
            "resolved": {"messages": {message["id"]: message}},
        }
        if registered_guild is not None:
            data["guild_id"] = str(registered_guild)
        return await self._interact(INTERACTION_COMMAND, user, channel_id, data)

    async def autocomplete(
        self,
        user: FakeUser,
        command: str,
        subcommand: str | None,
        option_name: str,
        partial_value: Any,
        *,
        options: dict[str, Any] | None = None,
        group: str | None = None,
        channel_id: int | None = None,
        guild_id: int | None = None,
        dm: bool = False,
        timeout: float = 5.0,  # noqa: ASYNC109
    ) -> list[JSON]:
        """``user`` types ``partial_value`` into an option: dispatch an autocomplete interaction
        and return the choices the bot answered (``[{"name": …, "value": …}]``)."""
        channel = self._interaction_channel(user, channel_id, guild_id, dm)
        focused = (option_name, partial_value)
        data = self._command_data(command, group, subcommand, options or {}, channel, focused)
        interaction = await self._interact(INTERACTION_AUTOCOMPLETE, user, channel, data)
        return await self.wait_for(lambda: interaction.choices, timeout, "autocomplete choices")

    async def click(
        self, user: FakeUser, message: BotMessage, custom_id: str, *, values: Sequence[str] = ()
    ) -> FakeInteraction:
        """``user`` presses a button (or picks ``values`` in a select) of a bot message."""
        component = message.component(custom_id)
        if component is None:
            raise ValueError(f"message {message.id} has no component {custom_id!r}")
        data: JSON = {"custom_id": custom_id, "component_type": component.get("type", 2)}
        if component.get("type", 2) != 2:
            data["values"] = list(values)
        return await self._interact(
            INTERACTION_COMPONENT, user, message.channel_id, data, message=message
        )

    def interaction(self, interaction_id: int) -> FakeInteraction:
        return self._interactions[interaction_id]

    def _interaction_channel(
        self, user: FakeUser, channel_id: int | None, guild_id: int | None, dm: bool
    ) -> int:
        if dm:
            return self.dm_channel_id(user)
        if channel_id is not None:
            return channel_id
        if guild_id is not None:
            return next(c for c, g in self._channel_guild.items() if g == guild_id)
        return self.CHANNEL_ID

    def _command_data(
        self,
        command: str,
        group: str | None,
        subcommand: str | None,
        options: dict[str, Any],
        channel_id: int,
        focused: tuple[str, Any] | None,
    ) -> JSON:
        if group is not None and subcommand is None:
            raise ValueError("a subcommand group needs a subcommand")
        guild_id = self.guild_of(channel_id)
        opts, resolved = self._options(options, guild_id)
        if focused is not None:
            name, value = focused
            opts.append(
                {"type": self._option_type(value), "name": name, "value": value, "focused": True}
            )
        if subcommand is not None:
            opts = [{"type": 1, "name": subcommand, "options": opts}]
        if group is not None:
            opts = [{"type": 2, "name": group, "options": opts}]
        command_id, registered_guild = self._command_identity(command, guild_id)
        data: JSON = {"id": str(command_id), "name": command, "type": 1, "options": opts}
        if resolved:
            data["resolved"] = resolved
        if registered_guild is not None:
            data["guild_id"] = str(registered_guild)
        return data

    @staticmethod
    def _option_type(value: Any) -> int:
        if isinstance(value, FakeUser):
            return 6
        if isinstance(value, ChannelRef):
            return 7
        if isinstance(value, RoleRef):
            return 8
        if isinstance(value, bool):
            return 5
        if isinstance(value, int):
            return 4
        if isinstance(value, float):
            return 10
        return 3

    def _options(self, options: dict[str, Any], guild_id: int | None) -> tuple[list[JSON], JSON]:
        result: list[JSON] = []
        resolved: JSON = {}
        for name, value in options.items():
            kind = self._option_type(value)
            if isinstance(value, FakeUser):
                resolved.setdefault("users", {})[str(value.id)] = value.payload()
                if guild_id is not None:
                    member = self._member_payload(guild_id, value, with_user=False)
                    member["permissions"] = str(self.permissions(guild_id, value.id))
                    resolved.setdefault("members", {})[str(value.id)] = member
                value = str(value.id)
            elif isinstance(value, ChannelRef):
                channel = {**self._channels[value.id], "permissions": str(ALL_PERMISSIONS)}
                resolved.setdefault("channels", {})[str(value.id)] = channel
                value = str(value.id)
            elif isinstance(value, RoleRef):
                assert guild_id is not None, "a role option needs a guild"
                role = next(r for r in self._roles[guild_id] if int(r["id"]) == value.id)
                resolved.setdefault("roles", {})[str(value.id)] = role
                value = str(value.id)
            result.append({"type": kind, "name": name, "value": value})
        return result, resolved

    def _command_identity(
        self, name: str, guild_id: int | None, *, kind: int = 1
    ) -> tuple[int, int | None]:
        if guild_id is not None:
            for command in self.guild_commands.get(guild_id, []):
                if command["name"] == name and command.get("type", 1) == kind:
                    return int(command["id"]), guild_id
        for command in self.global_commands:
            if command["name"] == name and command.get("type", 1) == kind:
                return int(command["id"]), None
        return self._command_id(None, name, kind), None

    def _command_id(self, guild_id: int | None, name: str, kind: int) -> int:
        return self._command_ids.setdefault((guild_id, name, kind), self._ids.next())

    async def _interact(
        self,
        kind: int,
        user: FakeUser,
        channel_id: int,
        data: JSON,
        *,
        message: BotMessage | None = None,
    ) -> FakeInteraction:
        guild_id = self.guild_of(channel_id)
        interaction_id = self._ids.next()
        token = "fake-interaction-" + secrets.token_urlsafe(32)
        payload = self._interaction_payload(interaction_id, token, kind, user, channel_id, data)
        if message is not None:
            payload["message"] = self._message_payload(message)
        interaction = FakeInteraction(
            id=interaction_id,
            token=token,
            type=kind,
            user=user,
            channel_id=channel_id,
            guild_id=guild_id,
            payload=payload,
            fake=self,
            message=message,
        )
        self._interactions[interaction_id] = interaction
        self._interactions_by_token[token] = interaction
        await self._dispatch("INTERACTION_CREATE", payload)
        return interaction

    def _interaction_payload(
        self,
        interaction_id: int,
        token: str,
        kind: int,
        user: FakeUser,
        channel_id: int,
        data: JSON,
    ) -> JSON:
        guild_id = self.guild_of(channel_id)
        bot_permissions = (
            self.permissions(guild_id, self.BOT_USER_ID) if guild_id else MEMBER_PERMISSIONS
        )
        payload: JSON = {
            "id": str(interaction_id),
            "application_id": str(self.APPLICATION_ID),
            "type": kind,
            "data": data,
            "token": token,
            "version": 1,
            "channel_id": str(channel_id),
            "channel": self._channels[channel_id],
            "app_permissions": str(bot_permissions),
            "locale": "en-US",
            "entitlements": [],
            "entitlement_sku_ids": [],
            "authorizing_integration_owners": {"0": str(guild_id or 0)},
            "context": 0 if guild_id else 1,
            "attachment_size_limit": self.upload_limit,
        }
        if guild_id is None:
            payload["user"] = user.payload()
            return payload
        member = self._member_payload(guild_id, user)
        member["permissions"] = str(self.permissions(guild_id, user.id))
        payload.update(
            guild_id=str(guild_id),
            guild={"id": str(guild_id), "locale": "en-US", "features": []},
            guild_locale="en-US",
            member=member,
        )
        return payload
