"""/mnemo-admin …: a server's admins decide who may use Mnemo there, where and how it answers,
as whom, with which model and whether it remembers; they can erase a member's data and see
usage counts.

Every command is Manage Server by default (Discord hides it from others), re-checked here from
the interaction's permissions (a server can grant the command to anyone), ephemeral, and every
change is answered with what is now in force.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import TYPE_CHECKING

import discord
from discord import app_commands
from discord.ext import commands

from bot.client.ui import confirm, describe_deleted
from bot.policy.access import ChannelView, resolve
from bot.policy.controls import Controls
from storage.guild_settings import ServerRules

if TYPE_CHECKING:
    from bot.client.bot import MemoryBot

log = logging.getLogger(__name__)

NEEDS_MANAGE_SERVER = "You need the Manage Server permission for this."
SERVER_NOT_ALLOWED = (
    "The bot's operator has not enabled Mnemo in this server (ALLOWED_GUILD_IDS), so it ignores"
    " messages here and its settings cannot be changed."
)
RULE_CHOICES = [
    app_commands.Choice(name="allow", value="allow"),
    app_commands.Choice(name="deny", value="deny"),
    app_commands.Choice(name="inherit (remove this rule)", value="inherit"),
]
MODE_CHOICES = [
    app_commands.Choice(name="mention only (default)", value="mention"),
    app_commands.Choice(name="always answer every message", value="always"),
    app_commands.Choice(name="inherit (remove this setting)", value="inherit"),
]
NOTICE_CHOICES = [
    app_commands.Choice(name="silence (default)", value="silent"),
    app_commands.Choice(name="a short notice", value="notice"),
]
NEEDS_INTENT = (
    "Always-answer needs the Message Content intent, which this bot runs without"
    " (MESSAGE_CONTENT_INTENT=false). Ask the bot's operator to enable **Message Content Intent**"
    " in the Discord developer portal (Bot page) and set MESSAGE_CONTENT_INTENT=true, then try"
    " again. Nothing was changed."
)
CONTEXT_CHOICES = [
    app_commands.Choice(name="on: prompts hold the channel's recent messages", value="on"),
    app_commands.Choice(name="off", value="off"),
    app_commands.Choice(name="inherit (remove this setting)", value="inherit"),
]
CONTEXT_WITHOUT_INTENT = (
    "-# This bot runs without the Message Content intent (MESSAGE_CONTENT_INTENT=false), so"
    " Discord sends it only the messages that mention it: the channel context holds those and"
    " Mnemo's answers only. The bot's operator can enable **Message Content Intent** in the"
    " Discord developer portal and set MESSAGE_CONTENT_INTENT=true."
)
Where = app_commands.AppCommandChannel | app_commands.AppCommandThread
LIST_LIMIT = 25  # ids shown per list in a view


def mentions(ids: Iterable[int], kind: str) -> str:
    shown = [f"<{kind}{item}>" for item in sorted(ids)]
    if not shown:
        return "none"
    more = len(shown) - LIST_LIMIT
    return ", ".join(shown[:LIST_LIMIT]) + (f" and {more} more" if more > 0 else "")


@app_commands.guild_only()
@app_commands.default_permissions(manage_guild=True)
class Admin(
    commands.GroupCog,
    group_name="mnemo-admin",
    group_description="Server admins: access, answer mode, persona, model, memory, data, usage",
):
    access = app_commands.Group(name="access", description="Who may use Mnemo here, and where")
    persona = app_commands.Group(name="persona", description="The persona Mnemo answers as")
    model = app_commands.Group(name="model", description="The chat model Mnemo answers with")

    def __init__(self, bot: MemoryBot) -> None:
        self.bot = bot
        self.confirm_timeout = 60.0

    @property
    def controls(self) -> Controls:
        return self.bot.engine.controls

    async def _admin(self, interaction: discord.Interaction, *, change: bool = True) -> int | None:
        """The server id when the invoker may run admin commands here; else answer why not."""
        guild_id = interaction.guild_id
        if guild_id is None or not interaction.permissions.manage_guild:
            await interaction.response.send_message(NEEDS_MANAGE_SERVER, ephemeral=True)
            return None
        if change and not self.controls.policy.guild_allowed(guild_id):
            await interaction.response.send_message(SERVER_NOT_ALLOWED, ephemeral=True)
            return None
        return guild_id

    async def _answer(self, interaction: discord.Interaction, text: str) -> None:
        await interaction.response.send_message(text[:2000], ephemeral=True)

    # -- access -----------------------------------------------------------------------------

    @access.command(name="show", description="Which channels, roles and members may use Mnemo")
    async def access_show(self, interaction: discord.Interaction) -> None:
        if (guild_id := await self._admin(interaction, change=False)) is None:
            return
        await self._answer(interaction, self.render_access(await self.controls.rules(guild_id)))

    @access.command(name="channel", description="Allow or deny a channel, category or thread")
    @app_commands.describe(
        channel="A channel, a category (covers its channels) or a thread",
        rule="allow, deny, or inherit from the category/channel above",
    )
    @app_commands.choices(rule=RULE_CHOICES)
    async def access_channel(
        self, interaction: discord.Interaction, channel: Where, rule: app_commands.Choice[str]
    ) -> None:
        if (guild_id := await self._admin(interaction)) is None:
            return
        value = None if rule.value == "inherit" else rule.value
        rules = await self.controls.set_channel(guild_id, channel.id, "access", value)
        self._log(interaction, f"channel {channel.id} access {rule.value}")
        await self._answer(interaction, "Done.\n\n" + self.render_access(rules))

    @access.command(name="role", description="Allow or deny members by role")
    @app_commands.describe(
        role="The role", rule="allow (only allowed roles may talk), deny, or inherit"
    )
    @app_commands.choices(rule=RULE_CHOICES)
    async def access_role(
        self, interaction: discord.Interaction, role: discord.Role, rule: app_commands.Choice[str]
    ) -> None:
        if (guild_id := await self._admin(interaction)) is None:
            return
        value = None if rule.value == "inherit" else rule.value
        rules = await self.controls.set_role(guild_id, role.id, value)
        self._log(interaction, f"role {role.id} access {rule.value}")
        await self._answer(interaction, "Done.\n\n" + self.render_access(rules))

    @access.command(name="block", description="Stop Mnemo answering a member in this server")
    @app_commands.describe(member="The member Mnemo will ignore here")
    async def access_block(self, interaction: discord.Interaction, member: discord.User) -> None:
        await self._set_blocked(interaction, member, True)

    @access.command(name="unblock", description="Let a blocked member talk to Mnemo again")
    @app_commands.describe(member="The member to unblock")
    async def access_unblock(self, interaction: discord.Interaction, member: discord.User) -> None:
        await self._set_blocked(interaction, member, False)

    async def _set_blocked(
        self, interaction: discord.Interaction, member: discord.User, blocked: bool
    ) -> None:
        if (guild_id := await self._admin(interaction)) is None:
            return
        rules = await self.controls.set_blocked(
            guild_id, member.id, blocked, by=interaction.user.id
        )
        self._log(interaction, f"{'blocked' if blocked else 'unblocked'} {member.id}")
        await self._answer(interaction, "Done.\n\n" + self.render_access(rules))

    @access.command(name="notice", description="Silence or a short notice for messages not allowed")
    @app_commands.describe(mode="silence (default) or a short notice to the author")
    @app_commands.choices(mode=NOTICE_CHOICES)
    async def access_notice(
        self, interaction: discord.Interaction, mode: app_commands.Choice[str]
    ) -> None:
        if (guild_id := await self._admin(interaction)) is None:
            return
        rules = await self.controls.set_server(guild_id, "notice", int(mode.value == "notice"))
        self._log(interaction, f"notice {mode.value}")
        await self._answer(interaction, "Done.\n\n" + self.render_access(rules))

    def render_access(self, rules: ServerRules) -> str:
        allowed = [c for c, r in rules.channels.items() if r.access == "allow"]
        denied = [c for c, r in rules.channels.items() if r.access == "deny"]
        roles_allowed = [r for r, a in rules.roles.items() if a == "allow"]
        roles_denied = [r for r, a in rules.roles.items() if a == "deny"]
        channels = (f"only {mentions(allowed, '#')}" if allowed else "every channel") + (
            f", except {mentions(denied, '#')}" if denied else ""
        )
        roles = (
            f"only members with {mentions(roles_allowed, '@&')}" if roles_allowed else "everyone"
        ) + (f", except members with {mentions(roles_denied, '@&')}" if roles_denied else "")
        policy = self.controls.policy
        bounds = [
            name
            for name, ids in (
                ("channels", policy.channel_ids),
                ("roles", policy.role_ids),
                ("users", policy.blocked_user_ids),
            )
            if ids
        ]
        lines = [
            "**Access in this server, now in force**",
            f"Channels: {channels} (a category covers its channels, a channel its threads)",
            f"Who: {roles}",
            f"Blocked members: {mentions(rules.blocked, '@')}",
            "Messages not allowed get: " + ("a short notice" if rules.notice else "silence"),
        ]
        if bounds:
            lines.append(f"-# The bot's operator also limits {', '.join(bounds)} for every server.")
        return "\n".join(lines)

    # -- how it answers ---------------------------------------------------------------------

    @app_commands.command(name="answer-mode", description="Mention-only or always answer here")
    @app_commands.describe(
        channel="The channel, category or thread", mode="mention only, always, or inherit"
    )
    @app_commands.choices(mode=MODE_CHOICES)
    async def answer_mode(
        self, interaction: discord.Interaction, channel: Where, mode: app_commands.Choice[str]
    ) -> None:
        if (guild_id := await self._admin(interaction)) is None:
            return
        if mode.value == "always" and not self.bot.settings.message_content_intent:
            await self._answer(interaction, NEEDS_INTENT)
            return
        value = None if mode.value == "inherit" else mode.value
        rules = await self.controls.set_channel(guild_id, channel.id, "answer_mode", value)
        self._log(interaction, f"channel {channel.id} answer mode {mode.value}")
        await self._answer(interaction, self.render_place(rules, channel))

    @app_commands.command(name="threads", description="Answer a mention in a new thread")
    @app_commands.describe(
        enabled="true: a mention in a channel opens a thread for the conversation",
        channel="Only this channel or category (default: the whole server)",
    )
    async def threads(
        self, interaction: discord.Interaction, enabled: bool, channel: Where | None = None
    ) -> None:
        if (guild_id := await self._admin(interaction)) is None:
            return
        if channel is None:
            rules = await self.controls.set_server(guild_id, "threads", int(enabled))
        else:
            rules = await self.controls.set_channel(guild_id, channel.id, "threads", int(enabled))
        self._log(interaction, f"threads {enabled} in {channel.id if channel else 'server'}")
        await self._answer(interaction, self.render_place(rules, channel))

    @app_commands.command(name="memory", description="Turn Mnemo's memory on or off here")
    @app_commands.describe(
        enabled="false: answer from the recent conversation only; learn and keep nothing more"
    )
    async def memory(self, interaction: discord.Interaction, enabled: bool) -> None:
        if (guild_id := await self._admin(interaction)) is None:
            return
        rules = await self.controls.set_server(guild_id, "memory", int(enabled))
        self._log(interaction, f"memory {enabled}")
        await self._answer(interaction, self.render_place(rules, None))

    @app_commands.command(
        name="channel-context", description="Whether Mnemo sees the channel's recent messages"
    )
    @app_commands.describe(
        mode="on: prompts hold the channel's recent messages from everyone; off; or inherit",
        channel="Only this channel, category or thread (default: the whole server)",
    )
    @app_commands.choices(mode=CONTEXT_CHOICES)
    async def channel_context(
        self,
        interaction: discord.Interaction,
        mode: app_commands.Choice[str],
        channel: Where | None = None,
    ) -> None:
        if (guild_id := await self._admin(interaction)) is None:
            return
        value = None if mode.value == "inherit" else int(mode.value == "on")
        if channel is None:
            rules = await self.controls.set_server(guild_id, "channel_context", value)
        else:
            rules = await self.controls.set_channel(guild_id, channel.id, "channel_context", value)
        self._log(
            interaction, f"channel context {mode.value} in {channel.id if channel else 'server'}"
        )
        text = self.render_place(rules, channel)
        if mode.value == "on" and not self.bot.settings.message_content_intent:
            text += "\n" + CONTEXT_WITHOUT_INTENT
        await self._answer(interaction, text)

    # -- persona and model ------------------------------------------------------------------

    @persona.command(name="set", description="Set the persona (system prompt) here")
    @app_commands.describe(
        text="Who Mnemo is and how it answers (visible to anyone who asks it)",
        channel="Only this channel or category (default: the whole server)",
    )
    async def persona_set(
        self,
        interaction: discord.Interaction,
        text: app_commands.Range[str, 1, 4000],
        channel: Where | None = None,
    ) -> None:
        if (guild_id := await self._admin(interaction)) is None:
            return
        problem = self.controls.persona_problem(text)
        if problem is not None:
            await self._answer(interaction, problem + " Nothing was changed.")
            return
        rules = await self._set_here(guild_id, channel, "persona", text)
        self._log(interaction, f"persona set in {channel.id if channel else 'server'}")
        await self._answer(interaction, self.render_place(rules, channel))

    @persona.command(name="show", description="The persona in force here")
    @app_commands.describe(channel="A channel or category (default: the whole server)")
    async def persona_show(
        self, interaction: discord.Interaction, channel: Where | None = None
    ) -> None:
        await self._show_here(interaction, channel)

    @persona.command(name="reset", description="Back to the server's (or the bot's) persona")
    @app_commands.describe(channel="A channel or category (default: the whole server)")
    async def persona_reset(
        self, interaction: discord.Interaction, channel: Where | None = None
    ) -> None:
        await self._reset_here(interaction, channel, "persona", "persona")

    @model.command(name="set", description="Choose the chat model here")
    @app_commands.describe(
        name="One of the models the bot's operator offers",
        channel="Only this channel or category (default: the whole server)",
    )
    async def model_set(
        self, interaction: discord.Interaction, name: str, channel: Where | None = None
    ) -> None:
        if (guild_id := await self._admin(interaction)) is None:
            return
        problem = self.controls.model_problem(name)
        if problem is not None:
            await self._answer(interaction, problem + ". Nothing was changed.")
            return
        rules = await self._set_here(guild_id, channel, "chat_model", name)
        self._log(interaction, f"model {name} in {channel.id if channel else 'server'}")
        await self._answer(interaction, self.render_place(rules, channel))

    @model_set.autocomplete("name")
    async def model_names(
        self, interaction: discord.Interaction, current: str
    ) -> list[app_commands.Choice[str]]:
        names = self.bot.settings.allowed_chat_models
        found = [name for name in names if current.lower() in name.lower()]
        return [app_commands.Choice(name=name, value=name) for name in found[:25]]

    @model.command(name="show", description="The chat model in force here, and the choices")
    @app_commands.describe(channel="A channel or category (default: the whole server)")
    async def model_show(
        self, interaction: discord.Interaction, channel: Where | None = None
    ) -> None:
        for name in self.bot.settings.allowed_chat_models:  # what the fleet learned of each
            await self.bot.engine.vision.sees(name)
        await self._show_here(interaction, channel)

    @model.command(name="reset", description="Back to the server's (or the bot's) model")
    @app_commands.describe(channel="A channel or category (default: the whole server)")
    async def model_reset(
        self, interaction: discord.Interaction, channel: Where | None = None
    ) -> None:
        await self._reset_here(interaction, channel, "chat_model", "model")

    async def _show_here(self, interaction: discord.Interaction, channel: Where | None) -> None:
        """What is in force in the channel (or server), for a show subcommand."""
        if (guild_id := await self._admin(interaction, change=False)) is None:
            return
        await self._answer(
            interaction, self.render_place(await self.controls.rules(guild_id), channel)
        )

    async def _reset_here(
        self, interaction: discord.Interaction, channel: Where | None, column: str, what: str
    ) -> None:
        """Drop a channel's (or the server's) own value, for a reset subcommand."""
        if (guild_id := await self._admin(interaction)) is None:
            return
        rules = await self._set_here(guild_id, channel, column, None)
        self._log(interaction, f"{what} reset in {channel.id if channel else 'server'}")
        await self._answer(interaction, self.render_place(rules, channel))

    async def _set_here(
        self, guild_id: int, channel: Where | None, name: str, value: str | None
    ) -> ServerRules:
        if channel is None:
            return await self.controls.set_server(guild_id, name, value)
        return await self.controls.set_channel(guild_id, channel.id, name, value)

    def render_place(self, rules: ServerRules, channel: Where | None) -> str:
        """What is in force in one channel (or server-wide), and where each value comes from."""
        chain: tuple[int, ...] = ()
        if isinstance(channel, app_commands.AppCommandThread):
            parent = self.bot.get_channel(channel.parent_id)
            chain = (channel.id, channel.parent_id, getattr(parent, "category_id", None) or 0)
        elif channel is not None:
            chain = (channel.id, channel.category_id or 0)
        chain = tuple(c for c in chain if c)
        view = resolve(rules, chain)
        settings = self.bot.settings
        where = f"<#{channel.id}>" if channel is not None else "this server"
        persona = view.persona if view.persona is not None else None
        mode = self._mode_text(view)
        lines = [
            f"**Now in force in {where}**",
            f"Answers: {mode}",
            "Threads: a mention opens a thread for the conversation"
            if view.threads
            else "Threads: answers in place",
            f"Model: `{self.controls.model_for(view)}`"
            + ("" if view.chat_model else " (the bot's default)")
            + f" · offered: {', '.join(f'`{m}`' for m in settings.allowed_chat_models)}",
            f"Sees images: {self.bot.engine.vision.describe(self.controls.model_for(view))}",
            "Memory: on"
            if view.memory
            else "Memory: off (recent conversation only, learns nothing)",
            "Channel context: " + self._context_text(view),
            "Persona: " + ("the bot's default" if persona is None else ""),
        ]
        text = "\n".join(lines)
        if persona is not None:
            text += "\n>>> " + persona[: 1900 - len(text)]
        return text

    def _context_text(self, view: ChannelView) -> str:
        on = self.controls.channel_context_for(view)
        text = "on (the channel's recent messages, who said what)" if on else "off"
        if view.channel_context is None:
            text += " (the bot's default)"
        if on and not self.bot.settings.message_content_intent:
            text += ", messages that mention Mnemo only (no Message Content intent)"
        return text

    def _mode_text(self, view: ChannelView) -> str:
        if view.answer_mode != "always":
            return "when mentioned or replied to"
        if not self.bot.settings.message_content_intent:
            return "set to always, inactive: the bot runs without the Message Content intent"
        return "every message (always answer)"

    # -- data and usage ---------------------------------------------------------------------

    @app_commands.command(name="forget", description="Erase a member's data in this server only")
    @app_commands.describe(member="The member whose messages, summaries and facts to erase")
    async def forget_member(self, interaction: discord.Interaction, member: discord.User) -> None:
        if (guild_id := await self._admin(interaction, change=False)) is None:
            return
        question = f"Erase everything Mnemo learned from {member.mention} in this server?"
        if not await confirm(interaction, question, "Erase", wait_seconds=self.confirm_timeout):
            return
        counts = await self.bot.engine.forget_member(member.id, guild_id)
        log.info(
            "Admin %s erased member %s's data in guild %s", interaction.user.id, member.id, guild_id
        )
        await interaction.edit_original_response(
            content=f"Done. Deleted {describe_deleted(counts)} of {member.mention} in this server.",
            view=None,
        )

    @app_commands.command(name="stats", description="This server's usage counts (no content)")
    async def stats(self, interaction: discord.Interaction) -> None:
        if (guild_id := await self._admin(interaction, change=False)) is None:
            return
        stats = await self.bot.engine.guild_stats(guild_id)
        usage = await self.controls.usage(guild_id)
        top = ", ".join(f"<@{user}> `{user}` {tokens}" for user, tokens in usage.top) or "none"
        lines = [
            "**Mnemo in this server**",
            f"Conversations: {stats.sessions} ({stats.members} members)",
            f"Messages stored: {stats.messages}",
            f"Facts in force: {stats.facts}",
            f"Tokens stored: {stats.tokens}",
            f"Model tokens today (UTC): {usage.today} · last 30 days: {usage.last_30_days}",
            f"Top members by model tokens, 30 days: {top}",
        ]
        if usage.budget:
            lines.append(
                f"Daily budget left: {max(usage.budget - usage.today, 0)} of {usage.budget}"
            )
        await self._answer(interaction, "\n".join(lines))

    # -- servers the operator did not allow -------------------------------------------------

    @commands.Cog.listener()
    async def on_guild_available(self, guild: discord.Guild) -> None:
        self._warn_if_not_allowed(guild)

    @commands.Cog.listener()
    async def on_guild_join(self, guild: discord.Guild) -> None:
        self._warn_if_not_allowed(guild)

    def _warn_if_not_allowed(self, guild: discord.Guild) -> None:
        # Ignored, not left: leaving cannot be undone by the operator (someone in the server
        # must invite the bot again), and a typo in ALLOWED_GUILD_IDS should cost nothing.
        if not self.controls.policy.guild_allowed(guild.id):
            log.warning(
                "Server %s (%s) is not in ALLOWED_GUILD_IDS: ignoring its messages. Add its id,"
                " or remove the bot from it in Discord.",
                guild.id,
                guild.name,
            )

    def _log(self, interaction: discord.Interaction, change: str) -> None:
        log.info("Admin %s in guild %s: %s", interaction.user.id, interaction.guild_id, change)


async def setup(bot: MemoryBot) -> None:
    await bot.add_cog(Admin(bot))
