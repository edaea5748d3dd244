"""Start-up, one step at a time: settings → database → model server → Discord; and the ready line.

Each step that fails raises `StartupError` with the process's exit status and one line for the
operator (what is wrong, what to do). `python -m bot` prints that line and exits; no traceback.
The exit statuses are documented in docs/operation.md ("Exit status").
"""

from __future__ import annotations

import asyncio
import logging
from asyncio import FIRST_COMPLETED
from typing import Any

import aiohttp
import discord

from bot.config import Settings
from storage import DatabaseUnusable, Storage, StorageError, StorageUnavailable

log = logging.getLogger("bot")

EXIT_OK = 0  # stopped by SIGTERM / Ctrl-C
EXIT_ERROR = 1  # an unexpected error (logged with its traceback: a bug to report)
EXIT_CONFIG = 2  # something to fix in the settings or the developer portal
EXIT_DATABASE = 3  # the database cannot be used (or not reached in DATABASE_CONNECT_SECONDS)
EXIT_UNREACHABLE = 4  # Discord could not be reached in DISCORD_CONNECT_SECONDS

# What Mnemo needs in a channel: read it, answer (also in threads, as replies), suppress link
# previews (Embed Links) and attach /memory export files. The ready line's invite URL asks
# for these.
PERMISSIONS = discord.Permissions(
    view_channel=True,
    send_messages=True,
    send_messages_in_threads=True,
    read_message_history=True,
    embed_links=True,
    attach_files=True,
)
SCOPES = ("bot", "applications.commands")
BACKOFF_FIRST_SECONDS = 1.0
BACKOFF_MAX_SECONDS = 15.0
PROBE_TIMEOUT_SECONDS = 10.0

MISSING_INTENT = (
    "the Message Content intent is not enabled for this bot: enable it in the developer"
    " portal (Bot > Privileged Gateway Intents) or set MESSAGE_CONTENT_INTENT=false"
)
BAD_TOKEN = "Discord rejected DISCORD_TOKEN; copy it again from the developer portal (Bot page)"


class StartupError(Exception):
    """A start-up step failed: `line` says what to do, `status` is the exit status."""

    def __init__(self, status: int, line: str) -> None:
        super().__init__(line)
        self.status = status
        self.line = line


class Backoff:
    """Retrying one start-up step for a budget of seconds: waits of 1, 2, 4 … up to 15 s.

    `attempts` and `elapsed` go into the line that gives up; `pause` logs the retry."""

    def __init__(self, budget_seconds: float) -> None:
        self._loop = asyncio.get_running_loop()
        self._started = self._loop.time()
        self._budget = budget_seconds
        self._delay = BACKOFF_FIRST_SECONDS
        self.attempts = 0

    def attempt(self) -> None:
        self.attempts += 1

    @property
    def elapsed(self) -> float:
        return self._loop.time() - self._started

    @property
    def left(self) -> float:
        return self._budget - self.elapsed

    async def pause(
        self, what: str, problem: str, stop: asyncio.Event | asyncio.Future[Any]
    ) -> bool:
        """Log "`what` is not reachable yet" and wait for the next attempt; True when `stop`
        was set meanwhile."""
        delay = self._delay
        log.info("%s is not reachable yet (%s); trying again in %.0f s", what, problem, delay)
        self._delay = min(delay * 2, BACKOFF_MAX_SECONDS)
        waiting = stop.wait() if isinstance(stop, asyncio.Event) else asyncio.shield(stop)
        try:
            await asyncio.wait_for(waiting, min(delay, self.left))
        except TimeoutError:
            return False
        return True


# -- step 2: the database ---------------------------------------------------------------------


