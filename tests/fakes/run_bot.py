"""Run the real bot (`python -m bot`'s main) in a subprocess against the loopback Discord.

Process-level tests (SIGTERM, SIGKILL, fatal gateway closes) need the bot in its own process;
this launcher only points discord.py at the fake, exactly as FakeDiscord.install() does in
process, then hands over to bot.__main__.main(). Usage:

    MNEMO_FAKE_DISCORD_API=http://127.0.0.1:PORT/api/v10 \\
    MNEMO_FAKE_DISCORD_GATEWAY=ws://127.0.0.1:PORT/ python -m tests.fakes.run_bot
"""

from __future__ import annotations

import os
import sys

import discord
import yarl

from bot.__main__ import main

if __name__ == "__main__":
    discord.http.Route.BASE = os.environ["MNEMO_FAKE_DISCORD_API"]
    discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(
        os.environ["MNEMO_FAKE_DISCORD_GATEWAY"]
    )
    sys.exit(main())
