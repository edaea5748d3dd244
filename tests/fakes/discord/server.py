"""FakeDiscord: one class composed of the parts (one module each), holding the state they share,
and serving them on 127.0.0.1 (start, close, install into discord.py)."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from typing import ClassVar

import discord
import yarl
from aiohttp import web

from tests.fakes.discord.faults import Faults, _Fault
from tests.fakes.discord.gateway import Gateway, _Connection, _Session
from tests.fakes.discord.interactions import Interactions
from tests.fakes.discord.protocol import ATTACHMENT_LIMIT, JSON, _Snowflakes
from tests.fakes.discord.records import (
    BotMessage,
    FakeInteraction,
    FakeUser,
    RecordedRequest,
    StoredFile,
)
from tests.fakes.discord.rest import Rest
from tests.fakes.discord.rest_guilds import RestGuilds
from tests.fakes.discord.rest_interactions import RestInteractions
from tests.fakes.discord.rest_messages import RestMessages
from tests.fakes.discord.users import Users
from tests.fakes.discord.waiting import Waiting
from tests.fakes.discord.world import World


class FakeDiscord(
    World,
    Waiting,
    Faults,
    Gateway,
    Users,
    Interactions,
    Rest,
    RestGuilds,
    RestMessages,
    RestInteractions,
):
    """A loopback Discord (gateway + REST) that the real discord.py client can connect to."""

    BOT_USER_ID: ClassVar[int] = 1_100_000_000_000_000_001
    APPLICATION_ID: ClassVar[int] = 1_100_000_000_000_000_002
    GUILD_ID: ClassVar[int] = 1_200_000_000_000_000_001
    CHANNEL_ID: ClassVar[int] = 1_200_000_000_000_000_011
    OTHER_CHANNEL_ID: ClassVar[int] = 1_200_000_000_000_000_012
    THREAD_ID: ClassVar[int] = 1_200_000_000_000_000_013
    BOT_ROLE_ID: ClassVar[int] = 1_200_000_000_000_000_021
    ADMIN_ROLE_ID: ClassVar[int] = 1_200_000_000_000_000_022
    MEMBER_ROLE_ID: ClassVar[int] = 1_200_000_000_000_000_023
    CATEGORY_ID: ClassVar[int] = 1_200_000_000_000_000_031
    CATEGORY_CHANNEL_ID: ClassVar[int] = 1_200_000_000_000_000_032
    GUILD2_ID: ClassVar[int] = 1_300_000_000_000_000_001
    GUILD2_CHANNEL_ID: ClassVar[int] = 1_300_000_000_000_000_011
    GUILD2_BOT_ROLE_ID: ClassVar[int] = 1_300_000_000_000_000_021
    DM_CHANNEL_OFFSET: ClassVar[int] = 100_000_000_000_000_000

    def __init__(
        self,
        *,
        heartbeat_interval_ms: int = 41250,
        interaction_deadline: float = 3.0,
        echo_bot_messages: bool = True,
        shard_count: int = 1,
        max_concurrency: int = 1,
    ) -> None:
        self.heartbeat_interval_ms = heartbeat_interval_ms
        # Sharding as Discord does it: guild events go to shard (guild_id >> 22) % shard_count,
        # DMs only to shard 0; at most `max_concurrency` IDENTIFYs per 5 s, in buckets of
        # shard_id % max_concurrency (a faster IDENTIFY is recorded in `pacing_violations`).
        self.shard_count = shard_count
        self.max_concurrency = max_concurrency
        self.interaction_deadline = interaction_deadline
        self.echo_bot_messages = echo_bot_messages
        # Discord refuses a message whose files add up to more than this (10 MiB for a bot
        # by default) with 413, code 40005, and tells it in each interaction
        # (`attachment_size_limit`); a test may lower it.
        self.upload_limit = ATTACHMENT_LIMIT

        self.bot_user = FakeUser(self.BOT_USER_ID, "mnemo", "Mnemo", bot=True)
        self.alice = FakeUser(1_400_000_000_000_000_001, "alice", "Alice")
        self.bob = FakeUser(1_400_000_000_000_000_002, "bob", "Bob")
        self.admin = FakeUser(1_400_000_000_000_000_003, "admin", "Admin")
        self.other_bot = FakeUser(1_400_000_000_000_000_004, "otherbot", "Other Bot", bot=True)
        self.owner = FakeUser(1_400_000_000_000_000_005, "owner", "Owner")
        members = [self.alice, self.bob, self.admin, self.other_bot, self.owner, self.bot_user]
        self.users: dict[int, FakeUser] = {user.id: user for user in members}

        # Recording.
        self.requests: list[RecordedRequest] = []
        self.unknown_requests: list[RecordedRequest] = []
        self.gateway_received: list[JSON] = []
        self.gateway_urls: list[str] = []
        self.identify_payloads: list[JSON] = []
        self.dispatched: list[tuple[str, JSON]] = []
        self.lost_dispatches: list[tuple[str, JSON]] = []
        self.identify_count = 0
        self.identify_times: list[tuple[float, int]] = []  # (monotonic time, shard id)
        self.pacing_violations: list[tuple[int, float]] = []  # (shard id, seconds since last)
        self.resume_count = 0
        self.global_commands: list[JSON] = []
        self.guild_commands: dict[int, list[JSON]] = {}

        self._ids = _Snowflakes()
        self._faults: list[_Fault] = []
        self._guilds: dict[int, JSON] = {}
        self._roles: dict[int, list[JSON]] = {}
        self._channels: dict[int, JSON] = {}
        self._channel_guild: dict[int, int | None] = {}
        self._member_roles: dict[tuple[int, int], list[int]] = {}
        self._not_members: set[tuple[int, int]] = set()  # (guild id, user id): left the server
        self._user_messages: dict[int, JSON] = {}
        self._bot_messages: dict[int, BotMessage] = {}
        self._channel_log: dict[int, list[BotMessage]] = {}
        self._cursors: dict[int, int] = {}
        self._interactions: dict[int, FakeInteraction] = {}
        self._interactions_by_token: dict[str, FakeInteraction] = {}
        self._cdn: dict[int, StoredFile] = {}
        self.cdn_downloads: list[int] = []
        """Ids of the attachment files the bot downloaded from the CDN, in order."""
        self._mention_prefixes: dict[int, str] = {}
        self._command_ids: dict[tuple[int | None, str, int], int] = {}
        self._build_world()

        self._sessions: dict[int, _Session] = {}  # by shard id (0 when unsharded)
        self._connections: set[_Connection] = set()
        self._gateway_lock = asyncio.Lock()
        self._pulse = asyncio.Event()
        self._runner: web.AppRunner | None = None
        self._port = 0
        self._saved_patches: tuple[str, yarl.URL] | None = None
        self._routes = self._build_routes()

    @property
    def _session(self) -> _Session | None:
        """Shard 0's session: the only one of an unsharded bot."""
        return self._sessions.get(0)

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        """Serve on 127.0.0.1 on a free port."""
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/api/v10/{tail:.*}", self._handle_api)
        app.router.add_get("/attachments/{channel}/{file_id}/{name}", self._handle_cdn)
        app.router.add_get("/", self._handle_gateway)
        app.router.add_get("/resume", self._handle_gateway)
        self._runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=1.0)
        await self._runner.setup()
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.bind(("127.0.0.1", 0))
        self._port = sock.getsockname()[1]
        await web.SockSite(self._runner, sock).start()

    async def close(self) -> None:
        """Close the websockets and the server, and restore discord.py."""
        for conn in list(self._connections):
            conn.closed_by_server = True
            with contextlib.suppress(Exception):
                await asyncio.wait_for(conn.ws.close(code=1001), 2.0)
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        self.uninstall()

    def install(self) -> None:
        """Point discord.py (REST base URL and default gateway) at this server."""
        if self._saved_patches is None:
            gateway = discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY
            self._saved_patches = (discord.http.Route.BASE, gateway)
        discord.http.Route.BASE = self.base_url
        discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(self.gateway_url)

    def uninstall(self) -> None:
        """Undo :meth:`install`."""
        if self._saved_patches is not None:
            discord.http.Route.BASE, discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = (
                self._saved_patches
            )
            self._saved_patches = None

    @property
    def port(self) -> int:
        return self._port

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._port}/api/v10"

    @property
    def gateway_url(self) -> str:
        return f"ws://127.0.0.1:{self._port}/"

    @property
    def resume_gateway_url(self) -> str:
        return f"ws://127.0.0.1:{self._port}/resume"