async def open_storage(settings: Settings, stopping: asyncio.Event) -> Storage | None:
    """Open the database. A PostgreSQL server that does not answer yet (a fleet and its
    database often start together) is retried with backoff for DATABASE_CONNECT_SECONDS;
    anything else wrong with the database stops start-up at once. None if asked to stop."""
    url = settings.database_url
    backoff = Backoff(settings.database_connect_seconds)
    while True:
        backoff.attempt()
        try:
            return await Storage.open(
                url, backups=settings.db_backups, backup_days=settings.db_backup_days
            )
        except StorageUnavailable as error:  # messages hold no password
            problem = str(error)
            if url.backend != "postgres":
                raise StartupError(EXIT_DATABASE, problem) from None
        except (DatabaseUnusable, StorageError) as error:
            raise StartupError(EXIT_DATABASE, str(error)) from None
        if backoff.left <= 0:
            raise StartupError(
                EXIT_DATABASE,
                f"{problem} (for {backoff.elapsed:.0f} s, {backoff.attempts} attempts): check"
                " that the server runs and accepts connections; Mnemo gives up after"
                " DATABASE_CONNECT_SECONDS",
            )
        if await backoff.pause("The database", problem, stopping):
            return None


# -- step 4: Discord --------------------------------------------------------------------------


async def reach_discord(settings: Settings, stopping: asyncio.Event) -> bool:
    """Wait until Discord's API answers, retrying with backoff for DISCORD_CONNECT_SECONDS.

    Returns False when asked to stop meanwhile. discord.py's login does not retry a
    connection error, so a host whose network comes up a little after the bot would
    otherwise fail at once.
    """
    url = discord.http.Route.BASE + "/gateway"  # unauthenticated and cheap
    backoff = Backoff(settings.discord_connect_seconds)
    async with aiohttp.ClientSession() as session:
        while True:
            backoff.attempt()
            problem = await _probe(session, url)
            if problem is None:
                return True
            if backoff.left <= 0:
                raise StartupError(
                    EXIT_UNREACHABLE,
                    f"could not reach Discord at {url} for {backoff.elapsed:.0f} s"
                    f" ({backoff.attempts} attempts; last: {problem}): check this machine's"
                    " network, DNS, firewall or proxy; Mnemo gives up after"
                    " DISCORD_CONNECT_SECONDS",
                )
            if await backoff.pause("Discord", problem, stopping):
                return False


async def recommended_shards(settings: Settings) -> int:
    """With SHARD_COUNT 0 (automatic): how many shards Discord recommends for this bot, asked
    with discord.py's own REST client (one login check, one GET /gateway/bot). 1 when it
    cannot tell; the login that follows then says what is wrong."""
    if settings.shard_count:
        return settings.shard_count
    http = discord.http.HTTPClient(asyncio.get_running_loop())
    try:
        async with asyncio.timeout(PROBE_TIMEOUT_SECONDS * 3):
            await http.static_login(settings.discord_token)
            shards, _, _ = await http.get_bot_gateway()
        return max(int(shards), 1)
    except discord.LoginFailure:
        raise StartupError(EXIT_CONFIG, BAD_TOKEN) from None
    except (discord.DiscordException, aiohttp.ClientError, OSError, TimeoutError) as error:
        log.info("Could not ask Discord how many shards it recommends (%s); using one", error)
        return 1
    finally:
        await http.close()


async def _probe(session: aiohttp.ClientSession, url: str) -> str | None:
    """None when Discord answers (any status below 500), else what went wrong."""
    try:
        timeout = aiohttp.ClientTimeout(total=PROBE_TIMEOUT_SECONDS)
        async with session.get(url, timeout=timeout) as response:
            if response.status < 500:
                return None
            return f"HTTP {response.status}"
    except (aiohttp.ClientError, OSError) as error:
        return str(error) or type(error).__name__
    except TimeoutError:
        return f"no answer within {PROBE_TIMEOUT_SECONDS:.0f} s"


async def log_in(bot: discord.Client, token: str) -> None:
    """discord.py's login (which also runs the bot's setup_hook), its failures as lines."""
    try:
        await bot.login(token)
    except discord.LoginFailure:
        raise StartupError(EXIT_CONFIG, BAD_TOKEN) from None
    except (discord.DiscordServerError, aiohttp.ClientError, OSError, TimeoutError) as error:
        raise StartupError(
            EXIT_UNREACHABLE, f"Discord did not complete the login ({error}); try again later"
        ) from None


