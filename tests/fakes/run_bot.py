"""Run the real bot (`python -m bot`'s main) in a subprocess against the loopback Discord.

Process-level tests (SIGTERM, SIGKILL, fatal gateway closes) need the bot in its own process;
this launcher only points discord.py at the fake, exactly as FakeDiscord.install() does in
process, then hands over to bot.__main__.main(). With MNEMO_FAKE_PROCESS_LABEL set, the label
is added to the User-Agent of every REST request, so a test running several processes can tell
which one sent a request. Usage:

    MNEMO_FAKE_DISCORD_API=http://127.0.0.1:PORT/api/v10 \\
    MNEMO_FAKE_DISCORD_GATEWAY=ws://127.0.0.1:PORT/ python -m tests.fakes.run_bot
"""

from __future__ import annotations

import os
import sys
from typing import Any

import discord
import yarl

from bot.__main__ import main


def _label_requests(label: str) -> None:
    original = discord.http.HTTPClient.__init__

    def labelled(self: discord.http.HTTPClient, *args: Any, **kwargs: Any) -> None:
        original(self, *args, **kwargs)
        self.user_agent += f" mnemo-process/{label}"

    discord.http.HTTPClient.__init__ = labelled  # type: ignore[method-assign]


if __name__ == "__main__":
    if label := os.environ.get("MNEMO_FAKE_PROCESS_LABEL"):
        _label_requests(label)
    discord.http.Route.BASE = os.environ["MNEMO_FAKE_DISCORD_API"]
    discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(
        os.environ["MNEMO_FAKE_DISCORD_GATEWAY"]
    )
    sys.exit(main())
