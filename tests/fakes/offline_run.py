"""Run `python -m bot`'s main (`run` or `health`) offline, recording every model client built.

For the first-run tests (tests/process/test_first_run.py): the bot starts from a `.env` exactly as a
newcomer writes it, so nothing here sets a setting. Two things are added around `main()`:

- every `openai.AsyncOpenAI` the process builds appends the URL it was built with (the SDK's
  resolved `base_url`) as one line to the file named by MNEMO_RECORD_MODEL_CLIENTS;
- name lookups of anything but the loopback fail at once (`socket.gaierror`), so no request
  ever leaves the machine (api.openai.com, tiktoken's download) whatever the settings say.

With MNEMO_FAKE_DISCORD_API / MNEMO_FAKE_DISCORD_GATEWAY set, discord.py is pointed at the
loopback Discord as in tests/fakes/run_bot.py.
"""

from __future__ import annotations

import os
import socket
import sys
from pathlib import Path
from typing import Any

import openai

LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1", "ip6-localhost"})


def _offline() -> None:
    original = socket.getaddrinfo

    def getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
        name = host.decode() if isinstance(host, bytes) else str(host)
        if name not in LOOPBACK_NAMES:
            raise socket.gaierror(socket.EAI_NONAME, f"offline test: no lookup of {name}")
        return original(host, *args, **kwargs)

    socket.getaddrinfo = getaddrinfo


def _record_clients(log: Path) -> None:
    original = openai.AsyncOpenAI.__init__

    def init(self: openai.AsyncOpenAI, *args: Any, **kwargs: Any) -> None:
        original(self, *args, **kwargs)
        with log.open("a") as file:
            file.write(f"{self.base_url}\n")

    openai.AsyncOpenAI.__init__ = init  # type: ignore[method-assign]


if __name__ == "__main__":
    _offline()
    _record_clients(Path(os.environ["MNEMO_RECORD_MODEL_CLIENTS"]))
    if api := os.environ.get("MNEMO_FAKE_DISCORD_API"):
        import discord
        import yarl

        discord.http.Route.BASE = api
        discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(
            os.environ["MNEMO_FAKE_DISCORD_GATEWAY"]
        )
    from bot.__main__ import main

    sys.exit(main())
