"""A loopback Discord for end-to-end tests: the gateway websocket and the REST API on 127.0.0.1.

The real, unmodified discord.py client talks to it once :meth:`FakeDiscord.install` has pointed
``discord.http.Route.BASE`` and ``discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY`` here::

    fake = FakeDiscord()
    await fake.start()
    fake.install()
    task = asyncio.create_task(bot.start("fake-token"))
    await fake.wait_ready()
    payload = await fake.send_message(fake.alice, fake.CHANNEL_ID, "hi", mention_bot=True)
    reply = await fake.next_bot_message(fake.CHANNEL_ID)
    ...
    await bot.close()
    await task
    await fake.close()          # also restores discord.py

The world
---------
Guild ``GUILD_ID`` ("Test Server") has text channels ``CHANNEL_ID`` and ``OTHER_CHANNEL_ID``, a
public thread ``THREAD_ID`` under ``CHANNEL_ID``, the roles @everyone (id ``GUILD_ID``), the bot's
managed role ``BOT_ROLE_ID``, ``ADMIN_ROLE_ID`` (Manage Server) and ``MEMBER_ROLE_ID`` (no extra
permissions; give it with :meth:`FakeDiscord.set_roles`), and a category ``CATEGORY_ID`` holding
the channel ``CATEGORY_CHANNEL_ID``. Guild ``GUILD2_ID`` has channel ``GUILD2_CHANNEL_ID``.
``alice``, ``bob``, ``admin`` (with the admin role), ``other_bot`` and ``owner`` (owner of both
guilds and of the application) are members of both guilds. Each user has a deterministic DM
channel, :meth:`FakeDiscord.dm_channel_id`.

What Discord does and the fake does too
---------------------------------------
* Gateway: HELLO, heartbeat ACKs, IDENTIFY → READY + one GUILD_CREATE per guild, RESUME →
  replay + RESUMED, INVALID_SESSION, close codes (4004, 4014… end the session), sequence numbers,
  plain JSON text frames (discord.py asks for ``compress=zlib-stream`` but also reads text).
* Events are filtered by the identified intents (GUILD_MESSAGES, DIRECT_MESSAGES); without the
  MESSAGE_CONTENT intent, guild messages that do not mention the bot arrive with empty content.
* The bot's own messages come back as MESSAGE_CREATE / MESSAGE_UPDATE / MESSAGE_DELETE (not the
  ephemeral ones), as on Discord; pass ``echo_bot_messages=False`` to turn that off.
* REST: content over 2000 UTF-16 units → 400/50035; embeds past Discord's limits (10 per message,
  6000 characters in all, title 256, description 4096, 25 fields, field name 256 and value 1024,
  footer 2048, author name 256) → 400/50035; an empty message → 400/50006; a reply to an
  unknown message → 400/50035; the first interaction callback later than 3 s → 404/10062; a second
  one → 400/40060; webhook (follow-up) routes before the interaction is acknowledged → 404/10015;
  editing or deleting someone else's message → 403. Unknown routes → 404 ``{"code": 0}`` and are
  kept in :attr:`FakeDiscord.unknown_requests`.
* Interactions: after a deferred (thinking) response the first follow-up fills in the original
  "thinking" message rather than creating a new one, and keeps the ephemeral choice of the defer.
  ``?with_response=1`` callbacks answer in the ``{"interaction": …, "resource": …}`` shape of
  discord.py 2.5+, so views sent in an interaction response are filed under the right message id.
* Attachments (the users' and the bot's) are served at their ``url``, so ``Attachment.read()``
  works.
* Starting a thread from a message (``POST …/messages/{id}/threads``) creates a public thread
  with the message's id, owned by the bot, and dispatches THREAD_CREATE.
* Slash command options of type channel and role: pass :class:`ChannelRef` / :class:`RoleRef`;
  they arrive with ``resolved`` data as Discord sends it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import mimetypes
import re
import secrets
import socket
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, ClassVar, Literal, TypeVar

import discord
import yarl
from aiohttp import BodyPartReader, WSMsgType, web

JSON = dict[str, Any]
T = TypeVar("T")

DISCORD_EPOCH_MS = 1_420_070_400_000
MAX_CONTENT = 2000
ATTACHMENT_LIMIT = 10 * 1024 * 1024  # bytes of files in one message, for a bot by default

# Gateway opcodes and intents.
OP_DISPATCH, OP_HEARTBEAT, OP_IDENTIFY, OP_RESUME = 0, 1, 2, 6
OP_RECONNECT, OP_REQUEST_MEMBERS, OP_INVALID_SESSION, OP_HELLO, OP_HEARTBEAT_ACK = 7, 8, 9, 10, 11
INTENT_GUILDS = 1 << 0
INTENT_GUILD_MESSAGES = 1 << 9
INTENT_DIRECT_MESSAGES = 1 << 12
INTENT_MESSAGE_CONTENT = 1 << 15
# Close codes after which Discord will not resume the session.
SESSION_ENDING_CLOSE_CODES = frozenset({4004, 4007, 4009, 4010, 4011, 4012, 4013, 4014})

# Permission bits.
ADMINISTRATOR = 1 << 3
MANAGE_GUILD = 1 << 5
MEMBER_PERMISSIONS = sum(
    1 << bit
    for bit in (6, 10, 11, 14, 15, 16, 17, 18, 31, 35, 38)  # react, view, send, embed, attach,
)  # history, mention everyone, external emoji, app commands, public threads, send in threads
ALL_PERMISSIONS = discord.Permissions.all().value

# Message flags.
FLAG_SUPPRESS_EMBEDS = 1 << 2
FLAG_EPHEMERAL = 1 << 6
FLAG_LOADING = 1 << 7
FLAG_SUPPRESS_NOTIFICATIONS = 1 << 12
FLAG_COMPONENTS_V2 = 1 << 15
SETTABLE_FLAGS = FLAG_SUPPRESS_EMBEDS | FLAG_SUPPRESS_NOTIFICATIONS | FLAG_COMPONENTS_V2

# Interaction types → allowed callback types.
INTERACTION_COMMAND, INTERACTION_COMPONENT, INTERACTION_AUTOCOMPLETE = 2, 3, 4
ALLOWED_CALLBACKS = {2: {4, 5, 9}, 3: {4, 5, 6, 7, 9}, 4: {8}, 5: {4, 5, 6, 7}}
MENTION_RE = re.compile(r"<@!?(\d+)>")
ROLE_MENTION_RE = re.compile(r"<@&(\d+)>")
ReplayMode = Literal["unacked", "missed", "none"]


def utf16_len(text: str) -> int:
    """Length as Discord counts it: UTF-16 code units."""
    return len(text.encode("utf-16-le", "surrogatepass")) // 2


def _guild_id_of(data: JSON) -> int | None:
    """The guild an event belongs to (None for DMs and guild-less events)."""
    guild_id = data.get("guild_id")
    return int(guild_id) if guild_id else None


def _now_iso() -> str:
    return datetime.now(UTC).isoformat()


def _json(status: int, body: Any, headers: dict[str, str] | None = None) -> web.Response:
    # body=bytes keeps Content-Type exactly "application/json": discord.py compares it verbatim.
    data = json.dumps(body).encode()
    return web.Response(status=status, body=data, content_type="application/json", headers=headers)


def _error(status: int, code: int, message: str, errors: JSON | None = None) -> web.Response:
    body: JSON = {"message": message, "code": code}
    if errors is not None:
        body["errors"] = errors
    return _json(status, body)


def _embed_chars(embed: JSON) -> int:
    """The characters Discord counts against the 6000-character embed limit."""
    fields = embed.get("fields") or []
    texts = [
        embed.get("title"),
        embed.get("description"),
        (embed.get("footer") or {}).get("text"),
        (embed.get("author") or {}).get("name"),
        *(f.get("name") for f in fields),
        *(f.get("value") for f in fields),
    ]
    return sum(utf16_len(t) for t in texts if t)


def _embed_texts(embed: JSON) -> list[tuple[list[str], str, int]]:
    """Each text of an embed with its path in the body and Discord's limit for it."""
    texts: list[tuple[list[str], str, int]] = [
        (["title"], embed.get("title") or "", 256),
        (["description"], embed.get("description") or "", 4096),
        (["footer", "text"], (embed.get("footer") or {}).get("text") or "", 2048),
        (["author", "name"], (embed.get("author") or {}).get("name") or "", 256),
    ]
    for number, item in enumerate(embed.get("fields") or []):
        texts.append((["fields", str(number), "name"], item.get("name") or "", 256))
        texts.append((["fields", str(number), "value"], item.get("value") or "", 1024))
    return texts


