"""Settings: read once from the environment into one frozen, validated object.

Every variable is documented in `.env.example`. A missing or malformed value raises
`ConfigError` with one line naming the variable; `python -m bot` prints it and exits 2.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

DEFAULT_SYSTEM_PROMPT = (
    "You are Mnemo, a friendly and concise assistant in a Discord chat. "
    "You remember earlier conversations with each person through the notes you are given. "
    "Answer in the language the user writes in. Use Discord markdown sparingly."
)

OPENAI_DEFAULT_BASE_URL = "https://api.openai.com/v1"


class ConfigError(Exception):
    """A setting is missing or malformed; the message names the variable."""


@dataclass(frozen=True, slots=True)
class Settings:
    discord_token: str
    openai_api_key: str
    openai_base_url: str | None
    chat_model: str
    memory_model: str
    database_path: Path
    db_backups: int  # copies of the database kept from before migrations (0 = none)
    system_prompt: str
    log_level: str
    # Token budgets: everything sent must fit in max_prompt_tokens; max_reply_tokens is
    # reserved on top for the answer.
    max_prompt_tokens: int
    max_reply_tokens: int
    max_message_tokens: int
    tokenizer_encoding: str
    # LLM deadlines.
    llm_timeout_seconds: float
    llm_max_retries: int
    reply_deadline_seconds: float
    # Background memory.
    summary_trigger_tokens: int
    summary_max_tokens: int
    summary_keep_recent_tokens: int
    facts_max_tokens: int
    facts_batch_messages: int
    facts_idle_seconds: float
    background_concurrency: int
    retention_days: int
    # Limits (0 = unlimited).
    user_messages_per_minute: int
    user_daily_tokens: int
    server_daily_tokens: int
    llm_concurrency: int
    llm_queue_limit: int
    # Discord.
    message_content_intent: bool
    dev_guild_id: int  # slash commands sync to this server at start-up (0 = global)
    discord_connect_seconds: float  # start-up gives up reaching Discord after this long

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """Build settings from `env` (default: os.environ), validating every value."""
        reader = _Reader(os.environ if env is None else env)
        base_url = reader.text("OPENAI_BASE_URL", "") or None
        settings = cls(
            discord_token=reader.required("DISCORD_TOKEN"),
            openai_api_key=_api_key(reader, base_url),
            openai_base_url=base_url,
            chat_model=reader.text("CHAT_MODEL", "gpt-4o"),
            memory_model=reader.text("MEMORY_MODEL", "gpt-4o-mini"),
            database_path=_database_path(reader.text("DATABASE_URL", "sqlite:///data/mnemo.db")),
            db_backups=reader.integer("DB_BACKUPS", 3, minimum=0),
            system_prompt=reader.text("SYSTEM_PROMPT", DEFAULT_SYSTEM_PROMPT),
            log_level=_log_level(reader.text("LOG_LEVEL", "INFO")),
            max_prompt_tokens=reader.integer("MAX_PROMPT_TOKENS", 6000, minimum=500),
            max_reply_tokens=reader.integer("MAX_REPLY_TOKENS", 1000, minimum=16),
            max_message_tokens=reader.integer("MAX_MESSAGE_TOKENS", 1500, minimum=50),
            tokenizer_encoding=reader.text("TOKENIZER_ENCODING", "auto"),
            llm_timeout_seconds=reader.number("LLM_TIMEOUT_SECONDS", 60.0, minimum=0.1),
            llm_max_retries=reader.integer("LLM_MAX_RETRIES", 2, minimum=0),
            reply_deadline_seconds=reader.number("REPLY_DEADLINE_SECONDS", 120.0, minimum=0.1),
            summary_trigger_tokens=reader.integer("SUMMARY_TRIGGER_TOKENS", 2000, minimum=100),
            summary_max_tokens=reader.integer("SUMMARY_MAX_TOKENS", 500, minimum=50),
            summary_keep_recent_tokens=reader.integer("SUMMARY_KEEP_RECENT_TOKENS", 600, minimum=0),
            facts_max_tokens=reader.integer("FACTS_MAX_TOKENS", 300, minimum=0),
            facts_batch_messages=reader.integer("FACTS_BATCH_MESSAGES", 10, minimum=1),
            facts_idle_seconds=reader.number("FACTS_IDLE_SECONDS", 300.0, minimum=0.0),
            background_concurrency=reader.integer("BACKGROUND_CONCURRENCY", 2, minimum=1),
            retention_days=reader.integer("RETENTION_DAYS", 30, minimum=0),
            user_messages_per_minute=reader.integer("USER_MESSAGES_PER_MINUTE", 10, minimum=0),
            user_daily_tokens=reader.integer("USER_DAILY_TOKENS", 0, minimum=0),
            server_daily_tokens=reader.integer("SERVER_DAILY_TOKENS", 0, minimum=0),
            llm_concurrency=reader.integer("LLM_CONCURRENCY", 4, minimum=1),
            llm_queue_limit=reader.integer("LLM_QUEUE_LIMIT", 50, minimum=0),
            message_content_intent=reader.boolean("MESSAGE_CONTENT_INTENT", True),
            dev_guild_id=reader.integer("DEV_GUILD_ID", 0, minimum=0),
            discord_connect_seconds=reader.number("DISCORD_CONNECT_SECONDS", 60.0, minimum=1.0),
        )
        settings._check_budgets()
        return settings

    def _check_budgets(self) -> None:
        fixed = self.max_message_tokens + self.summary_max_tokens + self.facts_max_tokens
        if fixed >= self.max_prompt_tokens:
            raise ConfigError(
                "MAX_PROMPT_TOKENS must be larger than MAX_MESSAGE_TOKENS + SUMMARY_MAX_TOKENS"
                f" + FACTS_MAX_TOKENS ({fixed}); see .env.example"
            )


class _Reader:
    """Reads typed values, raising ConfigError that names the variable."""

    def __init__(self, env: Mapping[str, str]) -> None:
        self._env = env

    def text(self, name: str, default: str) -> str:
        value = self._env.get(name, "").strip()
        return value or default

    def required(self, name: str) -> str:
        value = self._env.get(name, "").strip()
        if not value:
            raise ConfigError(f"{name} is not set: copy .env.example to .env and fill it in")
        return value

    def boolean(self, name: str, default: bool) -> bool:
        raw = self._env.get(name, "").strip().lower()
        if not raw:
            return default
        if raw in ("1", "true", "yes", "on"):
            return True
        if raw in ("0", "false", "no", "off"):
            return False
        raise ConfigError(f"{name} must be true or false, got {raw!r}; see .env.example")

    def integer(self, name: str, default: int, *, minimum: int) -> int:
        raw = self._env.get(name, "").strip()
        if not raw:
            return default
        try:
            value = int(raw)
        except ValueError:
            raise ConfigError(
                f"{name} must be a whole number, got {raw!r}; see .env.example"
            ) from None
        if value < minimum:
            raise ConfigError(f"{name} must be at least {minimum}, got {value}; see .env.example")
        return value

    def number(self, name: str, default: float, *, minimum: float) -> float:
        raw = self._env.get(name, "").strip()
        if not raw:
            return default
        try:
            value = float(raw)
        except ValueError:
            raise ConfigError(f"{name} must be a number, got {raw!r}; see .env.example") from None
        if not value >= minimum:  # also rejects NaN
            raise ConfigError(f"{name} must be at least {minimum}, got {raw}; see .env.example")
        return value


def _api_key(reader: _Reader, base_url: str | None) -> str:
    if base_url is None or base_url.rstrip("/") == OPENAI_DEFAULT_BASE_URL:
        return reader.required("OPENAI_API_KEY")
    # Local servers (Ollama, vLLM, llama.cpp) accept any key, but the SDK insists on one.
    return reader.text("OPENAI_API_KEY", "not-needed")


def _database_path(url: str) -> Path:
    prefix = "sqlite:///"
    if not url.startswith(prefix) or len(url) == len(prefix):
        raise ConfigError(
            f"DATABASE_URL must look like sqlite:///relative/path.db or "
            f"sqlite:////absolute/path.db, got {url!r}; see .env.example"
        )
    # sqlite:///data/x.db -> "data/x.db" (relative); sqlite:////srv/x.db -> "/srv/x.db".
    return Path(url[len(prefix) :])


def _log_level(name: str) -> str:
    level = name.upper()
    if not isinstance(logging.getLevelName(level), int):
        raise ConfigError(
            f"LOG_LEVEL must be one of DEBUG, INFO, WARNING, ERROR, got {name!r}; see .env.example"
        )
    return level
