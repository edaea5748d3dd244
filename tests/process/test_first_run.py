"""The first run as a newcomer meets it: `.env.example` copied to `.env` exactly as shipped,
the two keys filled in, the bot and `mnemo health` started from a fresh working directory.

The processes run through tests/fakes/offline_run.py, which records the URL of every model
client they build and refuses every name lookup but the loopback: nothing leaves the machine.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import sys
from pathlib import Path

from tests.fakes.discord import FakeDiscord
from tests.fakes.llm_server import FakeLLM
from tests.helpers import ROOT
from tests.helpers.processes import StderrBot

EXAMPLE = ROOT / ".env.example"
OPENAI_URL = "https://api.openai.com/v1/"
LOCAL_LINE = re.compile(r"^# ?OPENAI_BASE_URL=(http://localhost\S*)$", re.MULTILINE)


def setting_names() -> set[str]:
    return set(re.findall(r"^#? ?([A-Z][A-Z0-9_]+)=", EXAMPLE.read_text(), re.MULTILINE))


def newcomer_env(text: str) -> str:
    """`.env.example` with DISCORD_TOKEN and OPENAI_API_KEY filled in, as the README's quick
    start says."""
    text = text.replace("\nDISCORD_TOKEN=\n", "\nDISCORD_TOKEN=test-token\n", 1)
    return text.replace("\nOPENAI_API_KEY=\n", "\nOPENAI_API_KEY=test-key\n", 1)


def environment(workdir: Path, fake_discord: FakeDiscord) -> dict[str, str]:
    """The test's environment without any of Mnemo's settings (or the SDK's): only `.env`."""
    names = setting_names()
    inherited = {
        k: v
        for k, v in os.environ.items()
        if k not in names and not k.startswith(("DISCORD", "OPENAI"))
    }
    return {
        **inherited,
        "PYTHONPATH": str(ROOT),
        "MNEMO_RECORD_MODEL_CLIENTS": str(workdir / "clients.txt"),
        "MNEMO_FAKE_DISCORD_API": fake_discord.base_url,
        "MNEMO_FAKE_DISCORD_GATEWAY": fake_discord.gateway_url,
    }


def clients(workdir: Path) -> list[str]:
    log = workdir / "clients.txt"
    urls = log.read_text().splitlines() if log.exists() else []
    log.unlink(missing_ok=True)
    return urls


async def health(workdir: Path, env: dict[str, str]) -> tuple[int, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tests.fakes.offline_run",
        "health",
        cwd=workdir,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode is not None
    return process.returncode, out.decode()


async def run_until_ready(workdir: Path, env: dict[str, str]) -> list[str]:
    """`python -m bot` until its ready line, then SIGTERM; every stderr line."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tests.fakes.offline_run",
        cwd=workdir,
        env=env,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    bot = StderrBot(process)
    try:
        await bot.wait_line("Mnemo is ready", timeout=60)
        process.send_signal(signal.SIGTERM)
        code, lines = await bot.exit()
    finally:
        bot.kill()
        await process.wait()
    assert code == 0, "\n".join(lines)
    return lines


async def test_shipped_example_reaches_the_default_openai_url(
    tmp_path: Path, fake_discord: FakeDiscord
) -> None:
    text = EXAMPLE.read_text()
    assert "\nOPENAI_BASE_URL=\n" in text  # shipped empty: "not set"
    (tmp_path / ".env").write_text(newcomer_env(text))
    env = environment(tmp_path, fake_discord)

    _, out = await health(tmp_path, env)
    assert set(clients(tmp_path)) == {OPENAI_URL}, out  # the bot's client and its check's copy
    assert "missing an 'http://' or 'https://' protocol" not in out, out
    assert "model server: FAIL" in out and "api.openai.com" in out, out  # offline here

    lines = await run_until_ready(tmp_path, env)
    assert set(clients(tmp_path)) == {OPENAI_URL}, lines  # the client and its check's copy
    assert not any("protocol" in line for line in lines), lines


async def test_example_local_server_line_reaches_the_loopback(
    tmp_path: Path, fake_discord: FakeDiscord, fake_llm: FakeLLM
) -> None:
    text = newcomer_env(EXAMPLE.read_text())
    assert LOCAL_LINE.search(text), "the example's commented local-server line"
    (tmp_path / ".env").write_text(LOCAL_LINE.sub(f"OPENAI_BASE_URL={fake_llm.base_url}", text))
    env = environment(tmp_path, fake_discord)

    _, out = await health(tmp_path, env)
    assert set(clients(tmp_path)) == {fake_llm.base_url + "/"}, out  # as the bot's, above
    assert f"model server: ok: {fake_llm.base_url}" in out, out
    assert [r.path for r in fake_llm.requests] == ["/v1/models"]

    await run_until_ready(tmp_path, env)
    assert set(clients(tmp_path)) == {fake_llm.base_url + "/"}
    assert [r.path for r in fake_llm.requests] == ["/v1/models"] * 2


async def start_bot(workdir: Path, env: dict[str, str]) -> tuple[int, str]:
    """`python -m bot` (exits before Discord here: a setting is wrong)."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bot",
        cwd=workdir,
        env=env,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    _, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode is not None
    return process.returncode, err.decode()


async def test_missing_key_hint_says_what_is_missing_in_env(
    tmp_path: Path, fake_discord: FakeDiscord
) -> None:
    env = environment(tmp_path, fake_discord)
    code, err = await start_bot(tmp_path, env)  # no .env at all
    assert (
        code == 2
        and err == "mnemo: DISCORD_TOKEN is not set: copy .env.example to .env and fill it in\n"
    )

    dotenv = tmp_path / ".env"
    dotenv.write_text(EXAMPLE.read_text())  # copied, not filled in
    code, err = await start_bot(tmp_path, env)
    assert code == 2 and err.count("\n") == 1, err
    assert f"DISCORD_TOKEN is not set: it is empty in {dotenv}; fill it in there" in err, err
    assert "copy .env.example" not in err

    dotenv.write_text("DISCORD_TOKEN=test-token\n")  # the key's line is missing
    code, err = await start_bot(tmp_path, env)
    assert code == 2 and "copy .env.example" not in err, err
    assert f"OPENAI_API_KEY is not set: {dotenv} has no OPENAI_API_KEY= line" in err, err
    _, out = await health(tmp_path, env)
    assert f"settings: FAIL: OPENAI_API_KEY is not set: {dotenv} has no" in out, out


async def test_memory_database_is_refused_naming_database_url(
    tmp_path: Path, fake_discord: FakeDiscord
) -> None:
    (tmp_path / ".env").write_text(newcomer_env(EXAMPLE.read_text()))
    env = {**environment(tmp_path, fake_discord), "DATABASE_URL": "sqlite:///:memory:"}
    code, err = await start_bot(tmp_path, env)
    assert code == 2 and err.count("\n") == 1, err
    assert err.startswith("mnemo: DATABASE_URL=sqlite:///:memory: keeps nothing"), err
    assert os.listdir(tmp_path) == [".env"]  # no :memory:.lock


async def test_removed_and_misspelt_settings_get_one_warning_line(
    tmp_path: Path, fake_discord: FakeDiscord
) -> None:
    text = newcomer_env(EXAMPLE.read_text()).replace("\nCHAT_MODEL=", "\nCHAT_MODLE=")
    (tmp_path / ".env").write_text(text + "LLM_QUEUE_LIMIT=20\n")
    env = {**environment(tmp_path, fake_discord), "LLM_CONCURRENCY": "4", "LOG_LEVL": "DEBUG"}
    lines = await run_until_ready(tmp_path, env)
    [line] = [line for line in lines if "Ignored settings" in line]
    assert " WARNING " in line, line
    for name in ("CHAT_MODLE", "LLM_CONCURRENCY", "LLM_QUEUE_LIMIT", "LOG_LEVL"):
        assert name in line, line
    assert "did you mean CHAT_MODEL?" in line and "did you mean LOG_LEVEL?" in line, line
    _, out = await health(tmp_path, env)
    assert out.count("settings: warning: ignored") == 1 and "CHAT_MODLE" in out, out


def test_example_quotes_free_text_and_says_why() -> None:
    from dotenv import dotenv_values

    from bot.config import DEFAULT_SYSTEM_PROMPT

    text = EXAMPLE.read_text()
    assert '" #" starts a comment and cuts the' in text
    for line in text.splitlines():
        _, sep, value = line.partition("=")
        if sep and not line.startswith("#") and " " in value:
            assert value.startswith('"') and value.endswith('"'), line
    assert dotenv_values(EXAMPLE)["SYSTEM_PROMPT"] == DEFAULT_SYSTEM_PROMPT


def test_the_docs_say_what_these_tests_check() -> None:
    """The README's quick start and docs/operation.md's "Exit status" say what this module's
    tests check of the first run and of `make run`'s exit status."""
    readme = " ".join((ROOT / "README.md").read_text().split())
    for said in (
        "cp .env.example .env # then fill in DISCORD_TOKEN and OPENAI_API_KEY",
        "With no `.env`, `make run` prints one line saying what to configure and exits with"
        " status 2; with a `.env` that leaves `DISCORD_TOKEN` or `OPENAI_API_KEY` empty (or has"
        " no line for it), the line names the value and the file to fill it in.",
        "Start-up goes in this order: settings → database → model server → Discord.",
        "(docs/operation.md#exit-status)",
    ):
        assert said in readme, said
    operation = (ROOT / "docs" / "operation.md").read_text()
    assert "`make run` itself exits 2 whenever the bot fails, whatever its status" in " ".join(
        operation.split()
    )
    assert re.search(r"^make: \*\*\* \[Makefile:\d+: run\] Error 3$", operation, re.M)
    assert re.search(
        r"^mnemo: DATABASE_URL points to /srv/mnemo, which is a folder", operation, re.M
    )
    for status in range(5):
        assert f"\n| {status} | " in operation, status


def test_exit_status_through_make_run_and_mnemo(tmp_path: Path) -> None:
    """What docs/operation.md's "Exit status" says of `make run`: make prints the bot's status
    in its own "Error N" line and exits 2; `.venv/bin/mnemo` exits with the bot's own status."""
    import shutil
    import subprocess

    import pytest

    mnemo = ROOT / ".venv" / "bin" / "mnemo"
    if not mnemo.exists():
        pytest.skip("needs the Makefile's .venv")
    names = setting_names()
    env = {
        **{k: v for k, v in os.environ.items() if k not in names and not k.startswith("MAKE")},
        "DISCORD_TOKEN": "test-token",
        "OPENAI_API_KEY": "test-key",
        "DATABASE_URL": f"sqlite:///{tmp_path}",  # a folder: exit status 3
    }
    make = shutil.which("make")
    assert make is not None
    # -o: the installed .venv counts as up to date (this test must not reinstall it).
    done = subprocess.run(
        [make, "-s", "-o", ".venv/.installed", "run"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 2, done.stderr
    assert re.search(r"^make: \*\*\* \[Makefile:\d+: run\] Error 3$", done.stderr, re.M), (
        done.stderr
    )
    assert "mnemo: DATABASE_URL points to" in done.stderr
    done = subprocess.run(
        [str(mnemo)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 3, done.stderr
