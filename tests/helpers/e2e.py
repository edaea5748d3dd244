"""The bot end to end: the real MemoryBot on the loopback Discord and the loopback LLM."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from bot.client.bot import MemoryBot, create_bot
from bot.client.splitter import utf16_len
from cogs import EXTENSIONS
from storage import Storage
from tests.fakes.discord import BotMessage, FakeDiscord, FakeInteraction, FakeUser
from tests.fakes.llm_server import FakeLLM, message_text
from tests.helpers.engines import SettingsFactory


class Bots:
    """The real MemoryBot, connected to the loopback Discord and the loopback LLM."""

    def __init__(self, make_settings: SettingsFactory, discord: FakeDiscord, llm: FakeLLM):
        self._make_settings = make_settings
        self._discord = discord
        self._llm = llm
        self._running: dict[MemoryBot, asyncio.Task[None]] = {}

    async def start(self, **overrides: object) -> MemoryBot:
        overrides = {"facts_idle_seconds": 3600, **overrides}
        settings = self._make_settings(openai_base_url=self._llm.base_url, **overrides)
        bot = create_bot(settings, extensions=EXTENSIONS, guild_ready_timeout=0.1)
        identified = self._discord.identify_count
        task = asyncio.create_task(bot.start(settings.discord_token))
        self._running[bot] = task
        await self._discord.wait_identify(identified + 1)
        await asyncio.wait_for(bot.wait_until_ready(), 10)
        return bot

    async def stop(self, bot: MemoryBot) -> None:
        task = self._running.pop(bot)
        await bot.close()
        await asyncio.wait_for(task, 10)

    async def stop_all(self) -> None:
        for bot in list(self._running):
            await self.stop(bot)


class TracebackRecorder(logging.Handler):
    """Collects log records that carry a traceback: an unhandled exception somewhere."""

    def __init__(self) -> None:
        super().__init__(level=logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.exc_info:
            self.records.append(record)


async def check_invariants(discord: FakeDiscord, db_path: Path) -> None:
    """What must hold after every end-to-end test."""
    assert discord.unknown_requests == [], discord.unknown_requests
    for request in discord.requests:
        unknown_member = (
            request.status == 404 and request.method == "GET" and "/members/" in request.path
        )  # "not a member" is an answer (a DM under the allow-lists), not a refusal
        if request.status >= 400 and not request.injected and not unknown_member:
            raise AssertionError(f"Discord refused {request.method} {request.path}: {request.json}")
        body = request.json if isinstance(request.json, dict) else None
        if body is None or request.method not in ("POST", "PATCH"):
            continue
        data = body.get("data", body) if "/callback" in request.path else body
        if not isinstance(data, dict):
            continue
        content = data.get("content")
        if content is not None:
            assert 0 < utf16_len(content) <= 2000, request.path
        if (
            "/messages" in request.path
            and not request.path.endswith("/threads")  # starting a thread sends no message
            and request.method == "POST"
            and "/webhooks/" not in request.path
        ):
            mentions = data.get("allowed_mentions")
            assert mentions is not None and mentions.get("parse") == [], (request.path, mentions)
            assert not mentions.get("users") and not mentions.get("roles")
            assert not mentions.get("replied_user")
            assert data.get("flags", 0) & 4, "link previews must be suppressed"
    if await asyncio.to_thread(db_path.exists):
        store = await Storage.open(db_path)
        try:
            assert await store.db.integrity_ok()
        finally:
            await store.close()


async def settled(discord: FakeDiscord, channel_id: int, quiet: float = 0.8) -> list[BotMessage]:
    """The bot's live messages in a channel once none was created or edited for `quiet` s."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 15
    while loop.time() < deadline:
        messages = discord.bot_messages(channel_id)
        latest = max((m.updated_at for m in messages), default=0.0)
        if messages and time.monotonic() - latest >= quiet:
            return [m for m in messages if not m.deleted]
        await asyncio.sleep(0.05)
    raise TimeoutError(f"channel {channel_id} did not settle")


async def ask(d: FakeDiscord, user: FakeUser, channel: int, text: str) -> str:
    """Mention the bot with `text` and return its reply once it stops changing."""
    await d.send_message(user, channel, text, mention_bot=True)
    return await d.final_text(await d.next_bot_message(channel), quiet=0.3)


async def talk(d: FakeDiscord, user: FakeUser, channel: int, text: str) -> None:
    await d.send_message(user, channel, text, mention_bot=True)
    await d.final_text(await d.next_bot_message(channel), quiet=0.2)


async def talk_dm(d: FakeDiscord, user: FakeUser, text: str) -> None:
    await d.send_dm(user, text)
    await d.final_text(await d.next_bot_message(d.dm_channel_id(user)), quiet=0.2)


async def press(
    d: FakeDiscord, user: FakeUser, interaction: FakeInteraction, label: str
) -> FakeInteraction:
    message = interaction.original
    assert message is not None and message.ephemeral
    for component in (c for row in message.components for c in row.get("components", [])):
        if component.get("label") == label:
            return await d.click(user, message, component["custom_id"])
    raise AssertionError(f"no {label!r} button in {message.components}")


async def final_content(interaction: FakeInteraction) -> str:
    """The confirmation's answer: its message once the bot has edited the buttons away (the
    answer, Cancelled or Timed out replaces question and buttons in one edit)."""
    for _ in range(200):
        original = interaction.original
        if original is not None and not original.loading and not original.components:
            return original.content
        await asyncio.sleep(0.05)
    raise AssertionError("the confirmation was never answered")


async def stored(bot: MemoryBot, user: FakeUser) -> list[tuple[str, str]]:
    """(role, content) of every message stored for the user, oldest first."""
    export = await bot.storage.users.export(user.id)
    return [(m["role"], m["content"]) for m in export["messages"]]


async def eventually(check: Callable[[], Awaitable[bool]], what: str) -> None:
    """Poll an async condition (the bot's database, say) for up to 10 s until it holds."""
    for _ in range(200):
        if await check():
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def take_tracebacks() -> list[logging.LogRecord]:
    """The tracebacks logged so far (the `bots` fixture's recorder), handed to the test body so
    that an unhandled exception fails the test itself, not only its teardown."""
    found: list[logging.LogRecord] = []
    for handler in logging.getLogger().handlers:
        records = getattr(handler, "records", None)
        if type(handler).__name__ == "TracebackRecorder" and isinstance(records, list):
            found += records
            records.clear()
    return found


class Gate:
    """Holds every chat answer whose newest message contains `marker` until released."""

    def __init__(self, marker: str, answer: str | None = None) -> None:
        self.marker = marker
        self.answer = answer
        self.arrived = asyncio.Event()
        self.release = asyncio.Event()

    async def __call__(self, body: dict[str, Any]) -> str:
        last = message_text(body["messages"][-1])
        if self.marker in last:
            self.arrived.set()
            await self.release.wait()
        return self.answer or f"echo: {last}"


async def no_reply_in_flight(bot: MemoryBot) -> bool:
    return not bot.engine._in_flight  # the engine's own count of replies being handled
