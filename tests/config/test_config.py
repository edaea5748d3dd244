from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
from pathlib import Path

import pytest

from bot.config import ConfigError, Settings
from tests.helpers import ROOT

BASE = {"DISCORD_TOKEN": "t", "OPENAI_API_KEY": "k"}


def test_defaults_match_the_design() -> None:
    settings = Settings.from_env(BASE)
    assert settings.chat_model == "gpt-4o"
    assert settings.memory_model == "gpt-4o-mini"
    assert settings.database_path == Path("data/mnemo.db")
    assert settings.max_prompt_tokens == 6000
    assert settings.max_reply_tokens == 1000
    assert settings.log_level == "INFO"
    assert settings.openai_base_url is None
    assert settings.erasure_compact_seconds == 3600  # PostgreSQL: erased text out within an hour


def test_database_url_relative_and_absolute() -> None:
    relative = Settings.from_env({**BASE, "DATABASE_URL": "sqlite:///var/x.db"})
    absolute = Settings.from_env({**BASE, "DATABASE_URL": "sqlite:////srv/mnemo/x.db"})
    assert relative.database_path == Path("var/x.db")
    assert absolute.database_path == Path("/srv/mnemo/x.db")


@pytest.mark.parametrize(
    ("env", "names"),
    [
        ({"OPENAI_API_KEY": "k"}, "DISCORD_TOKEN"),
        ({"DISCORD_TOKEN": "t"}, "OPENAI_API_KEY"),
        ({**BASE, "MAX_PROMPT_TOKENS": "lots"}, "MAX_PROMPT_TOKENS"),
        ({**BASE, "LLM_TIMEOUT_SECONDS": "nan"}, "LLM_TIMEOUT_SECONDS"),
        ({**BASE, "DATABASE_URL": "mysql://x"}, "DATABASE_URL"),
        ({**BASE, "DATABASE_URL": "postgres://h/db?pool_size=0"}, "pool_size"),
        ({**BASE, "DATABASE_URL": "postgres://h/db?command_timeout=0"}, "command_timeout"),
        ({**BASE, "DATABASE_CONNECT_SECONDS": "-1"}, "DATABASE_CONNECT_SECONDS"),
        ({**BASE, "ERASURE_COMPACT_SECONDS": "10"}, "ERASURE_COMPACT_SECONDS"),
        ({**BASE, "LOG_LEVEL": "LOUD"}, "LOG_LEVEL"),
        ({**BASE, "MESSAGE_CONTENT_INTENT": "maybe"}, "MESSAGE_CONTENT_INTENT"),
        ({**BASE, "MAX_PROMPT_TOKENS": "1000"}, "MAX_PROMPT_TOKENS"),
    ],
)
def test_bad_values_name_the_variable(env: dict[str, str], names: str) -> None:
    with pytest.raises(ConfigError, match=names):
        Settings.from_env(env)


@pytest.mark.parametrize("scheme", ["postgresql", "postgres"])
def test_database_url_postgres_as_hosts_set_it(scheme: str) -> None:
    url = f"{scheme}://mnemo:s3cr3t-pw@db.example:5433/mnemo?sslmode=require&pool_size=4&command_timeout=9"
    settings = Settings.from_env({**BASE, "DATABASE_URL": url})
    parsed = settings.database_url
    assert parsed.backend == "postgres" and parsed.pool_size == 4
    assert parsed.statement_cache_size == 100 and parsed.command_timeout == 9
    assert "sslmode=require" in parsed.dsn  # asyncpg's own option is kept, ours stripped:
    assert "pool_size" not in parsed.dsn and "command_timeout" not in parsed.dsn
    for shown in (repr(settings), str(parsed), repr(parsed), parsed.redacted()):
        assert "s3cr3t-pw" not in shown
    assert parsed.redacted().startswith(f"{scheme}://mnemo:***@db.example:5433/mnemo")


def test_database_url_errors_never_show_the_password() -> None:
    with pytest.raises(ConfigError) as error:
        Settings.from_env({**BASE, "DATABASE_URL": "mysql://root:hunter2@h/db"})
    assert "hunter2" not in str(error.value) and "***" in str(error.value)
    with pytest.raises(ConfigError) as error:
        Settings.from_env(
            {**BASE, "DATABASE_URL": "postgres://u:hunter2@h/db?statement_cache_size=x"}
        )
    assert "hunter2" not in str(error.value)