def _invalid_form(field_path: Sequence[str], code: str, message: str) -> web.Response:
    errors: JSON = {"_errors": [{"code": code, "message": message}]}
    for name in reversed(field_path):
        errors = {name: errors}
    return _error(400, 50035, "Invalid Form Body", errors)


class _Snowflakes:
    """Unique, increasing, time-based snowflakes."""

    def __init__(self) -> None:
        self._last = 0

    def next(self) -> int:
        candidate = (int(time.time() * 1000) - DISCORD_EPOCH_MS) << 22
        self._last = max(candidate, self._last + 1)
        return self._last


@dataclass(frozen=True)
class ChannelRef:
    """A channel (or category, or thread) as a slash command option value."""

    id: int


@dataclass(frozen=True)
class RoleRef:
    """A role as a slash command option value."""

    id: int


@dataclass(frozen=True)
class FakeUser:
    """A Discord user the tests act as."""

    id: int
    username: str
    global_name: str | None
    bot: bool = False

    @property
    def mention(self) -> str:
        return f"<@{self.id}>"

    def payload(self) -> JSON:
        return {
            "id": str(self.id),
            "username": self.username,
            "global_name": self.global_name,
            "discriminator": "0",
            "avatar": None,
            "bot": self.bot,
            "system": False,
            "public_flags": 0,
        }


@dataclass
class StoredFile:
    """A file uploaded to the fake (by the bot) or attached to a user message."""

    id: int
    filename: str
    data: bytes
    content_type: str


@dataclass(eq=False)
class BotMessage:
    """A message the bot created through REST (a channel message or an interaction message).

    ``history`` holds every content the message had, the first one included; ``edits`` is
    ``history[1:]``. ``bodies`` are the JSON bodies the bot sent for it (create, then each edit).
    """

    id: int
    channel_id: int
    guild_id: int | None
    content: str = ""
    flags: int = 0
    allowed_mentions: JSON | None = None
    message_reference: JSON | None = None
    components: list[JSON] = field(default_factory=list)
    embeds: list[JSON] = field(default_factory=list)
    files: list[StoredFile] = field(default_factory=list)
    history: list[str] = field(default_factory=list)
    bodies: list[JSON] = field(default_factory=list)
    deleted: bool = False
    interaction_id: int | None = None
    timestamp: str = field(default_factory=_now_iso)
    edited_timestamp: str | None = None
    created_at: float = field(default_factory=time.monotonic)
    updated_at: float = field(default_factory=time.monotonic)

    @property
    def edits(self) -> list[str]:
        return self.history[1:]

    @property
    def attachments(self) -> list[tuple[str, bytes]]:
        return [(f.filename, f.data) for f in self.files]

    @property
    def reply_to_id(self) -> int | None:
        """The id of the message this one replies to (``message_reference`` as the bot sent it
        may carry the id as an int or a str)."""
        if not self.message_reference or self.message_reference.get("message_id") is None:
            return None
        return int(self.message_reference["message_id"])

    @property
    def ephemeral(self) -> bool:
        return bool(self.flags & FLAG_EPHEMERAL)

    @property
    def loading(self) -> bool:
        """A deferred ("thinking…") interaction response not filled in yet."""
        return bool(self.flags & FLAG_LOADING)

    @property
    def custom_ids(self) -> list[str]:
        """custom_id of every component, nested ones included."""
        found: list[str] = []
        stack = list(self.components)
        while stack:
            component = stack.pop(0)
            if "custom_id" in component:
                found.append(component["custom_id"])
            stack.extend(component.get("components", []))
        return found

    def component(self, custom_id: str) -> JSON | None:
        stack = list(self.components)
        while stack:
            component = stack.pop(0)
            if component.get("custom_id") == custom_id:
                return component
            stack.extend(component.get("components", []))
        return None


@dataclass
class RecordedRequest:
    """One REST request as the fake received it (``path`` is relative to ``/api/v10``)."""

    method: str
    path: str
    query: dict[str, str]
    json: Any
    files: list[tuple[str, bytes]]
    headers: dict[str, str]
    time: float
    status: int = 0
    injected: bool = False


@dataclass(eq=False)
class FakeInteraction:
    """An interaction the fake dispatched, and everything the bot answered to it."""

    id: int
    token: str
    type: int
    user: FakeUser
    channel_id: int
    guild_id: int | None
    payload: JSON
    fake: FakeDiscord = field(repr=False)
    message: BotMessage | None = None  # the message a component belongs to
    created_at: float = field(default_factory=time.monotonic)
    responses: list[JSON] = field(default_factory=list)  # callback bodies (normally one)
    original: BotMessage | None = None
    followups: list[BotMessage] = field(default_factory=list)
    edits: list[JSON] = field(default_factory=list)  # PATCH bodies of @original
    expired: bool = False

    @property
    def acknowledged(self) -> bool:
        return bool(self.responses)

    @property
    def flags(self) -> int:
        if self.original is not None:
            return self.original.flags
        if self.responses:
            return int((self.responses[0].get("data") or {}).get("flags") or 0)
        return 0

    @property
    def ephemeral(self) -> bool:
        return bool(self.flags & FLAG_EPHEMERAL)

    @property
    def messages(self) -> list[BotMessage]:
        first = [self.original] if self.original is not None else []
        return first + self.followups

    @property
    def attachments(self) -> list[tuple[str, bytes]]:
        return [item for message in self.messages for item in message.attachments]

    @property
    def choices(self) -> list[JSON] | None:
        """The autocomplete choices, once the bot answered an autocomplete interaction."""
        for body in self.responses:
            if body.get("type") == 8:
                return list((body.get("data") or {}).get("choices", []))
        return None

    async def response(self, timeout: float = 5.0) -> JSON:  # noqa: ASYNC109
        """The first callback body the bot sent: ``{"type": …, "data": …}``."""
        return await self.fake.wait_for(
            lambda: self.responses[0] if self.responses else None,
            timeout,
            f"a response to interaction {self.id}",
        )

    async def wait_text(self, timeout: float = 5.0) -> str:  # noqa: ASYNC109
        """The first non-empty text the user sees: the original response or a follow-up."""
        return await self.fake.wait_for(self._visible_text, timeout, f"text for {self.id}")

    def _visible_text(self) -> str | None:
        for message in self.messages:
            if not message.loading and message.content:
                return message.content
        return None


@dataclass
class _Fault:
    method: str
    pattern: re.Pattern[str]
    status: int | None
    count: int
    body: JSON | None = None
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0


@dataclass(eq=False)
class _Connection:
    ws: web.WebSocketResponse
    request: web.Request
    closed_by_server: bool = False

    async def send(self, payload: JSON) -> bool:
        try:
            await self.ws.send_str(json.dumps(payload))
        except (ConnectionError, RuntimeError):
            return False
        return True


@dataclass(eq=False)
class _Session:
    id: str
    intents: int
    shard: list[int] | None
    seq: int = 0
    log: list[tuple[int, str, JSON]] = field(default_factory=list)
    acked_seq: int | None = None
    conn: _Connection | None = None
    replay: ReplayMode = "unacked"


_STATUS_BODIES: dict[int, JSON] = {
    400: {"message": "Invalid Form Body", "code": 50035, "errors": {}},
    401: {"message": "401: Unauthorized", "code": 0},
    403: {"message": "Missing Permissions", "code": 50013},
    404: {"message": "404: Not Found", "code": 0},
    429: {"message": "You are being rate limited.", "retry_after": 0.05, "global": False},
}


