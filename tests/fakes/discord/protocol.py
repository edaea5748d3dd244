"""Discord as seen on the wire: ids, opcodes, intents, permission and message flags, limits,
and the JSON answers (errors included) that the REST routes send."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import discord
from aiohttp import web

JSON = dict[str, Any]

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
VIEW_CHANNEL = 1 << 10
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
