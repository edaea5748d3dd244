"""Fixtures of the real-model run: the real server, a recorder in front of it, fake Discord."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.fakes.discord_server import FakeDiscord
from tests_real.servers import LlamaServer, RecordingProxy


@pytest.fixture
async def llama(tmp_path: Path) -> AsyncIterator[LlamaServer]:
    server = LlamaServer(tmp_path / "llama-server.log")
    try:
        await server.start()
        yield server
    finally:
        await server.close()


@pytest.fixture
async def recorder(llama: LlamaServer) -> AsyncIterator[RecordingProxy]:
    proxy = RecordingProxy(llama.base_url)
    await proxy.start()
    yield proxy
    await proxy.close()


@pytest.fixture
async def fake_discord() -> AsyncIterator[FakeDiscord]:
    # Not installed in this process: the bot runs in its own (see tests/fakes/run_bot.py).
    server = FakeDiscord()
    await server.start()
    yield server
    await server.close()