class FakeDiscord:
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

    # ------------------------------------------------------------------ the world

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
        """A member's guild permissions (no channel overwrites exist in the fake)."""
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
            "channels": [c for c in channels if c["type"] != 11],
            "threads": [c for c in channels if c["type"] == 11],
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

    # ------------------------------------------------------------------ waiting

    def _notify(self) -> None:
        self._pulse.set()
        self._pulse = asyncio.Event()

    async def wait_for(self, predicate: Callable[[], T | None], timeout: float, what: str) -> T:  # noqa: ASYNC109
        """Wait until ``predicate()`` returns something other than None, and return it.

        The predicate is checked on every change in the fake and at least every 50 ms, so it may
        also look at state outside the fake (the bot's, say). Raises AssertionError on timeout.
        """
        deadline = time.monotonic() + timeout
        while True:
            pulse = self._pulse
            result = predicate()
            if result is not None:
                return result
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(
                    f"timed out after {timeout}s waiting for {what}{self._recent()}"
                )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(pulse.wait(), min(remaining, 0.05))

    def _recent(self) -> str:
        lines = [f"\n  {r.method} {r.path} -> {r.status}" for r in self.requests[-8:]]
        return "; last requests:" + "".join(lines) if lines else "; no REST requests yet"

    async def wait_ready(self, timeout: float = 5.0) -> None:  # noqa: ASYNC109
        """Wait until a gateway session is live: identified (READY and GUILD_CREATEs sent) or
        resumed (replay and RESUMED sent)."""
        await self.wait_for(lambda: True if self._live() else None, timeout, "a live gateway")

    def _live(self, shard: int = 0) -> bool:
        return self._connection(shard) is not None

    def _connection(self, shard: int = 0) -> _Connection | None:
        session = self._sessions.get(shard)
        return session.conn if session is not None else None

    def shard_of(self, guild_id: int | None) -> int:
        """The shard that receives this guild's events (DMs: shard 0)."""
        if guild_id is None:
            return 0
        return (guild_id >> 22) % self.shard_count

    async def wait_shards_ready(self, timeout: float = 10.0) -> None:  # noqa: ASYNC109
        """Wait until every shard has a live session."""
        await self.wait_for(
            lambda: True if all(self._live(s) for s in range(self.shard_count)) else None,
            timeout,
            f"all {self.shard_count} shards live",
        )

    async def wait_identify(self, count: int, timeout: float = 10.0) -> None:  # noqa: ASYNC109
        """Wait until the bot has identified ``count`` times and that session is live."""
        await self.wait_for(
            lambda: True if self.identify_count >= count and self._live() else None,
            timeout,
            f"IDENTIFY number {count}",
        )

    def bot_messages(
        self, channel_id: int, *, include_interactions: bool = False
    ) -> list[BotMessage]:
        """Messages the bot created in a channel, oldest first (deleted ones included).

        Interaction responses and follow-ups are left out unless ``include_interactions``.
        """
        log = self._channel_log.get(channel_id, [])
        return [m for m in log if include_interactions or m.interaction_id is None]

    async def next_bot_message(self, channel_id: int, timeout: float = 5.0) -> BotMessage:  # noqa: ASYNC109
        """The next channel message (not interaction message) the bot created in ``channel_id``
        that this method has not returned yet."""

        def pick() -> BotMessage | None:
            messages = self.bot_messages(channel_id)
            index = self._cursors.get(channel_id, 0)
            if index >= len(messages):
                return None
            self._cursors[channel_id] = index + 1
            return messages[index]

        return await self.wait_for(pick, timeout, f"a bot message in channel {channel_id}")

    async def expect_no_bot_message(self, channel_id: int, wait: float = 1.0) -> None:
        """Assert that, ``wait`` seconds from now, there is still no bot message in the channel
        that :meth:`next_bot_message` has not returned."""
        await asyncio.sleep(wait)
        unseen = self.bot_messages(channel_id)[self._cursors.get(channel_id, 0) :]
        assert not unseen, f"unexpected bot message(s): {[m.content[:80] for m in unseen]}"

    async def final_text(self, message: BotMessage, quiet: float = 1.5, timeout: float = 10) -> str:  # noqa: ASYNC109
        """The message's content once no edit has arrived for ``quiet`` seconds."""
        deadline = time.monotonic() + timeout
        while True:
            idle = time.monotonic() - message.updated_at
            if idle >= quiet:
                return message.content
            if time.monotonic() + (quiet - idle) > deadline:
                raise AssertionError(f"message {message.id} still changing after {timeout}s")
            await asyncio.sleep(quiet - idle)

    # ------------------------------------------------------------------ faults

    def fail_next(
        self,
        method: str,
        path_regex: str,
        status: int,
        *,
        count: int = 1,
        body: JSON | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        """Answer the next ``count`` matching REST requests with ``status``.

        ``path_regex`` must match the whole path after ``/api/v10`` (``re.fullmatch``). A 429
        gets ``retry_after`` 0.05 and a ``Via`` header, so discord.py waits and retries it.
        """
        default_headers = {"Via": "1.1 google", "Retry-After": "1"} if status == 429 else {}
        fault = _Fault(method.upper(), re.compile(path_regex), status, count)
        fault.body = {
            **_STATUS_BODIES.get(status, {"message": f"{status}", "code": 0}),
            **(body or {}),
        }
        fault.headers = {**default_headers, **(headers or {})}
        self._faults.append(fault)

    def delay_next(self, method: str, path_regex: str, seconds: float, *, count: int = 1) -> None:
        """Hold the next ``count`` matching REST requests for ``seconds`` before handling them."""
        self._faults.append(
            _Fault(method.upper(), re.compile(path_regex), None, count, delay=seconds)
        )

    def _take_fault(self, method: str, path: str) -> _Fault | None:
        for fault in self._faults:
            if fault.method == method and fault.pattern.fullmatch(path):
                fault.count -= 1
                if fault.count <= 0:
                    self._faults.remove(fault)
                return fault
        return None

    # ------------------------------------------------------------------ gateway

    async def _handle_gateway(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(max_msg_size=0)
        await ws.prepare(request)
        conn = _Connection(ws, request)
        self._connections.add(conn)
        self.gateway_urls.append(str(request.rel_url))
        try:
            hello = {"heartbeat_interval": self.heartbeat_interval_ms, "_trace": ["fake"]}
            await conn.send({"op": OP_HELLO, "d": hello, "s": None, "t": None})
            async for msg in ws:
                if msg.type is WSMsgType.TEXT:
                    await self._on_gateway_message(conn, json.loads(msg.data))
        finally:
            self._connections.discard(conn)
            self._on_connection_lost(conn)
        return ws

    def _session_of(self, conn: _Connection) -> tuple[int, _Session] | None:
        for shard, session in self._sessions.items():
            if session.conn is conn:
                return shard, session
        return None

    def _on_connection_lost(self, conn: _Connection) -> None:
        found = self._session_of(conn)
        if found is None:
            return
        shard, session = found
        session.conn = None
        if not conn.closed_by_server and conn.ws.close_code in (1000, 1001):
            del self._sessions[shard]  # a clean close by the client ends the session
        self._notify()

    async def _on_gateway_message(self, conn: _Connection, msg: JSON) -> None:
        self.gateway_received.append(msg)
        op, raw = msg.get("op"), msg.get("d")
        data: JSON = raw if isinstance(raw, dict) else {}
        if op == OP_HEARTBEAT:
            if (found := self._session_of(conn)) is not None:
                found[1].acked_seq = raw if isinstance(raw, int) else None
            await conn.send({"op": OP_HEARTBEAT_ACK, "d": None, "s": None, "t": None})
        elif op == OP_IDENTIFY:
            await self._on_identify(conn, data)
        elif op == OP_RESUME:
            await self._on_resume(conn, data)
        elif op == OP_REQUEST_MEMBERS:
            await self._on_request_members(data)

    async def _on_identify(self, conn: _Connection, data: JSON) -> None:
        shard_id, refusal = self._identify_shard(data.get("shard"))
        if refusal is not None:
            conn.closed_by_server = True
            await conn.ws.close(code=refusal[0], message=refusal[1].encode())
            return
        async with self._gateway_lock:
            self._record_identify(shard_id)
            self.identify_payloads.append(data)
            session = _Session(
                secrets.token_hex(16), int(data.get("intents", 0)), data.get("shard")
            )
            session.conn = conn
            self._sessions[shard_id] = session
            await self._send_dispatch(session, "READY", self._ready_payload(session), log=False)
            if session.intents & INTENT_GUILDS:
                for guild_id in self._guilds_of(shard_id):
                    payload = self._guild_create_payload(guild_id)
                    await self._send_dispatch(session, "GUILD_CREATE", payload, log=False)
        self._notify()

    def _identify_shard(self, shard: Any) -> tuple[int, tuple[int, str] | None]:
        """The shard an IDENTIFY asks for, or the close code Discord would answer with."""
        if shard is None:
            if self.shard_count > 1:
                return 0, (4011, "Sharding required.")
            return 0, None
        shard_id, count = int(shard[0]), int(shard[1])
        if count != self.shard_count or not 0 <= shard_id < count:
            return 0, (4010, "Invalid shard.")
        return shard_id, None

    def _record_identify(self, shard_id: int) -> None:
        now = time.monotonic()
        bucket = shard_id % self.max_concurrency
        earlier = [t for t, s in self.identify_times if s % self.max_concurrency == bucket]
        if earlier and now - earlier[-1] < 5.0:
            self.pacing_violations.append((shard_id, now - earlier[-1]))
        self.identify_times.append((now, shard_id))
        self.identify_count += 1

    def _guilds_of(self, shard_id: int) -> list[int]:
        return [gid for gid in self._guilds if self.shard_of(gid) == shard_id]

    def _ready_payload(self, session: _Session) -> JSON:
        ready: JSON = {
            "v": 10,
            "user": self._bot_user_payload(),
            "guilds": [
                {"id": str(gid), "unavailable": True}
                for gid in self._guilds_of(session.shard[0] if session.shard else 0)
            ],
            "session_id": session.id,
            "session_type": "normal",
            "resume_gateway_url": self.resume_gateway_url,
            "application": {"id": str(self.APPLICATION_ID), "flags": (1 << 19) | (1 << 15)},
            "private_channels": [],
            "relationships": [],
            "presences": [],
            "user_settings": {},
            "_trace": ["fake-discord"],
        }
        if session.shard is not None:
            ready["shard"] = session.shard
        return ready

    async def _on_resume(self, conn: _Connection, data: JSON) -> None:
        async with self._gateway_lock:
            session = next(
                (s for s in self._sessions.values() if s.id == data.get("session_id")), None
            )
            if session is None:
                await conn.send({"op": OP_INVALID_SESSION, "d": False, "s": None, "t": None})
                return
            self.resume_count += 1
            session.conn = conn
            for seq, event, payload in self._replayed(session, data.get("seq")):
                await conn.send({"op": OP_DISPATCH, "t": event, "s": seq, "d": payload})
            await self._send_dispatch(session, "RESUMED", {"_trace": ["fake-discord"]}, log=False)
        self._notify()

    @staticmethod
    def _replayed(session: _Session, resume_seq: int | None) -> list[tuple[int, str, JSON]]:
        if session.replay == "none":
            return []
        since = session.acked_seq if session.replay == "unacked" else resume_seq
        return [entry for entry in session.log if entry[0] > (since or 0)]

    async def _on_request_members(self, data: JSON) -> None:
        guild_id = int(data["guild_id"])
        wanted = {int(u) for u in data.get("user_ids") or []}
        query = (data.get("query") or "").lower()
        if wanted:
            users = [u for u in self.users.values() if u.id in wanted]
        else:
            users = [u for u in self.users.values() if u.username.lower().startswith(query)]
        chunk = {
            "guild_id": str(guild_id),
            "members": [self._member_payload(guild_id, u) for u in users],
            "chunk_index": 0,
            "chunk_count": 1,
            "not_found": [],
            "nonce": data.get("nonce"),
        }
        await self._dispatch("GUILD_MEMBERS_CHUNK", chunk, log=False)

    async def _send_dispatch(self, session: _Session, event: str, data: JSON, *, log: bool) -> None:
        session.seq += 1
        if log:
            session.log.append((session.seq, event, data))
        self.dispatched.append((event, data))
        if session.conn is not None:
            frame = {"op": OP_DISPATCH, "t": event, "s": session.seq, "d": data}
            await session.conn.send(frame)

    async def _dispatch(self, event: str, data: JSON, *, intent: int = 0, log: bool = True) -> None:
        """Send an event to the bot's session (or queue it for a resume, or lose it)."""
        async with self._gateway_lock:
            session = self._sessions.get(self.shard_of(_guild_id_of(data)))
            if session is None:
                self.lost_dispatches.append((event, data))
                return
            if intent and not session.intents & intent:
                return
            if event in ("MESSAGE_CREATE", "MESSAGE_UPDATE"):
                data = self._as_seen_by_bot(session, data)
            await self._send_dispatch(session, event, data, log=log)

    def _as_seen_by_bot(self, session: _Session, message: JSON) -> JSON:
        """Without the MESSAGE_CONTENT intent, guild messages that neither mention the bot nor
        come from it arrive with their content, embeds, attachments and components empty."""
        if session.intents & INTENT_MESSAGE_CONTENT or "guild_id" not in message:
            return message
        if message["author"]["id"] == str(self.BOT_USER_ID):
            return message
        if any(m["id"] == str(self.BOT_USER_ID) for m in message.get("mentions", [])):
            return message
        return {**message, "content": "", "embeds": [], "attachments": [], "components": []}

    async def drop_connection(
        self,
        *,
        replay: ReplayMode = "unacked",
        wait: bool = True,
        timeout: float = 5.0,  # noqa: ASYNC109
        shard: int = 0,
    ) -> None:
        """Cut the websocket abruptly; discord.py reconnects and RESUMEs.

        On resume the fake replays, before RESUMED: with ``"unacked"`` every event after the
        sequence number of the bot's last heartbeat (so events the bot already handled come
        again, as on Discord after a short drop), with ``"missed"`` only those after the resume
        sequence, with ``"none"`` nothing. ``wait`` waits for the resumed session.
        """
        session = self._require_session(shard)
        conn = session.conn
        assert conn is not None, "no live gateway connection"
        session.replay = replay
        conn.closed_by_server = True
        transport = conn.request.transport
        if transport is not None:
            transport.abort()
        else:
            await conn.ws.close(code=4000)
        if wait:
            await self.wait_for(
                lambda: True if self._live(shard) and self._connection(shard) is not conn else None,
                timeout,
                "the bot to reconnect",
            )

    async def invalidate_session(self, *, resumable: bool = False) -> None:
        """Send op 9 INVALID_SESSION. With ``resumable=False`` the session ends and events sent
        before the bot identifies again are lost; discord.py's default ``before_identify_hook``
        sleeps 5 s before that new IDENTIFY."""
        session = self._require_session()
        conn = session.conn
        if not resumable:
            del self._sessions[0]
            self._notify()
        if conn is not None:
            conn.closed_by_server = True
            await conn.send({"op": OP_INVALID_SESSION, "d": resumable, "s": None, "t": None})

    async def request_reconnect(self) -> None:
        """Send op 7 RECONNECT: discord.py closes the socket and resumes."""
        session = self._require_session()
        if session.conn is not None:
            session.replay = "missed"
            session.conn.closed_by_server = True
            await session.conn.send({"op": OP_RECONNECT, "d": None, "s": None, "t": None})

    async def close_gateway(self, code: int, reason: str = "") -> None:
        """Close the websocket with ``code``. 4004, 4007, 4009 and 4010-4014 also end the session
        (discord.py gives up on 4004 and 4010-4014, raising; it reconnects on the others)."""
        session = self._require_session()
        conn = session.conn
        if code in SESSION_ENDING_CLOSE_CODES:
            del self._sessions[0]
            self._notify()
        if conn is not None:
            conn.closed_by_server = True
            await conn.ws.close(code=code, message=reason.encode())

    def _require_session(self, shard: int = 0) -> _Session:
        session = self._sessions.get(shard)
        assert session is not None, f"the bot has no gateway session on shard {shard}"
        return session

    # ------------------------------------------------------------------ users act

    async def send_message(
        self,
        author: FakeUser,
        channel_id: int,
        content: str,
        *,
        mention_bot: bool = False,
        mention_bot_role: bool = False,
        mention_users: Sequence[FakeUser] = (),
        mention_everyone: bool = False,
        reply_to: JSON | BotMessage | None = None,
        reply_mention: bool = True,
        attachments: Sequence[JSON] = (),
        embeds: Sequence[JSON] = (),
        webhook_id: int | None = None,
    ) -> JSON:
        """A user posts in a guild channel, thread or DM channel: dispatch MESSAGE_CREATE.

        Mention options prepend their tokens to ``content`` (``<@bot>``, ``<@&bot role>``,
        ``<@user>``, ``@everyone``); ``mentions``/``mention_roles`` are parsed from the final text.
        ``reply_to`` (a user message payload or a :class:`BotMessage`) makes it a reply; with
        ``reply_mention`` the replied-to author is in ``mentions``, like a pinging reply.
        ``attachments`` are dicts with at least ``filename`` and ``data`` (bytes). Returns the
        payload (keep it for :meth:`redeliver`, :meth:`edit_user_message`, ``reply_to``).
        """
        guild_id = self.guild_of(channel_id)
        prefix = []
        if mention_bot:
            prefix.append(f"<@{self.BOT_USER_ID}>")
        if mention_bot_role and guild_id is not None:
            prefix.append(f"<@&{self.bot_role_id(guild_id)}>")
        prefix += [user.mention for user in mention_users]
        if mention_everyone:
            prefix.append("@everyone")
        text = " ".join([*prefix, content]) if prefix else content
        payload = self._user_message(author, channel_id, text, webhook_id)
        self._mention_prefixes[int(payload["id"])] = " ".join(prefix)
        payload["mention_everyone"] = mention_everyone
        payload["attachments"] = [self._user_attachment(channel_id, a) for a in attachments]
        payload["embeds"] = list(embeds)
        if reply_to is not None:
            self._make_reply(payload, reply_to, reply_mention)
        self._user_messages[int(payload["id"])] = payload
        await self._dispatch("MESSAGE_CREATE", payload, intent=self._message_intent(payload))
        return payload

    async def send_dm(self, author: FakeUser, content: str, **kwargs: Any) -> JSON:
        """A user writes to the bot in their DM channel (see :meth:`send_message`)."""
        return await self.send_message(author, self.dm_channel_id(author), content, **kwargs)

    async def redeliver(self, payload: JSON) -> None:
        """Dispatch the same MESSAGE_CREATE again (as a replay after a resume would)."""
        await self._dispatch("MESSAGE_CREATE", payload, intent=self._message_intent(payload))

    async def edit_user_message(
        self, payload: JSON, new_content: str, *, keep_mentions: bool = True
    ) -> JSON:
        """The author edits their message: dispatch MESSAGE_UPDATE with the full new message.

        With ``keep_mentions`` the mention tokens that :meth:`send_message` put in front of the
        text stay in front of ``new_content``; mentions are parsed again from the result.
        """
        guild_id = self.guild_of(int(payload["channel_id"]))
        prefix = self._mention_prefixes.get(int(payload["id"]), "") if keep_mentions else ""
        new_content = f"{prefix} {new_content}" if prefix else new_content
        edited = {**payload, "content": new_content, "edited_timestamp": _now_iso()}
        edited["mentions"] = self._mentions_in(new_content, guild_id)
        edited["mention_roles"] = self._role_mentions_in(new_content, guild_id)
        self._user_messages[int(payload["id"])] = edited
        await self._dispatch("MESSAGE_UPDATE", edited, intent=self._message_intent(edited))
        return edited

    async def delete_user_message(self, payload: JSON) -> None:
        """The author deletes their message: dispatch MESSAGE_DELETE."""
        self._user_messages.pop(int(payload["id"]), None)
        event = {"id": payload["id"], "channel_id": payload["channel_id"]}
        if "guild_id" in payload:
            event["guild_id"] = payload["guild_id"]
        await self._dispatch("MESSAGE_DELETE", event, intent=self._message_intent(payload))

    @staticmethod
    def _message_intent(payload: JSON) -> int:
        return INTENT_GUILD_MESSAGES if "guild_id" in payload else INTENT_DIRECT_MESSAGES

    def _user_message(
        self, author: FakeUser, channel_id: int, content: str, webhook_id: int | None
    ) -> JSON:
        guild_id = self.guild_of(channel_id)
        payload: JSON = {
            "id": str(self._ids.next()),
            "channel_id": str(channel_id),
            "author": author.payload(),
            "content": content,
            "timestamp": _now_iso(),
            "edited_timestamp": None,
            "tts": False,
            "mention_everyone": False,
            "mentions": self._mentions_in(content, guild_id),
            "mention_roles": self._role_mentions_in(content, guild_id),
            "attachments": [],
            "embeds": [],
            "pinned": False,
            "type": 0,
            "flags": 0,
            "components": [],
        }
        if guild_id is not None:
            payload["guild_id"] = str(guild_id)
        if webhook_id is not None:
            payload["webhook_id"] = str(webhook_id)
            payload["author"] = {**author.payload(), "id": str(webhook_id), "bot": True}
        elif guild_id is not None:
            payload["member"] = self._member_payload(guild_id, author, with_user=False)
        return payload

    def _make_reply(self, payload: JSON, target: JSON | BotMessage, ping: bool) -> None:
        referenced = self._message_payload(target) if isinstance(target, BotMessage) else target
        referenced = {k: v for k, v in referenced.items() if k != "referenced_message"}
        payload["type"] = 19
        payload["message_reference"] = {
            "type": 0,
            "message_id": referenced["id"],
            "channel_id": referenced["channel_id"],
        }
        if "guild_id" in referenced:
            payload["message_reference"]["guild_id"] = referenced["guild_id"]
        payload["referenced_message"] = referenced
        author_id = referenced["author"]["id"]
        if ping and all(m["id"] != author_id for m in payload["mentions"]):
            guild_id = self.guild_of(int(payload["channel_id"]))
            payload["mentions"].append(self._mention_entry(referenced["author"], guild_id))

    def _user_attachment(self, channel_id: int, spec: JSON) -> JSON:
        data: bytes = spec.get("data", b"")
        filename = spec.get("filename", "file.bin")
        content_type = spec.get("content_type") or mimetypes.guess_type(filename)[0]
        stored = StoredFile(
            self._ids.next(), filename, data, content_type or "application/octet-stream"
        )
        self._cdn[stored.id] = stored
        extra = {k: v for k, v in spec.items() if k not in ("data", "filename")}
        return {**self._attachment_payload(channel_id, stored), **extra}

    def _attachment_payload(self, channel_id: int, stored: StoredFile) -> JSON:
        url = (
            f"http://127.0.0.1:{self._port}/attachments/{channel_id}/{stored.id}/{stored.filename}"
        )
        return {
            "id": str(stored.id),
            "filename": stored.filename,
            "size": len(stored.data),
            "url": url,
            "proxy_url": url,
            "content_type": stored.content_type,
        }

    def _mention_entry(self, user: JSON, guild_id: int | None) -> JSON:
        entry = dict(user)
        known = self.users.get(int(user["id"]))
        if guild_id is not None and known is not None:
            entry["member"] = self._member_payload(guild_id, known, with_user=False)
        return entry

    def _mentions_in(self, content: str, guild_id: int | None) -> list[JSON]:
        seen: dict[int, JSON] = {}
        for match in MENTION_RE.finditer(content):
            user = self.users.get(int(match.group(1)))
            if user is not None and user.id not in seen:
                seen[user.id] = self._mention_entry(user.payload(), guild_id)
        return list(seen.values())

    def _role_mentions_in(self, content: str, guild_id: int | None) -> list[str]:
        if guild_id is None:
            return []
        known = {role["id"] for role in self._roles[guild_id]}
        found = dict.fromkeys(m.group(1) for m in ROLE_MENTION_RE.finditer(content))
        return [role_id for role_id in found if role_id in known]

    # ------------------------------------------------------------------ interactions

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

    def _command_identity(self, name: str, guild_id: int | None) -> tuple[int, int | None]:
        if guild_id is not None:
            for command in self.guild_commands.get(guild_id, []):
                if command["name"] == name and command.get("type", 1) == 1:
                    return int(command["id"]), guild_id
        for command in self.global_commands:
            if command["name"] == name and command.get("type", 1) == 1:
                return int(command["id"]), None
        return self._command_id(None, name, 1), None

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

    # ------------------------------------------------------------------ REST plumbing

    def _build_routes(self) -> list[tuple[str, re.Pattern[str], Callable[..., Any]]]:
        table: list[tuple[str, str, Callable[..., Any]]] = [
            ("GET", "/users/@me", self._get_me),
            ("POST", "/users/@me/channels", self._create_dm),
            ("GET", "/users/{user_id}", self._get_user),
            ("GET", "/gateway", self._get_gateway),
            ("GET", "/gateway/bot", self._get_gateway_bot),
            ("GET", "/oauth2/applications/@me", self._get_application),
            ("GET", "/applications/{app_id}/commands", self._get_commands),
            ("PUT", "/applications/{app_id}/commands", self._put_commands),
            ("GET", "/applications/{app_id}/guilds/{guild_id}/commands", self._get_commands),
            ("PUT", "/applications/{app_id}/guilds/{guild_id}/commands", self._put_commands),
            ("GET", "/guilds/{guild_id}", self._get_guild),
            ("GET", "/guilds/{guild_id}/members/{user_id}", self._get_member),
            ("GET", "/channels/{channel_id}", self._get_channel),
            ("GET", "/channels/{channel_id}/messages", self._list_messages),
            ("POST", "/channels/{channel_id}/messages", self._create_message),
            ("GET", "/channels/{channel_id}/messages/{message_id}", self._get_message),
            ("PATCH", "/channels/{channel_id}/messages/{message_id}", self._edit_message),
            ("DELETE", "/channels/{channel_id}/messages/{message_id}", self._delete_message),
            (
                "POST",
                "/channels/{channel_id}/messages/{message_id}/threads",
                self._start_thread,
            ),
            ("POST", "/channels/{channel_id}/typing", self._no_content),
            (
                "PUT",
                "/channels/{channel_id}/messages/{message_id}/reactions/{emoji}/@me",
                self._react,
            ),
            (
                "DELETE",
                "/channels/{channel_id}/messages/{message_id}/reactions/{emoji}/@me",
                self._react,
            ),
            ("POST", "/interactions/{interaction_id}/{token}/callback", self._callback),
            ("POST", "/webhooks/{app_id}/{token}", self._execute_webhook),
            ("GET", "/webhooks/{app_id}/{token}/messages/{message_id}", self._get_webhook_message),
            (
                "PATCH",
                "/webhooks/{app_id}/{token}/messages/{message_id}",
                self._edit_webhook_message,
            ),
            (
                "DELETE",
                "/webhooks/{app_id}/{token}/messages/{message_id}",
                self._delete_webhook_message,
            ),
        ]
        routes = []
        for method, template, handler in table:
            pattern = re.sub(r"\{(\w+)\}", r"(?P<\1>[^/]+)", template)
            routes.append((method, re.compile(pattern), handler))
        return routes

    async def _handle_api(self, request: web.Request) -> web.StreamResponse:
        record = await self._record(request)
        fault = self._take_fault(record.method, record.path)
        if fault is not None and fault.delay:
            await asyncio.sleep(fault.delay)
        if fault is not None and fault.status is not None:
            record.injected = True
            response = _json(fault.status, fault.body, fault.headers)
        else:
            response = await self._route(record)
        record.status = response.status
        self._notify()
        return response

    async def _route(self, record: RecordedRequest) -> web.Response:
        for method, pattern, handler in self._routes:
            match = pattern.fullmatch(record.path)
            if match and method == record.method:
                response: web.Response = await handler(record, **match.groupdict())
                return response
        self.unknown_requests.append(record)
        return _error(404, 0, "404: Not Found")

    async def _record(self, request: web.Request) -> RecordedRequest:
        body: Any = None
        files: list[tuple[str, bytes]] = []
        if request.content_type.startswith("multipart/"):
            reader = await request.multipart()
            async for part in reader:
                if not isinstance(part, BodyPartReader):
                    continue
                if part.name == "payload_json":
                    body = json.loads(await part.text())
                else:
                    files.append((part.filename or "file", bytes(await part.read())))
        else:
            raw = await request.read()
            if raw:
                body = json.loads(raw)
        record = RecordedRequest(
            method=request.method,
            path="/" + request.match_info["tail"],
            query=dict(request.query),
            json=body,
            files=files,
            headers=dict(request.headers),
            time=time.monotonic(),
        )
        self.requests.append(record)
        return record

    async def _handle_cdn(self, request: web.Request) -> web.Response:
        self.cdn_downloads.append(int(request.match_info["file_id"]))
        stored = self._cdn.get(int(request.match_info["file_id"]))
        if stored is None:
            return web.Response(status=404, text="Not Found")
        return web.Response(body=stored.data, content_type=stored.content_type)

    # ------------------------------------------------------------------ REST: users, app, guilds

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
            if not re.fullmatch(r"[-_\w]{1,32}", name) or name != name.lower():
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

    # ------------------------------------------------------------------ REST: messages

    async def _get_channel(self, record: RecordedRequest, channel_id: str) -> web.Response:
        channel = self._channels.get(int(channel_id))
        return _json(200, channel) if channel else _error(404, 10003, "Unknown Channel")

    async def _no_content(self, record: RecordedRequest, **_: str) -> web.Response:
        return web.Response(status=204)

    async def _list_messages(self, record: RecordedRequest, channel_id: str) -> web.Response:
        cid = int(channel_id)
        if cid not in self._channels:
            return _error(404, 10003, "Unknown Channel")
        users = [m for m in self._user_messages.values() if int(m["channel_id"]) == cid]
        bots = [self._message_payload(m) for m in self._visible_bot_messages(cid)]
        found = sorted(users + bots, key=lambda m: int(m["id"]), reverse=True)
        before, after = record.query.get("before"), record.query.get("after")
        if before:
            found = [m for m in found if int(m["id"]) < int(before)]
        if after:
            found = [m for m in found if int(m["id"]) > int(after)]
        return _json(200, found[: int(record.query.get("limit", 50))])

    def _visible_bot_messages(self, channel_id: int) -> list[BotMessage]:
        log = self._channel_log.get(channel_id, [])
        return [m for m in log if not m.deleted and not m.ephemeral]

    async def _create_message(self, record: RecordedRequest, channel_id: str) -> web.Response:
        cid = int(channel_id)
        if cid not in self._channels:
            return _error(404, 10003, "Unknown Channel")
        body = record.json or {}
        error = self._check_body(body, record.files) or self._check_reference(body)
        if error is not None:
            return error
        message = self._new_bot_message(cid, body, record.files)
        await self._echo("MESSAGE_CREATE", message)
        return _json(200, self._message_payload(message))

    async def _start_thread(
        self, record: RecordedRequest, channel_id: str, message_id: str
    ) -> web.Response:
        """A public thread from a message: it takes the message's id, as on Discord."""
        cid, mid = int(channel_id), int(message_id)
        guild_id = self.guild_of(cid)
        if guild_id is None or self._channels[cid]["type"] != 0:
            return _error(400, 50024, "Cannot execute action on this channel type")
        if self._find_message(cid, mid) is None:
            return _error(404, 10008, "Unknown Message")
        if mid in self._channels:
            return _error(400, 160004, "A thread has already been created for this message")
        name = str((record.json or {}).get("name") or "")
        if not 1 <= len(name) <= 100:
            return _invalid_form(["name"], "BASE_TYPE_BAD_LENGTH", "Must be 1-100 in length.")
        self._add_thread(guild_id, mid, cid, name, owner_id=self.BOT_USER_ID)
        thread = self._channels[mid]
        await self._dispatch("THREAD_CREATE", {**thread, "newly_created": True})
        return _json(201, thread)

    async def _get_message(
        self, record: RecordedRequest, channel_id: str, message_id: str
    ) -> web.Response:
        found = self._find_message(int(channel_id), int(message_id))
        return _json(200, found) if found else _error(404, 10008, "Unknown Message")

    async def _edit_message(
        self, record: RecordedRequest, channel_id: str, message_id: str
    ) -> web.Response:
        message = self._bot_message_in(int(channel_id), int(message_id))
        if message is None:
            if self._find_message(int(channel_id), int(message_id)) is not None:
                return _error(403, 50005, "Cannot edit a message authored by another user")
            return _error(404, 10008, "Unknown Message")
        return await self._apply_edit(message, record.json or {}, record.files)

    async def _delete_message(
        self, record: RecordedRequest, channel_id: str, message_id: str
    ) -> web.Response:
        message = self._bot_message_in(int(channel_id), int(message_id))
        if message is None:
            if self._find_message(int(channel_id), int(message_id)) is not None:
                return _error(403, 50013, "Missing Permissions")
            return _error(404, 10008, "Unknown Message")
        await self._delete_bot_message(message)
        return web.Response(status=204)

    async def _react(
        self, record: RecordedRequest, channel_id: str, message_id: str, emoji: str
    ) -> web.Response:
        if self._find_message(int(channel_id), int(message_id)) is None:
            return _error(404, 10008, "Unknown Message")
        return web.Response(status=204)

    def _bot_message_in(self, channel_id: int, message_id: int) -> BotMessage | None:
        message = self._bot_messages.get(message_id)
        if message is None or message.deleted or message.ephemeral:
            return None
        return message if message.channel_id == channel_id else None

    def _find_message(self, channel_id: int, message_id: int) -> JSON | None:
        bot_message = self._bot_message_in(channel_id, message_id)
        if bot_message is not None:
            return self._message_payload(bot_message)
        user_message = self._user_messages.get(message_id)
        if user_message is not None and int(user_message["channel_id"]) == channel_id:
            return user_message
        return None

    def _check_body(
        self,
        body: JSON,
        files: list[tuple[str, bytes]],
        existing: BotMessage | None = None,
        prefix: Sequence[str] = (),
    ) -> web.Response | None:
        """Discord's checks on a message body: files' size, length, embeds, and emptiness
        (after an edit)."""
        if sum(len(data) for _, data in files) > self.upload_limit:
            return _error(413, 40005, "Request entity too large")
        content = body.get("content")
        if isinstance(content, str) and utf16_len(content) > MAX_CONTENT:
            message = f"Must be {MAX_CONTENT} or fewer in length."
            return _invalid_form([*prefix, "content"], "BASE_TYPE_MAX_LENGTH", message)
        embeds = body.get("embeds") or []
        if len(embeds) > 10 or sum(_embed_chars(e) for e in embeds) > 6000:
            message = "Embed size exceeds maximum size of 6000"
            return _invalid_form([*prefix, "embeds"], "MAX_EMBED_SIZE_EXCEEDED", message)
        for index, embed in enumerate(embeds):
            for path, text, most in _embed_texts(embed):
                if utf16_len(text) > most:
                    return _invalid_form(
                        [*prefix, "embeds", str(index), *path],
                        "BASE_TYPE_MAX_LENGTH",
                        f"Must be {most} or fewer in length.",
                    )
            if len(embed.get("fields") or []) > 25:
                path = [*prefix, "embeds", str(index), "fields"]
                return _invalid_form(path, "BASE_TYPE_MAX_LENGTH", "Must be 25 or fewer in length.")
        if self._would_be_empty(body, files, existing):
            return _error(400, 50006, "Cannot send an empty message")
        return None

    @staticmethod
    def _would_be_empty(
        body: JSON, files: list[tuple[str, bytes]], existing: BotMessage | None
    ) -> bool:
        def pick(key: str, current: Any) -> Any:
            return body.get(key) if key in body else current

        content = pick("content", existing.content if existing else None)
        embeds = pick("embeds", existing.embeds if existing else None)
        components = pick("components", existing.components if existing else None)
        kept = pick("attachments", existing.files if existing else None)
        has_files = bool(files) or bool(kept)
        extras = body.get("sticker_ids") or body.get("poll")
        return not ((content or "").strip() or embeds or components or has_files or extras)

    def _check_reference(self, body: JSON) -> web.Response | None:
        reference = body.get("message_reference")
        if not reference or reference.get("fail_if_not_exists") is False:
            return None
        channel_id = int(reference.get("channel_id") or 0)
        message_id = int(reference.get("message_id") or 0)
        if self._find_message(channel_id, message_id) is None:
            path = ["message_reference"]
            return _invalid_form(path, "MESSAGE_REFERENCE_UNKNOWN_MESSAGE", "Unknown message")
        return None

    def _new_bot_message(
        self,
        channel_id: int,
        body: JSON,
        files: list[tuple[str, bytes]],
        *,
        interaction: FakeInteraction | None = None,
        extra_flags: int = 0,
    ) -> BotMessage:
        allowed = SETTABLE_FLAGS | (FLAG_EPHEMERAL if interaction else 0)
        message = BotMessage(
            id=self._ids.next(),
            channel_id=channel_id,
            guild_id=self.guild_of(channel_id),
            content=body.get("content") or "",
            flags=(int(body.get("flags") or 0) & allowed) | extra_flags,
            allowed_mentions=body.get("allowed_mentions"),
            message_reference=body.get("message_reference"),
            components=list(body.get("components") or []),
            embeds=list(body.get("embeds") or []),
            files=[self._store_file(name, data) for name, data in files],
            interaction_id=interaction.id if interaction else None,
        )
        message.history.append(message.content)
        message.bodies.append(body)
        self._bot_messages[message.id] = message
        self._channel_log.setdefault(channel_id, []).append(message)
        return message

    def _store_file(self, filename: str, data: bytes) -> StoredFile:
        content_type = mimetypes.guess_type(filename)[0] or "application/octet-stream"
        stored = StoredFile(self._ids.next(), filename, data, content_type)
        self._cdn[stored.id] = stored
        return stored

    async def _apply_edit(
        self, message: BotMessage, body: JSON, files: list[tuple[str, bytes]]
    ) -> web.Response:
        error = self._check_body(body, files, existing=message)
        if error is not None:
            return error
        self._update_message(message, body, files)
        await self._echo("MESSAGE_UPDATE", message)
        return _json(200, self._message_payload(message))

    def _update_message(
        self, message: BotMessage, body: JSON, files: list[tuple[str, bytes]]
    ) -> None:
        if "content" in body:
            message.content = body["content"] or ""
            message.history.append(message.content)
        if "embeds" in body:
            message.embeds = list(body["embeds"] or [])
        if "components" in body:
            message.components = list(body["components"] or [])
        if "allowed_mentions" in body:
            message.allowed_mentions = body["allowed_mentions"]
        if body.get("flags") is not None:
            kept = message.flags & ~SETTABLE_FLAGS
            message.flags = kept | (int(body["flags"]) & SETTABLE_FLAGS)
        if "attachments" in body or files:
            keep_ids = {int(a["id"]) for a in body.get("attachments") or [] if "id" in a}
            message.files = [f for f in message.files if f.id in keep_ids]
            message.files += [self._store_file(name, data) for name, data in files]
        message.flags &= ~FLAG_LOADING
        message.bodies.append(body)
        message.edited_timestamp = _now_iso()
        message.updated_at = time.monotonic()

    async def _delete_bot_message(self, message: BotMessage) -> None:
        message.deleted = True
        message.updated_at = time.monotonic()
        if self.echo_bot_messages and not message.ephemeral:
            event = {"id": str(message.id), "channel_id": str(message.channel_id)}
            if message.guild_id is not None:
                event["guild_id"] = str(message.guild_id)
            await self._dispatch("MESSAGE_DELETE", event, intent=self._message_intent(event))

    async def _echo(self, event: str, message: BotMessage) -> None:
        """Discord sends the bot its own (non-ephemeral) messages over the gateway too."""
        if self.echo_bot_messages and not message.ephemeral:
            payload = self._message_payload(message)
            await self._dispatch(event, payload, intent=self._message_intent(payload))

    def _message_payload(self, message: BotMessage) -> JSON:
        payload: JSON = {
            "id": str(message.id),
            "channel_id": str(message.channel_id),
            "author": self._bot_user_payload(),
            "content": message.content,
            "timestamp": message.timestamp,
            "edited_timestamp": message.edited_timestamp,
            "tts": False,
            "mention_everyone": False,
            "mentions": self._mentions_in(message.content, message.guild_id),
            "mention_roles": self._role_mentions_in(message.content, message.guild_id),
            "attachments": [self._attachment_payload(message.channel_id, f) for f in message.files],
            "embeds": message.embeds,
            "pinned": False,
            "type": 19 if message.message_reference else 0,
            "flags": message.flags,
            "components": message.components,
        }
        if message.guild_id is not None:
            payload["guild_id"] = str(message.guild_id)
        if message.message_reference:
            self._add_reference(payload, message.message_reference)
        if message.interaction_id is not None:
            self._add_interaction_metadata(payload, self._interactions[message.interaction_id])
        return payload

    def _add_reference(self, payload: JSON, reference: JSON) -> None:
        channel_id = int(reference.get("channel_id") or payload["channel_id"])
        payload["message_reference"] = {**reference, "channel_id": str(channel_id)}
        referenced = self._find_message(channel_id, int(reference.get("message_id") or 0))
        if referenced is not None:
            referenced = {k: v for k, v in referenced.items() if k != "referenced_message"}
        payload["referenced_message"] = referenced

    def _add_interaction_metadata(self, payload: JSON, interaction: FakeInteraction) -> None:
        payload["webhook_id"] = str(self.APPLICATION_ID)
        payload["application_id"] = str(self.APPLICATION_ID)
        if interaction.type == INTERACTION_COMMAND:
            payload["type"] = 20
        metadata: JSON = {
            "id": str(interaction.id),
            "type": interaction.type,
            "user": interaction.user.payload(),
            "authorizing_integration_owners": interaction.payload["authorizing_integration_owners"],
        }
        if interaction.message is not None:
            metadata["interacted_message_id"] = str(interaction.message.id)
        payload["interaction_metadata"] = metadata

    # ------------------------------------------------------------------ REST: interactions

    async def _callback(
        self, record: RecordedRequest, interaction_id: str, token: str
    ) -> web.Response:
        interaction = self._interactions.get(int(interaction_id))
        if interaction is None or interaction.token != token:
            return _error(404, 10062, "Unknown interaction")
        if interaction.responses:
            return _error(400, 40060, "Interaction has already been acknowledged.")
        late = time.monotonic() - interaction.created_at > self.interaction_deadline
        if interaction.expired or late:
            interaction.expired = True
            return _error(404, 10062, "Unknown interaction")
        body = record.json or {}
        kind, data = body.get("type"), body.get("data") or {}
        if kind not in ALLOWED_CALLBACKS[interaction.type]:
            return _invalid_form(["type"], "INTERACTION_CALLBACK_TYPE_INVALID", "Invalid type")
        if kind in (4, 7):
            existing = interaction.message if kind == 7 else None
            error = self._check_body(data, record.files, existing, prefix=["data"])
            if error is not None:
                return error
        interaction.responses.append(body)
        message = await self._apply_callback(interaction, kind, data, record.files)
        if record.query.get("with_response", "").lower() not in ("1", "true"):
            return web.Response(status=204)
        return _json(200, self._callback_body(interaction, kind, message))

    async def _apply_callback(
        self, interaction: FakeInteraction, kind: int, data: JSON, files: list[tuple[str, bytes]]
    ) -> BotMessage | None:
        if kind in (4, 5):
            loading = FLAG_LOADING if kind == 5 else 0
            body = data if kind == 4 else {"flags": data.get("flags")}
            message = self._new_bot_message(
                interaction.channel_id,
                body,
                files if kind == 4 else [],
                interaction=interaction,
                extra_flags=loading,
            )
            interaction.original = message
            await self._echo("MESSAGE_CREATE", message)
            return message
        if kind in (6, 7) and interaction.message is not None:
            interaction.original = interaction.message
            if kind == 7:
                self._update_message(interaction.message, data, files)
                await self._echo("MESSAGE_UPDATE", interaction.message)
            return interaction.message
        return None

    @staticmethod
    def _callback_body(interaction: FakeInteraction, kind: int, message: BotMessage | None) -> JSON:
        summary: JSON = {"id": str(interaction.id), "type": interaction.type}
        resource: JSON = {"type": kind}
        if message is not None:
            summary["response_message_id"] = str(message.id)
            summary["response_message_loading"] = message.loading
            summary["response_message_ephemeral"] = message.ephemeral
        if message is not None and kind in (4, 7):
            resource["message"] = interaction.fake._message_payload(message)
        return {"interaction": summary, "resource": resource}

    def _webhook_interaction(self, app_id: str, token: str) -> FakeInteraction | None:
        interaction = self._interactions_by_token.get(token)
        if app_id != str(self.APPLICATION_ID) or interaction is None:
            return None
        return interaction if interaction.acknowledged else None

    def _webhook_target(self, interaction: FakeInteraction, message_id: str) -> BotMessage | None:
        if message_id == "@original":
            target = interaction.original
        else:
            target = next((m for m in interaction.messages if str(m.id) == message_id), None)
        return None if target is None or target.deleted else target

    async def _execute_webhook(
        self, record: RecordedRequest, app_id: str, token: str
    ) -> web.Response:
        interaction = self._webhook_interaction(app_id, token)
        if interaction is None:
            return _error(404, 10015, "Unknown Webhook")
        body = record.json or {}
        original = interaction.original
        if original is not None and original.loading and not original.deleted:
            # The first follow-up after a deferred response fills in the "thinking" message
            # (which keeps the ephemeral choice made at the defer).
            response = await self._apply_edit(original, body, record.files)
        else:
            error = self._check_body(body, record.files)
            if error is not None:
                return error
            channel_id = int(record.query.get("thread_id") or interaction.channel_id)
            message = self._new_bot_message(channel_id, body, record.files, interaction=interaction)
            interaction.followups.append(message)
            await self._echo("MESSAGE_CREATE", message)
            response = _json(200, self._message_payload(message))
        if record.query.get("wait", "").lower() in ("1", "true") or response.status != 200:
            return response
        return web.Response(status=204)

    async def _get_webhook_message(
        self, record: RecordedRequest, app_id: str, token: str, message_id: str
    ) -> web.Response:
        interaction = self._webhook_interaction(app_id, token)
        if interaction is None:
            return _error(404, 10015, "Unknown Webhook")
        target = self._webhook_target(interaction, message_id)
        if target is None:
            return _error(404, 10008, "Unknown Message")
        return _json(200, self._message_payload(target))

    async def _edit_webhook_message(
        self, record: RecordedRequest, app_id: str, token: str, message_id: str
    ) -> web.Response:
        interaction = self._webhook_interaction(app_id, token)
        if interaction is None:
            return _error(404, 10015, "Unknown Webhook")
        target = self._webhook_target(interaction, message_id)
        if target is None:
            return _error(404, 10008, "Unknown Message")
        body = record.json or {}
        if message_id == "@original":
            interaction.edits.append(body)
        return await self._apply_edit(target, body, record.files)

    async def _delete_webhook_message(
        self, record: RecordedRequest, app_id: str, token: str, message_id: str
    ) -> web.Response:
        interaction = self._webhook_interaction(app_id, token)
        if interaction is None:
            return _error(404, 10015, "Unknown Webhook")
        target = self._webhook_target(interaction, message_id)
        if target is None:
            return _error(404, 10008, "Unknown Message")
        await self._delete_bot_message(target)
        return web.Response(status=204)
