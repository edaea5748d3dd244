"""MemoryBot: owns the database, the one LLM client, the tokenizer and the memory engine.

`python -m bot` opens the database and makes the LLM client before logging in (a database
that cannot be opened should stop the bot before it touches Discord) and hands them over;
the rest is created in `setup_hook`. Everything is closed in `close()`. Nothing happens in
`on_ready`, which can fire more than once.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import discord
from discord import app_commands
from discord.ext import commands

from bot.app import make_engine, make_llm, make_tokenizer
from bot.client.channel_log import ChannelLog
from bot.client.members import MemberLookup
from bot.client.places import PublicPlaces
from bot.client.resume import Conversations, RestartRecovery
from bot.config import Settings
from bot.engine.engine import MemoryEngine
from bot.model.llm import LLMClient
from bot.model.probe import check_model_server
from bot.policy.access import OperatorPolicy
from bot.runtime.heap import freeze_start_up_objects, release_start_up_objects
from bot.runtime.heartbeat import HEARTBEAT_KEY, HEARTBEAT_SECONDS
from storage import Storage, StorageError

log = logging.getLogger(__name__)

EXPIRED_INTERACTION = 10062  # Discord's "Unknown interaction": answered after its deadline
SYNC_FINGERPRINT_KEY = "command_sync_fingerprint"
SYNC_CLAIM_SECONDS = 300.0
SHUTDOWN_GRACE_SECONDS = 4.0  # hosts send SIGKILL ~10 s after SIGTERM


class MemoryBot(commands.Bot):
    def __init__(
        self,
        settings: Settings,
        *,
        extensions: Sequence[str],
        storage: Storage | None = None,
        llm: LLMClient | None = None,
        guild_ready_timeout: float = 2.0,
    ) -> None:
        # Mnemo is text-only: no warnings about voice libraries it does not need.
        discord.VoiceClient.warn_nacl = False
        discord.VoiceClient.warn_dave = False
        # Only the events Mnemo uses: less gateway traffic, less to keep in memory.
        intents = discord.Intents(
            guilds=True,
            guild_messages=True,
            dm_messages=True,
            message_content=settings.message_content_intent,
        )
        super().__init__(
            command_prefix=commands.when_mentioned,
            intents=intents,
            allowed_mentions=discord.AllowedMentions.none(),
            help_command=None,
            guild_ready_timeout=guild_ready_timeout,
            **_shard_options(settings),
        )
        self.settings = settings
        self._extensions = tuple(extensions)  # the cogs, by module name (cogs.EXTENSIONS)
        self.members = MemberLookup(self, OperatorPolicy.from_settings(settings))  # DM access
        # The channel context's lines, in memory only (bot/client/channel_log.py).
        self.channel_log = ChannelLog(lambda: self.user.id if self.user is not None else None)
        self.public_places = PublicPlaces()  # who may read what: see on_guild_channel_update
        self._storage = storage  # handed over: closed in close() like what setup_hook opens
        self._llm = llm
        self._engine: MemoryEngine | None = None
        self._heartbeat: asyncio.Task[None] | None = None
        self._resumer: asyncio.Task[None] | None = None
        self.conversations: Conversations | None = None  # set by the chat cog as it loads
        self._shutdown: asyncio.Future[None] | None = None
        self._identify_concurrency = 1  # Discord's max_concurrency, read in setup_hook
        self._login_started = False

    @property
    def engine(self) -> MemoryEngine:
        if self._engine is None:
            raise RuntimeError("the bot is not set up yet")
        return self._engine

    @property
    def storage(self) -> Storage:
        if self._storage is None:
            raise RuntimeError("the bot is not set up yet")
        return self._storage

    async def login(self, token: str) -> None:
        self._login_started = True
        await super().login(token)

    async def setup_hook(self) -> None:
        settings = self.settings
        tokenizer = await make_tokenizer(settings)
        if self._storage is None:
            self._storage = await Storage.open(settings.database_url)
        if self._llm is None:
            self._llm = make_llm(settings)
            await check_model_server(self._llm, settings)  # one warning line if it looks wrong
        self._identify_concurrency = await self._read_identify_concurrency()
        self._engine = make_engine(self._storage, self._llm, tokenizer, settings)
        await self._engine.start()
        for extension in self._extensions:
            await self.load_extension(extension)
        self.tree.on_error = self.on_app_command_error  # type: ignore[method-assign]
        await self.sync_commands()
        self._heartbeat = asyncio.create_task(self._beat(), name="mnemo-heartbeat")
        if self.conversations is not None:  # the chat cog, loaded above
            recovery = RestartRecovery(self, self.conversations)
            self._resumer = asyncio.create_task(recovery.run(), name="mnemo-resume")
        freeze_start_up_objects()
        log.info(
            "Mnemo is set up: database %s, chat model %s, tokenizer %s",
            settings.database_url.redacted(),
            settings.chat_model,
            tokenizer.name,
        )

    async def _read_identify_concurrency(self) -> int:
        """Discord's `max_concurrency`: how many shards may IDENTIFY per 5 s."""
        recommended, _, limit = await self.http.get_bot_gateway()
        if self.settings.shard_count and recommended > self.settings.shard_count:
            log.warning(
                "Discord recommends %d shards for this bot; set SHARD_COUNT (see docs/operation.md,"
                " Running at scale)",
                recommended,
            )
        if limit["remaining"] < 50:
            log.warning(
                "Discord allows only %d more logins in the next %.0f h for this token;"
                " past that it resets the token",
                limit["remaining"],
                limit["reset_after"] / 3_600_000,
            )
        return max(int(limit["max_concurrency"]), 1)

    async def before_identify_hook(self, shard_id: int | None, *, initial: bool = False) -> None:
        """Pace logins across every process of the fleet: one IDENTIFY per 5 s in each of
        Discord's `max_concurrency` buckets, claimed in the shared database (this replaces
        discord.py's default 5 s sleep before a re-IDENTIFY, which paced one process only)."""
        bucket = (shard_id or 0) % self._identify_concurrency
        while (wait := await self.storage.fleet.claim_identify(bucket, now=time.time())) > 0:
            log.debug("Shard %s waits %.1f s for its login slot", shard_id, wait)
            await asyncio.sleep(wait)

    async def sync_commands(self) -> None:
        """Make the slash commands visible where users are.

        With DEV_GUILD_ID: to that server, at every start (instant). Otherwise globally, and
        only when the definitions changed since the last sync by this application, or Discord
        lost them (an operator reset them, another application shares the database): global
        syncs are rate-limited and take a while to reach every client, and one read of what
        Discord has is cheap.
        """
        if self.settings.dev_guild_id:
            guild = discord.Object(id=self.settings.dev_guild_id)
            self.tree.copy_global_to(guild=guild)
            synced = await self.tree.sync(guild=guild)
            log.info("Synced %d slash commands to server %s", len(synced), guild.id)
            return
        # Keyed by the application: a sync of another application's commands is not ours.
        fingerprint = f"{self.application_id}:{self.command_fingerprint()}"
        claim = "command-sync"
        if await self.storage.state.get(SYNC_FINGERPRINT_KEY) == fingerprint:
            if await self._discord_has_our_commands():
                log.info("Slash commands unchanged since the last sync; not syncing")
                return
            claim = "command-resync"  # lost on Discord's side since that sync, maybe just now
        # Processes of a fleet start together: one of them syncs, the others see its result.
        if not await self.engine.fleet.claim_period(claim, SYNC_CLAIM_SECONDS):
            log.info("Another process is syncing the slash commands")
            return
        synced = await self.tree.sync()
        await self.storage.state.set(SYNC_FINGERPRINT_KEY, fingerprint)
        log.info("Synced %d slash commands globally", len(synced))

    def owns(self, guild_id: int | None) -> bool:
        """Whether this process receives the events of this server (DMs: shard 0)."""
        shards: list[int] | None = getattr(self, "shard_ids", None)  # the sharded client's
        if shards is None or not self.shard_count:
            return True  # one connection, or every shard in this process
        shard = 0 if guild_id is None else (guild_id >> 22) % self.shard_count
        return shard in shards

    async def _beat(self) -> None:
        """Write the heartbeat while connected to the gateway (read by `mnemo health`)."""
        await self.wait_until_ready()
        failing = False
        while not self.is_closed():
            if self.ws is not None and self.ws.open:
                try:
                    now = datetime.now(UTC).isoformat(timespec="seconds")
                    await self.storage.state.set(HEARTBEAT_KEY, now)
                    failing = False
                except StorageError as error:
                    if not failing:  # one line per outage, not one every 30 s
                        log.warning("Could not write the heartbeat: %s", error)
                    failing = True
            await asyncio.sleep(HEARTBEAT_SECONDS)

    async def _discord_has_our_commands(self) -> bool:
        """Whether Discord has a global command for each of ours, and no other (by name and
        type; the fingerprint covers the definitions). A failed read trusts the last sync."""
        try:
            registered = await self.tree.fetch_commands()
        except discord.HTTPException as error:
            log.warning("Could not read the registered slash commands: %s", error)
            return True
        ours = {
            (str(definition.get("name")), int(definition.get("type", 1)))
            for definition in (command.to_dict(self.tree) for command in self.tree.get_commands())
        }
        theirs = {(command.name, command.type.value) for command in registered}
        if ours != theirs:
            log.info(
                "Discord has %d of this bot's %d slash commands registered; syncing",
                len(ours & theirs),
                len(ours),
            )
        return ours == theirs

    def command_fingerprint(self) -> str:
        definitions = sorted(
            (command.to_dict(self.tree) for command in self.tree.get_commands()),
            key=lambda definition: str(definition.get("name")),
        )
        encoded = json.dumps(definitions, sort_keys=True, default=str).encode()
        return hashlib.sha256(encoded).hexdigest()

    async def on_app_command_error(
        self, interaction: discord.Interaction, error: app_commands.AppCommandError
    ) -> None:
        """One handler for every slash command: a short ephemeral answer, one log line."""
        cause = getattr(error, "original", error)
        name = interaction.command.qualified_name if interaction.command else "?"
        if isinstance(cause, discord.NotFound) and cause.code == EXPIRED_INTERACTION:
            log.warning("/%s: the interaction expired before the answer (Discord's 3 s)", name)
            return
        if isinstance(cause, StorageError):
            log.error("/%s: database error: %s", name, cause)
            text = "The database is unavailable right now; nothing was changed. Try again soon."
        else:
            log.error("/%s failed", name, exc_info=cause)
            text = "Something went wrong with that command; nothing was changed. Please try again."
        await send_ephemeral(interaction, text)

    async def on_message(self, message: discord.Message, /) -> None:
        # No prefix commands: chat is handled by cogs.chat, commands are slash commands.
        return

    # What may change which places of a server its @everyone can view (bot.policy.audience).

    async def on_guild_channel_create(self, channel: discord.abc.GuildChannel, /) -> None:
        self.public_places.forget(channel.guild.id)

    async def on_guild_channel_delete(self, channel: discord.abc.GuildChannel, /) -> None:
        self.public_places.forget(channel.guild.id)

    async def on_guild_channel_update(
        self, before: discord.abc.GuildChannel, after: discord.abc.GuildChannel, /
    ) -> None:
        self.public_places.forget(after.guild.id)

    async def on_guild_role_update(self, before: discord.Role, after: discord.Role, /) -> None:
        self.public_places.forget(after.guild.id)

    async def on_guild_remove(self, guild: discord.Guild, /) -> None:
        self.public_places.forget(guild.id)

    async def close(self) -> None:
        """Shut down once, however many callers ask (a signal handler and `async with`)."""
        if self._shutdown is None:
            self._shutdown = asyncio.ensure_future(self._shut_down())
        await asyncio.shield(self._shutdown)

    async def _shut_down(self) -> None:
        """Stop taking messages, let replies in flight finish (they still need Discord), then
        disconnect, stop background work and close what setup_hook opened."""
        if self._engine is not None:
            await self._engine.drain(SHUTDOWN_GRACE_SECONDS)
        for task in (self._heartbeat, self._resumer):
            if task is not None:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
        if self._login_started:
            # (The sharded client can only close what login set up.)
            await super().close()
        if self._engine is not None:
            await self._engine.close(SHUTDOWN_GRACE_SECONDS)
        if self._llm is not None:
            await self._llm.close()
        if self._storage is not None:
            await self._storage.close()
        release_start_up_objects()


