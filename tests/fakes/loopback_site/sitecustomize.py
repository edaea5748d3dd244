"""Point discord.py at the loopback Discord in *any* Python process started with this folder
on PYTHONPATH and MNEMO_FAKE_DISCORD_API / MNEMO_FAKE_DISCORD_GATEWAY set.

For running the real, installed command (`python -m bot`, `mnemo`) against the fake, where
tests/fakes/run_bot.py cannot be used: the Dockerfile test's fresh virtual environment, and
trying `make run` by hand:

    PYTHONPATH=tests/fakes/loopback_site MNEMO_FAKE_DISCORD_API=... make run

Python imports `sitecustomize` at start-up when it is on sys.path. Test tooling only.
"""

from __future__ import annotations

import os

if os.environ.get("MNEMO_FAKE_DISCORD_API"):
    import discord
    import yarl

    discord.http.Route.BASE = os.environ["MNEMO_FAKE_DISCORD_API"]
    discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(
        os.environ["MNEMO_FAKE_DISCORD_GATEWAY"]
    )