async def connect_until_ready(
    bot: discord.Client, stop: asyncio.Future[Any], settings: Settings
) -> asyncio.Future[None] | None:
    """Connect to the gateway and wait for READY, retrying with backoff for
    DISCORD_CONNECT_SECONDS. Returns the running connection, or None when asked to stop.

    discord.py retries a dropped connection by itself, but not a first one that fails (it
    then raises from its reconnect code), so the first connection is retried here.
    """
    backoff = Backoff(settings.discord_connect_seconds)
    while True:
        backoff.attempt()
        connection = asyncio.ensure_future(bot.connect(reconnect=True))
        ready: asyncio.Future[Any] = asyncio.ensure_future(bot.wait_until_ready())
        try:
            done, _ = await asyncio.wait(
                {connection, ready, stop},
                timeout=max(backoff.left, 0),
                return_when=FIRST_COMPLETED,
            )
        finally:
            ready.cancel()
        if ready in done:
            return connection
        if connection in done:
            error = None if connection.cancelled() else connection.exception()
            if error is not None:
                refuse_fatal_close(error)  # raises its line
            problem = _network_problem(error)
        else:
            connection.cancel()
            await asyncio.gather(connection, return_exceptions=True)
            if stop in done:
                return None
            problem = "no READY from Discord"
        if backoff.left <= 0:
            raise StartupError(
                EXIT_UNREACHABLE,
                f"logged in, but could not connect to Discord's gateway"
                f" ({discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY}) for"
                f" {backoff.elapsed:.0f} s ({backoff.attempts} attempts; last: {problem}):"
                " check that websockets (wss, port 443) are not blocked by a firewall or proxy",
            )
        if await backoff.pause("Discord's gateway", problem, stop):
            return None


def _network_problem(error: BaseException | None) -> str:
    """What went wrong with the network in `error` (or what it was caused by); re-raises
    anything else: an unexpected error is a bug to see with its traceback."""
    seen = error
    while seen is not None:
        if isinstance(seen, OSError | aiohttp.ClientError | TimeoutError | discord.GatewayNotFound):
            return str(seen) or type(seen).__name__
        seen = seen.__cause__ or seen.__context__
    if error is None:
        return "the connection ended"
    raise error


def gateway_result(connection: asyncio.Future[None]) -> None:
    """The end of the gateway connection: nothing when it was closed by us, else a line."""
    if connection.cancelled():
        return
    error = connection.exception()
    if error is not None:
        refuse_fatal_close(error)
        raise error


def refuse_fatal_close(error: BaseException) -> None:
    """A close of the gateway that retrying cannot fix raises its StartupError line."""
    if isinstance(error, discord.PrivilegedIntentsRequired):
        raise StartupError(EXIT_CONFIG, MISSING_INTENT)
    if isinstance(error, discord.LoginFailure):
        raise StartupError(EXIT_CONFIG, BAD_TOKEN)
    if isinstance(error, discord.ConnectionClosed):
        # Fatal gateway closes are raised, not retried (discord.py); say what to fix.
        if error.code == 4004:
            raise StartupError(EXIT_CONFIG, BAD_TOKEN)
        raise StartupError(
            EXIT_ERROR, f"Discord closed the connection ({error.code}): {error.reason}"
        )


# -- the ready line ---------------------------------------------------------------------------


def invite_url(application_id: int) -> str:
    return discord.utils.oauth_url(application_id, permissions=PERMISSIONS, scopes=SCOPES)


def database_in_use(settings: Settings) -> str:
    """The database as the operator should recognise it, without its password."""
    url = settings.database_url
    return f"SQLite {url.path.resolve()}" if url.path is not None else f"PostgreSQL {url}"


def ready_line(bot: discord.Client, settings: Settings) -> str:
    servers = len(bot.guilds)
    running: list[int] | None = getattr(bot, "shard_ids", None) or (
        list(range(bot.shard_count)) if bot.shard_count else None
    )
    shards = (
        f"shard{'s' if len(running) > 1 else ''} {', '.join(map(str, running))}"
        f" of {bot.shard_count}"
        if running and bot.shard_count and bot.shard_count > 1
        else "1 shard"
    )
    line = (
        f"Mnemo is ready as {bot.user} in {servers} server{'s' if servers != 1 else ''}"
        f" ({shards}), database {database_in_use(settings)}"
    )
    if bot.application_id is not None:
        line += f"; invite it with {invite_url(bot.application_id)}"
        application = bot.application
        if application is not None and application.bot_public:
            line += " (Public Bot is on: anyone with this URL can add it)"
    return line
