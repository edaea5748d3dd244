"""A streamed answer shown in Discord: typing first, then a message that grows.

The text is rendered by one task, at most once per `edit_interval`, so a slow Discord never
stalls the model's stream. Long text becomes several messages (see `bot.client.splitter`);
every message allows no mentions and suppresses link embeds (a preview would fetch URLs from
the model's text).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

import discord

from bot.client.splitter import split_message
from bot.engine.engine import DeletedMessage, Status

log = logging.getLogger(__name__)

NO_MENTIONS = discord.AllowedMentions.none()
TYPING_REFRESH_SECONDS = 8.0
# "typing…" is first sent this long after the turn is accepted, unless the answer shows first:
# too short to be seen as a wait, and it keeps the indicator's REST request (and its CPU on
# the event loop, 0.7 ms in benchmark 1) off the way to the model request; a fast model's
# answer then needs no indicator at all, which also spares the channel's rate limit.
TYPING_DELAY_SECONDS = 0.05


class StreamedReply:
    def __init__(
        self,
        source: discord.Message,
        *,
        edit_interval: float = 1.0,
        channel: discord.Thread | None = None,
    ) -> None:
        self._source = source
        # `channel`: answer in a thread opened from `source` (then not as a reply to it).
        self._channel = channel or source.channel
        self._in_source_channel = channel is None
        self._edit_interval = edit_interval
        self._sent: list[discord.Message] = []
        self._shown: list[str] = []
        self._latest = ""
        self._status = ""  # shown while there is no text yet, e.g. "thinking…"
        self._changed = asyncio.Event()
        self._finished = asyncio.Event()
        self._broken = False
        self._typing: asyncio.Task[None] | None = None
        self._renderer: asyncio.Task[None] | None = None

    async def __aenter__(self) -> StreamedReply:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        """Whatever happened (cancelled at shutdown, an error), no task of this reply lives on."""
        await self.abandon()

    @property
    def delivered(self) -> bool:
        """Whether Discord has the text as last rendered (nothing was refused)."""
        return bool(self._sent) and not self._broken

    @property
    def text(self) -> str:
        """The text shown so far (or about to be)."""
        return self._latest

    @property
    def message_ids(self) -> list[int]:
        return [message.id for message in self._sent]

    async def progress(self, text: str) -> None:
        """Called with the whole text so far; "" means accepted, waiting for the model; a
        `Status` is shown (small) until the text begins."""
        if isinstance(text, Status):
            await self.status(text)
            return
        if not text:
            await self._start_typing()
            return
        self._latest = text
        self._changed.set()
        if self._renderer is None:
            self._renderer = asyncio.create_task(self._render_loop(), name="mnemo-render")

    async def status(self, text: str) -> None:
        """Show a short status line (e.g. "thinking…") until the answer's text replaces it."""
        if self._latest:
            return
        self._status = f"-# {text}"
        self._changed.set()
        if self._renderer is None:
            self._renderer = asyncio.create_task(self._render_loop(), name="mnemo-render")

    async def finish(self, text: str) -> None:
        """Show `text` as the final state and wait until Discord has it."""
        self._latest = text
        self._finished.set()
        self._changed.set()
        if self._renderer is None:
            self._renderer = asyncio.create_task(self._render_loop(), name="mnemo-render")
        try:
            await self._renderer
        finally:
            await self._stop_typing()

    async def abandon(self) -> None:
        """Stop rendering without a final state (shutdown). Safe to call more than once, and
        from a cancelled task: the cleanup is shielded so it always finishes."""
        tasks = [task for task in (self._renderer, self._typing) if task is not None]
        self._typing = None
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.shield(asyncio.gather(*tasks, return_exceptions=True))

    async def withdraw(self) -> None:
        """Stop rendering and delete what was shown (the message it answered was deleted)."""
        await self.abandon()
        while self._sent:
            message = self._sent.pop()
            self._shown.pop()
            try:
                await message.delete()
            except discord.HTTPException as error:
                log.warning("Could not withdraw reply %s: %s", message.id, error.status)

    async def _render_loop(self) -> None:
        last_render = float("-inf")
        while True:
            await self._changed.wait()
            self._changed.clear()
            wait = last_render + self._edit_interval - time.monotonic()
            if self._sent and wait > 0 and not self._finished.is_set():
                # Throttle edits (Discord allows about 5 per 5 s in a channel), but never
                # delay the final state.
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._finished.wait(), timeout=wait)
            done, text = self._finished.is_set(), self._latest or self._status
            await self._render(text)
            last_render = time.monotonic()
            if self._sent:
                await self._stop_typing()
            if done:
                return

    async def _render(self, text: str) -> None:
        if self._broken:
            return
        parts = split_message(text)
        try:
            for index, part in enumerate(parts):
                if index >= len(self._sent):
                    self._sent.append(await self._send(part, first=index == 0))
                    self._shown.append(part)
                elif self._shown[index] != part:
                    await self._sent[index].edit(
                        content=part, suppress=True, allowed_mentions=NO_MENTIONS
                    )
                    self._shown[index] = part
            while len(self._sent) > max(len(parts), 1):
                await self._sent.pop().delete()
                self._shown.pop()
        except discord.HTTPException as error:
            # One line, no retry loop: a 403 repeated could get the bot's IP banned.
            self._broken = True
            log.warning(
                "Could not deliver a reply in channel %s: %s %s",
                self._channel.id,
                error.status,
                error.text,
            )

    async def _send(self, content: str, *, first: bool) -> discord.Message:
        reference = (
            self._source.to_reference(fail_if_not_exists=False)
            if first and self._in_source_channel
            else None
        )
        return await self._channel.send(
            content,
            reference=reference,  # type: ignore[arg-type]
            mention_author=False,
            allowed_mentions=NO_MENTIONS,
            suppress_embeds=True,
        )

    async def _start_typing(self) -> None:
        # In the background: awaiting Discord's answer here would put a REST round trip in
        # front of every model request.
        if self._typing is None and not self._sent:
            self._typing = asyncio.create_task(self._keep_typing(), name="mnemo-typing")

    async def _keep_typing(self) -> None:
        """Show "typing…" until stopped (Discord shows it for 10 s after each request)."""
        await asyncio.sleep(TYPING_DELAY_SECONDS)
        try:
            while True:
                await self._channel.typing()  # awaited, Typing sends one indicator
                await asyncio.sleep(TYPING_REFRESH_SECONDS)
        except discord.HTTPException as error:
            log.debug("Typing indicator failed: %s", error)

    async def _stop_typing(self) -> None:
        if self._typing is not None:
            task, self._typing = self._typing, None
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)


async def take_down(client: discord.Client, deleted: DeletedMessage) -> None:
    """Delete in Discord the answers to a message forgotten: they may repeat it."""
    for channel_id, answer_id in deleted.answers_shown_as:
        channel = client.get_partial_messageable(channel_id)
        try:
            await channel.get_partial_message(answer_id).delete()
        except discord.NotFound:
            pass  # already gone
        except discord.HTTPException as error:
            log.warning("Could not delete answer %s: %s %s", answer_id, error.status, error.text)