def test_settings_repr_shows_no_secret() -> None:
    settings = Settings.from_env(
        {**BASE, "DISCORD_TOKEN": "tok-SECRET", "OPENAI_API_KEY": "sk-SEC"}
    )
    assert "tok-SECRET" not in repr(settings) and "sk-SEC" not in repr(settings)


def test_local_server_needs_no_api_key() -> None:
    settings = Settings.from_env(
        {"DISCORD_TOKEN": "t", "OPENAI_BASE_URL": "http://localhost:11434/v1"}
    )
    assert settings.openai_api_key


def test_settings_are_frozen() -> None:
    settings = Settings.from_env(BASE)
    with pytest.raises(AttributeError):
        settings.chat_model = "other"  # type: ignore[misc]


def _run_bot(
    tmp_path: Path, env: dict[str, str], dotenv: str | None = None
) -> subprocess.CompletedProcess[str]:
    if dotenv is not None:
        (tmp_path / ".env").write_text(dotenv)
    clean = {k: v for k, v in os.environ.items() if k not in ("DISCORD_TOKEN", "OPENAI_API_KEY")}
    clean["PYTHONPATH"] = str(ROOT)
    return subprocess.run(
        [sys.executable, "-m", "bot"],
        cwd=tmp_path,
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.slow
def test_missing_token_exits_2_with_one_line(tmp_path: Path) -> None:
    result = _run_bot(tmp_path, {})
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "DISCORD_TOKEN" in lines[0] and ".env.example" in lines[0]
    assert "Traceback" not in result.stderr


@pytest.mark.slow
def test_malformed_number_in_dotenv_exits_2(tmp_path: Path) -> None:
    result = _run_bot(
        tmp_path, {}, dotenv="DISCORD_TOKEN=x\nOPENAI_API_KEY=k\nMAX_REPLY_TOKENS=ten\n"
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "mnemo: MAX_REPLY_TOKENS must be a whole number, got 'ten'; see .env.example"
    ]


@pytest.mark.slow
def test_environment_wins_over_dotenv(tmp_path: Path) -> None:
    # The .env value is malformed, the environment's is fine: only the environment's counts,
    # so the failure is about the next problem (the missing API key), not MAX_REPLY_TOKENS.
    result = _run_bot(
        tmp_path,
        {"MAX_REPLY_TOKENS": "500"},
        dotenv="DISCORD_TOKEN=x\nMAX_REPLY_TOKENS=ten\n",
    )
    assert result.returncode == 2
    assert "OPENAI_API_KEY" in result.stderr


def test_env_example_lists_every_setting() -> None:
    example = (ROOT / ".env.example").read_text()
    source = (ROOT / "bot" / "config.py").read_text()
    import re

    read = set(re.findall(r'reader\.\w+\(\s*"([A-Z_]+)"', source)) | {"OPENAI_API_KEY"}
    listed = set(re.findall(r"^([A-Z_]+)=", example, re.MULTILINE))
    assert read == listed


SETTING_ROW = r"^\| `([A-Z][A-Z0-9_]*)` \| ([^|]*) \|"
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


class _Asked(dict[str, str]):
    """An environment that remembers every name the settings asked it for."""

    def __init__(self, env: dict[str, str]) -> None:
        super().__init__(env)
        self.asked: set[str] = set()

    def get(self, key: str, default: str | None = None) -> str | None:  # type: ignore[override]
        self.asked.add(key)
        return super().get(key, default)


def _read_by_settings() -> set[str]:
    env = _Asked(BASE)
    Settings.from_env(env)
    return env.asked


def _documented() -> dict[Path, list[tuple[str, str]]]:
    import re

    return {doc: re.findall(SETTING_ROW, doc.read_text(), re.MULTILINE) for doc in DOCS}


def test_configuration_doc_documents_every_setting_once() -> None:
    """docs/configuration.md has one table row per variable `Settings` reads, and no row for
    anything else; no other page (the README included) has a settings table of its own."""
    rows = _documented()
    names = [name for name, _ in rows.pop(ROOT / "docs" / "configuration.md")]
    assert len(names) == len(set(names)), sorted(n for n in names if names.count(n) > 1)
    assert set(names) == _read_by_settings()
    assert {doc.name: found for doc, found in rows.items() if found} == {}
    # Every Settings field is one of those variables (the settings read nothing unnamed); a
    # field read from another field's variable says which in its metadata.
    fields = {
        f.metadata.get("env", f.name.upper()) for f in dataclasses.fields(Settings) if f.compare
    }
    assert fields <= set(names), sorted(fields - set(names))


def test_configuration_doc_defaults_are_the_defaults() -> None:
    """A default written as a literal (`6000`, `true`, `sqlite:///data/mnemo.db`) is one:
    setting the variable to it changes nothing."""
    import re

    rows = _documented()[ROOT / "docs" / "configuration.md"]
    literal = {name: m.group(1) for name, cell in rows if (m := re.match(r"`([^`]+)`", cell))}
    assert len(literal) >= 30, literal  # most defaults are written as literals
    defaults = Settings.from_env(BASE)
    for name, value in literal.items():
        assert Settings.from_env({**BASE, name: value}) == defaults, (name, value)


def test_configuration_doc_documents_the_database_url_options() -> None:
    import re

    text = (ROOT / "docs" / "configuration.md").read_text()
    rows = dict(re.findall(r"^\| `([a-z_]+)` \| `(\d+)` \|", text, re.MULTILINE))
    url = "postgresql://mnemo@db/mnemo"
    parsed = Settings.from_env({**BASE, "DATABASE_URL": url}).database_url
    own = {f.name for f in dataclasses.fields(parsed)} - {"backend", "dsn", "path"}
    assert set(rows) == own
    for name, default in rows.items():
        assert getattr(parsed, name) == int(default), name
        chosen = Settings.from_env({**BASE, "DATABASE_URL": f"{url}?{name}=7"}).database_url
        assert getattr(chosen, name) == 7 and name not in chosen.dsn, name


def test_access_lists_and_models() -> None:
    settings = Settings.from_env(
        {
            **BASE,
            "ALLOWED_GUILD_IDS": "123456789012345678, 234567890123456789",
            "BLOCKED_USER_IDS": "42",
            "ALLOW_DMS": "false",
            "CHAT_MODEL": "big",
            "ALLOWED_CHAT_MODELS": "small, big,other",
        }
    )
    assert settings.allowed_guild_ids == {123456789012345678, 234567890123456789}
    assert settings.allowed_channel_ids == frozenset()
    assert settings.blocked_user_ids == {42}
    assert settings.allow_dms is False
    assert settings.allowed_chat_models == ("big", "small", "other")
    defaults = Settings.from_env(BASE)
    assert defaults.allow_dms is True
    assert defaults.allowed_chat_models == ("gpt-4o",)


@pytest.mark.parametrize("value", ["12,abc", "-5", "1.5", "0"])
def test_bad_id_lists_name_the_variable(value: str) -> None:
    with pytest.raises(ConfigError, match="ALLOWED_ROLE_IDS"):
        Settings.from_env({**BASE, "ALLOWED_ROLE_IDS": value})


def test_ignored_settings_name_removed_and_near_miss_variables() -> None:
    base = {"DISCORD_TOKEN": "t", "OPENAI_API_KEY": "k", "PATH": "/bin", "HOME": "/root"}
    assert Settings.from_env(base).ignored == ""
    settings = Settings.from_env(
        {**base, "LLM_CONCURRENCY": "2", "SHARDS_IDS": "1", "DISCROD_TOKEN": "x"}
    )
    assert "LLM_CONCURRENCY (removed: MODEL_PARALLEL" in settings.ignored
    assert "SHARDS_IDS (not a setting: did you mean SHARD_IDS?)" in settings.ignored
    assert "DISCROD_TOKEN (not a setting: did you mean DISCORD_TOKEN?)" in settings.ignored


@pytest.mark.parametrize("url", ["sqlite:///:memory:", "sqlite:///file::memory:?cache=shared"])
def test_memory_database_is_refused(url: str) -> None:
    with pytest.raises(ConfigError, match=r"^DATABASE_URL=.* keeps nothing"):
        Settings.from_env({"DISCORD_TOKEN": "t", "OPENAI_API_KEY": "k", "DATABASE_URL": url})


def test_one_pair_of_quotes_around_a_value_is_not_part_of_it() -> None:
    # `docker run --env-file` keeps the quotes .env.example puts around SYSTEM_PROMPT.
    base = {"DISCORD_TOKEN": "t", "OPENAI_API_KEY": "k"}
    assert Settings.from_env({**base, "SYSTEM_PROMPT": '"You are #1 helper"'}).system_prompt == (
        "You are #1 helper"
    )
    assert Settings.from_env({**base, "CHAT_MODEL": "'gpt-4o'"}).chat_model == "gpt-4o"
