"""Serve the loopback Discord and the loopback LLM until Ctrl-C, to try the real bot by hand.

    python -m tests.fakes.serve            # prints the variables to export, then serves

Then, in another shell, from the checkout (`sitecustomize` points discord.py at the fake):

    export PYTHONPATH=tests/fakes/loopback_site   # and the three lines it printed
    make run
"""

from __future__ import annotations

import asyncio
import contextlib

from tests.fakes.discord import FakeDiscord
from tests.fakes.llm_server import FakeLLM


async def serve() -> None:
    discord, llm = FakeDiscord(), FakeLLM()
    await discord.start()
    await llm.start()
    print(f"export MNEMO_FAKE_DISCORD_API={discord.base_url}")
    print(f"export MNEMO_FAKE_DISCORD_GATEWAY={discord.gateway_url}")
    print(f"export OPENAI_BASE_URL={llm.base_url}", flush=True)
    try:
        await asyncio.Event().wait()
    finally:
        await llm.close()
        await discord.close()


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve())
