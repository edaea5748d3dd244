"""`python -m bot`: load .env, validate settings, run the bot until stopped."""

from __future__ import annotations

import asyncio
import logging
import signal
import sys

import discord
from dotenv import find_dotenv, load_dotenv

from bot.client import create_bot
from bot.config import ConfigError, Settings

log = logging.getLogger("bot")

MISSING_INTENT = (
    "mnemo: the Message Content intent is not enabled for this bot: enable it in the developer"
    " portal (Bot > Privileged Gateway Intents) or set MESSAGE_CONTENT_INTENT=false"
)

BAD_TOKEN = (
    "mnemo: Discord rejected DISCORD_TOKEN; copy it again from the developer portal (Bot page)"
)


def main() -> int:
    # .env of the working directory (or a parent); a variable set in the environment wins.
    load_dotenv(find_dotenv(usecwd=True), override=False)
    try:
        settings = Settings.from_env()
    except ConfigError as error:
        print(f"mnemo: {error}", file=sys.stderr)
        return 2
    logging.basicConfig(
        level=settings.log_level,
        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
    )
    try:
        return asyncio.run(run(settings))
    except KeyboardInterrupt:
        return 0


async def run(settings: Settings) -> int:
    bot = create_bot(settings)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        # Hosts send SIGTERM and kill ~10 s later: shut down gracefully well within that.
        loop.add_signal_handler(sig, lambda: asyncio.ensure_future(bot.close()))
    try:
        await bot.start(settings.discord_token)
    except discord.LoginFailure:
        print(BAD_TOKEN, file=sys.stderr)
        return 2
    except discord.PrivilegedIntentsRequired:
        print(MISSING_INTENT, file=sys.stderr)
        return 2
    except discord.ConnectionClosed as error:
        # Fatal gateway closes are raised, not retried (discord.py); say what to fix.
        if error.code == 4004:
            print(BAD_TOKEN, file=sys.stderr)
            return 2
        print(
            f"mnemo: Discord closed the connection ({error.code}): {error.reason}", file=sys.stderr
        )
        return 1
    finally:
        # Not `async with`: its exit skips close() once the gateway is closed, which would
        # leave the database open (and the interpreter hanging at exit).
        await bot.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
