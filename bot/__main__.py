"""`python -m bot` (or `mnemo`): load .env, validate settings, run the bot until stopped.

    mnemo                  run the bot (also `mnemo run`, `python -m bot`)
    mnemo health           exit 0 when the running bot and what it needs are fine
                           (also `python -m bot --check`)

Start-up goes settings → database → model server → Discord login, and stops at the first
step that fails with one line and an exit status (bot/startup.py, docs/operation.md "Exit status").
"""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from dotenv import find_dotenv, load_dotenv

from bot import logs
from bot.config import ConfigError, Settings
from bot.startup import (
    EXIT_CONFIG,
    EXIT_OK,
    StartupError,
    connect_until_ready,
    gateway_result,
    log_in,
    open_storage,
    reach_discord,
    ready_line,
    recommended_shards,
)

if TYPE_CHECKING:
    from bot.client.bot import MemoryBot

log = logging.getLogger("bot")

USAGE = "usage: mnemo [run | health]   (python -m bot [--check])"


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    command = args[0] if args else "run"
    if command in ("-h", "--help", "help"):
        print(__doc__)
        return EXIT_OK
    if command not in ("run", "health", "--check") or len(args) > 1:
        print(USAGE, file=sys.stderr)
        return EXIT_CONFIG
    # The first .env found in the working directory or one of its parents; a variable set
    # in the environment wins over it.
    env_file = find_dotenv(usecwd=True)
    load_dotenv(env_file, override=False)
    if command != "run":
        from bot.health import main as health

        return health(env_file)
    try:
        settings = Settings.from_env(env_file=env_file)
    except ConfigError as error:
        print(f"mnemo: {error}", file=sys.stderr)
        return EXIT_CONFIG
    logs.configure(settings.log_level)
    if settings.ignored:
        log.warning("Ignored settings (not read by Mnemo): %s", settings.ignored)
    try:
        return asyncio.run(run(settings))
    except KeyboardInterrupt:
        return EXIT_OK


async def run(settings: Settings) -> int:
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        # Hosts send SIGTERM and kill ~10 s later: shut down gracefully well within that.
        loop.add_signal_handler(sig, stopping.set)
    try:
        return await _run(settings, stopping)
    except StartupError as error:
        print(f"mnemo: {error.line}", file=sys.stderr)
        return error.status


async def _run(settings: Settings, stopping: asyncio.Event) -> int:
    from bot.app import make_llm
    from bot.client.bot import create_bot  # after logging is set up: discord.py logs
    from bot.model.probe import check_model_server
    from cogs import EXTENSIONS

    storage = await open_storage(settings, stopping)
    if storage is None:
        return EXIT_OK  # stopped while waiting for the database
    llm = make_llm(settings)
    bot: MemoryBot | None = None
    try:
        await check_model_server(llm, settings)
        if not await reach_discord(settings, stopping):
            return EXIT_OK
        # The bot owns the storage and the LLM client from here and closes them in close().
        bot = create_bot(
            settings,
            extensions=EXTENSIONS,
            storage=storage,
            llm=llm,
            shards=await recommended_shards(settings),
        )
        await log_in(bot, settings.discord_token)
        stop = asyncio.ensure_future(stopping.wait())
        try:
            connection = await connect_until_ready(bot, stop, settings)
            if connection is None:
                return EXIT_OK  # stopped while connecting
            log.info("%s", ready_line(bot, settings))
            running: set[asyncio.Future[Any]] = {connection, stop}
            await asyncio.wait(running, return_when=asyncio.FIRST_COMPLETED)
            # Not `async with`: its exit skips close() once the gateway is closed, which
            # would leave the database open (and the interpreter hanging at exit).
            await bot.close()
            await asyncio.gather(connection, return_exceptions=True)
            gateway_result(connection)
        finally:
            stop.cancel()
        log.info("Mnemo stopped cleanly")
        return EXIT_OK
    finally:
        if bot is not None:
            await bot.close()
        else:
            await llm.close()
            await storage.close()


if __name__ == "__main__":
    sys.exit(main())