def _shard_options(settings: Settings) -> dict[str, Any]:
    """The shards to run (only the sharded client takes them)."""
    options: dict[str, Any] = {}
    if settings.shard_count:
        options["shard_count"] = settings.shard_count
    if settings.shard_ids:
        options["shard_ids"] = list(settings.shard_ids)
    return options


class ShardedMemoryBot(MemoryBot, commands.AutoShardedBot):
    """The same bot over the shards SHARD_COUNT/SHARD_IDS name, all in this process; with
    SHARD_COUNT 0, over as many shards as Discord recommends (discord.py asks it).

    Only when shards are needed: one unsharded connection is what a bot in fewer than 2,500
    servers needs, and discord.py's plain client handles a fatal close more reliably.
    """


def create_bot(settings: Settings, *, shards: int = 1, **options: Any) -> MemoryBot:
    """The bot for these settings: sharded when SHARD_COUNT is set, or when it is 0 and
    Discord recommends more than one shard (`shards`, see startup.recommended_shards)."""
    cls = ShardedMemoryBot if settings.shard_count or shards > 1 else MemoryBot
    return cls(settings, **options)


async def send_ephemeral(interaction: discord.Interaction, text: str) -> None:
    """Answer privately, whether or not the interaction was already acknowledged."""
    try:
        if interaction.response.is_done():
            await interaction.followup.send(text, ephemeral=True)
        else:
            await interaction.response.send_message(text, ephemeral=True)
    except discord.HTTPException as error:
        log.warning("Could not deliver an error message: %s", error)
