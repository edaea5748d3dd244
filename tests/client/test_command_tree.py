"""The slash command tree as Discord will see it."""

from __future__ import annotations

from collections.abc import AsyncIterator

import discord
import pytest
from discord import app_commands

from bot.client.bot import MemoryBot
from cogs import EXTENSIONS
from tests.helpers.engines import SettingsFactory


@pytest.fixture
async def bot(make_settings: SettingsFactory) -> AsyncIterator[MemoryBot]:
    client = MemoryBot(make_settings(), extensions=EXTENSIONS)
    for extension in EXTENSIONS:
        await client.load_extension(extension)
    yield client
    await client.close()


def walk(commands: list) -> list[app_commands.Command | app_commands.Group]:
    found = []
    for command in commands:
        found.append(command)
        if isinstance(command, app_commands.Group):
            found.extend(walk(command.commands))
    return found


def test_the_commands_users_are_promised(bot: MemoryBot) -> None:
    names = {command.qualified_name for command in walk(bot.tree.get_commands())}
    assert {
        "memory show",
        "memory why",
        "memory clear",
        "memory export",
        "facts show",
        "facts forget",
        "mnemo-admin forget",
        "mnemo-admin stats",
        "memory pause",
        "memory resume",
        "help",
        "mnemo-admin access show",
        "mnemo-admin access channel",
        "mnemo-admin access role",
        "mnemo-admin access block",
        "mnemo-admin access unblock",
        "mnemo-admin access notice",
        "mnemo-admin answer-mode",
        "mnemo-admin threads",
        "mnemo-admin memory",
        "mnemo-admin channel-context",
        "mnemo-admin persona set",
        "mnemo-admin persona show",
        "mnemo-admin persona reset",
        "mnemo-admin model set",
        "mnemo-admin model show",
        "mnemo-admin model reset",
    } <= names


def test_the_message_commands_users_are_promised(bot: MemoryBot) -> None:
    menus = bot.tree.get_commands(type=discord.AppCommandType.message)
    assert {menu.name for menu in menus} == {"Remember this", "Forget this"}


def test_names_unique_and_everything_described(bot: MemoryBot) -> None:
    commands = walk(bot.tree.get_commands(type=discord.AppCommandType.chat_input))
    names = [command.qualified_name for command in commands]
    assert len(names) == len(set(names))
    for command in commands:
        assert command.description and command.description != "…", command.qualified_name
        if isinstance(command, app_commands.Command):
            for parameter in command.parameters:
                assert parameter.description not in ("", "…"), (command.name, parameter.name)


def test_admin_group_is_server_only_with_manage_server(bot: MemoryBot) -> None:
    admin = bot.tree.get_command("mnemo-admin")
    assert isinstance(admin, app_commands.Group)
    assert admin.guild_only
    assert admin.default_permissions == discord.Permissions(manage_guild=True)
    payload = admin.to_dict(bot.tree)
    assert str(payload["default_member_permissions"]) == "32"  # Manage Server
    assert payload["contexts"] == [0]  # guild only: not offered in DMs


def test_user_commands_work_in_dms(bot: MemoryBot) -> None:
    for name in ("memory", "facts"):
        group = bot.tree.get_command(name)
        assert group is not None and not group.guild_only
        assert group.default_permissions is None
        assert group.to_dict(bot.tree)["contexts"] == [0, 1]  # servers and the bot's DMs


def test_fingerprint_changes_with_definitions(bot: MemoryBot) -> None:
    before = bot.command_fingerprint()
    assert before == bot.command_fingerprint()
    bot.tree.add_command(app_commands.Command(name="extra", description="x", callback=_noop))
    assert bot.command_fingerprint() != before


async def _noop(interaction: discord.Interaction) -> None:
    return None
