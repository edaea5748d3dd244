"""The channel context's buffers: bounded per channel, in order, least recently used dropped,
lines past their age dropped, the history read once per buffer."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

from bot.client.channel_log import (
    LINE_MAX_AGE_SECONDS,
    LINES_PER_CHANNEL,
    ChannelBuffer,
    ChannelLog,
)
from bot.memory.channel import ChannelLine


def line(message_id: int, at: float | None = None) -> ChannelLine:
    return ChannelLine(message_id, 7, "Ann", f"line {message_id}", at or time.time())


class Channel:
    """A channel whose history is empty, counting how often it is read."""

    def __init__(self, channel_id: int) -> None:
        self.id = channel_id
        self.reads = 0

    def history(self, **_: Any) -> AsyncIterator[Any]:
        self.reads += 1

        async def empty() -> AsyncIterator[Any]:
            return
            yield

        return empty()


def test_a_buffer_keeps_its_newest_lines_in_order() -> None:
    buffer = ChannelBuffer(1)
    for message_id in [*range(200, 100 + 2 * LINES_PER_CHANNEL), 150]:  # one arrives late
        buffer.add(line(message_id))
    ids = list(buffer.lines)
    assert len(ids) == LINES_PER_CHANNEL
    assert ids == sorted(ids) and ids[-1] == 99 + 2 * LINES_PER_CHANNEL


async def test_least_recently_used_channels_go_and_old_lines_leave() -> None:
    log = ChannelLog(channels_max=2)
    first, second, third = Channel(1), Channel(2), Channel(3)
    assert await log.lines(first) == [] and await log.lines(second) == []
    assert await log.lines(first) == []  # first is used again: second is the oldest now
    await log.lines(third)
    assert log.buffer(2) is None and log.buffer(1) is not None and len(log) == 2
    assert first.reads == 1, "the history is read once per buffer"
    buffer = log.buffer(1)
    assert buffer is not None
    buffer.add(line(10, time.time() - LINE_MAX_AGE_SECONDS - 1))
    buffer.add(line(11))
    assert [kept.message_id for kept in await log.lines(first)] == [11]
    log.deleted([11], 1)
    assert await log.lines(first) == []
