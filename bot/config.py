"""Settings: read once from the environment into one frozen, validated object.

Every variable is documented in `.env.example`. A missing or malformed value raises
`ConfigError` with one line naming the variable; `python -m bot` prints it and exits 2.
"""

from __future__ import annotations

import ipaddress
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from dotenv import dotenv_values

from storage.url import DatabaseURL, DatabaseURLError

DEFAULT_SYSTEM_PROMPT = (
    "You are Mnemo, a friendly and concise assistant in a Discord chat. "
    "You remember earlier conversations with each person through the notes you are given. "
    "Answer in the language the user writes in. Use Discord markdown sparingly."
)

OPENAI_DEFAULT_BASE_URL = "https://api.openai.com/v1"
OPENAI_HOST = "api.openai.com"


class ConfigError(Exception):
    """A setting is missing or malformed; the message names the variable."""


@dataclass(frozen=True, slots=True)
class Settings:
    # Secrets stay out of repr(); DatabaseURL prints itself with its password redacted.
    discord_token: str = field(repr=False)
    openai_api_key: str = field(repr=False)
    openai_base_url: str | None
    chat_model: str
    memory_model: str
    database_url: DatabaseURL
    db_backups: int  # copies of the database kept from before migrations (0 = none)
    db_backup_days: int  # those copies are deleted when older than this
    system_prompt: str
    log_level: str
    # Token budgets: a reply's prompt fits in max_prompt_tokens, and max_reply_tokens is
    # reserved on top for the answer; every request (background work too) fits in the sum.
    max_prompt_tokens: int
    max_reply_tokens: int
    max_message_tokens: int
    # A message's text as stored, attachments' text included (read up to this in all).
    max_stored_message_chars: int
    tokenizer_encoding: str
    # Attachments: images go to the chat model as content parts (VISION=auto; off: never),
    # each checked by size before download and by pixels before decoding; PDFs give text.
    vision: bool  # VISION=auto
    max_images_per_message: int
    image_max_side: int  # px of the long side, at most 2048
    image_max_bytes: int  # an image larger than this (as Discord tells it) is not downloaded
    image_max_pixels: int  # an image whose header claims more is not decoded
    pdf_max_pages: int
    pdf_max_bytes: int
    # LLM deadlines.
    llm_timeout_seconds: float
    llm_max_retries: int
    reply_deadline_seconds: float
    # Background memory.
    summary_trigger_tokens: int
    summary_max_tokens: int
    summary_keep_recent_tokens: int
    facts_max_tokens: int
    recall_max_tokens: int
    # Channel context (bot/client/channel_log.py): the operator's default for server channels,
    # and its cap in each prompt (at most half of what the window would have).
    channel_context: bool
    channel_context_tokens: int
    # Hybrid recall (bot.memory.vectors): "" = words only, no embeddings call, nothing stored.
    embedding_model: str
    embedding_base_url: str | None  # None: the model server of OPENAI_BASE_URL
    embedding_timeout_seconds: float  # the query's vector on the reply path: then words only
    facts_batch_messages: int
    facts_idle_seconds: float
    edit_relearn_seconds: float  # re-learning after edits: at most once per session per period
    erasure_cooldown_seconds: float  # a user's /memory clear and /facts forget: one per period
    # PostgreSQL: erased text leaves the database's files within about this (storage.compaction).
    erasure_compact_seconds: float
    background_concurrency: int
    job_lease_seconds: float  # a background job's claim; a dead process's jobs move after it
    retention_days: int
    # Limits (0 = unlimited).
    user_messages_per_minute: int
    user_daily_tokens: int
    server_daily_tokens: int
    # Requests the model server runs at once; replies beyond it queue while their expected
    # wait fits in reply_deadline_seconds, and background calls yield to them.
    model_parallel: int  # the fixed number, or with model_parallel_auto the first guess
    # MODEL_PARALLEL=auto: learned from the server (bot.model.parallel), model_parallel its guess
    model_parallel_auto: bool = field(metadata={"env": "MODEL_PARALLEL"})
    model_parallel_max: int  # never more than this at once, learned or not
    # Discord.
    message_content_intent: bool
    dev_guild_id: int  # slash commands sync to this server at start-up (0 = global)
    # Sharding: SHARD_COUNT 0 = as many shards as Discord recommends, all in this process.
    shard_count: int
    shard_ids: tuple[int, ...]  # the shards this process runs (empty = all of them)
    # Access and controls (bot/policy/access.py). Empty id sets mean "no restriction".
    allowed_guild_ids: frozenset[int]
    allowed_channel_ids: frozenset[int]
    allowed_role_ids: frozenset[int]
    blocked_user_ids: frozenset[int]
    allow_dms: bool
    allowed_chat_models: tuple[str, ...]  # always includes chat_model, first
    persona_max_tokens: int
    discord_connect_seconds: float  # start-up gives up reaching Discord after this long
    database_connect_seconds: float  # ... and a PostgreSQL server after this long
    # One line naming the variables set but ignored (removed settings, near-misses of known
    # names), or "" when there are none; start-up and `mnemo health` show it as a warning.
    ignored: str = field(default="", compare=False)

    @classmethod
    def from_env(
        cls, env: Mapping[str, str] | None = None, *, env_file: str | Path | None = None
    ) -> Settings:
        """Build settings from `env` (default: os.environ), validating every value.

        `env_file` is the `.env` that was loaded, if any: a missing required value then says
        what is missing in it rather than to create it."""
        reader = _Reader(os.environ if env is None else env, env_file)
        base_url = reader.text("OPENAI_BASE_URL", "") or None
        chat_model = reader.text("CHAT_MODEL", "gpt-4o")
        settings = cls(
            discord_token=reader.required("DISCORD_TOKEN"),
            openai_api_key=_api_key(reader, base_url),
            openai_base_url=base_url,
            chat_model=chat_model,
            memory_model=reader.text("MEMORY_MODEL", "gpt-4o-mini"),
            database_url=_database_url(reader.text("DATABASE_URL", "sqlite:///data/mnemo.db")),
            db_backups=reader.integer("DB_BACKUPS", 3, minimum=0),
            db_backup_days=reader.integer("DB_BACKUP_DAYS", 7, minimum=1),
            system_prompt=reader.text("SYSTEM_PROMPT", DEFAULT_SYSTEM_PROMPT),
            log_level=_log_level(reader.text("LOG_LEVEL", "INFO")),
            max_prompt_tokens=reader.integer("MAX_PROMPT_TOKENS", 6000, minimum=500),
            max_reply_tokens=reader.integer("MAX_REPLY_TOKENS", 1000, minimum=16),
            max_message_tokens=reader.integer("MAX_MESSAGE_TOKENS", 1500, minimum=50),
            max_stored_message_chars=reader.integer(
                "MAX_STORED_MESSAGE_CHARS", 16000, minimum=4000
            ),
            tokenizer_encoding=reader.text("TOKENIZER_ENCODING", "auto"),
            vision=_vision(reader.text("VISION", "auto")),
            max_images_per_message=reader.integer("MAX_IMAGES_PER_MESSAGE", 4, minimum=0),
            image_max_side=_image_side(reader.integer("IMAGE_MAX_SIDE", 1536, minimum=64)),
            image_max_bytes=reader.integer("IMAGE_MAX_BYTES", 10_000_000, minimum=10_000),
            image_max_pixels=reader.integer("IMAGE_MAX_PIXELS", 40_000_000, minimum=10_000),
            pdf_max_pages=reader.integer("PDF_MAX_PAGES", 30, minimum=1),
            pdf_max_bytes=reader.integer("PDF_MAX_BYTES", 10_000_000, minimum=10_000),
            llm_timeout_seconds=reader.number("LLM_TIMEOUT_SECONDS", 60.0, minimum=0.1),
            llm_max_retries=reader.integer("LLM_MAX_RETRIES", 2, minimum=0),
            reply_deadline_seconds=reader.number("REPLY_DEADLINE_SECONDS", 120.0, minimum=0.1),
            summary_trigger_tokens=reader.integer("SUMMARY_TRIGGER_TOKENS", 2000, minimum=100),
            summary_max_tokens=reader.integer("SUMMARY_MAX_TOKENS", 500, minimum=50),
            summary_keep_recent_tokens=reader.integer("SUMMARY_KEEP_RECENT_TOKENS", 600, minimum=0),
            facts_max_tokens=reader.integer("FACTS_MAX_TOKENS", 300, minimum=0),
            recall_max_tokens=reader.integer("RECALL_MAX_TOKENS", 800, minimum=0),
            channel_context=reader.boolean("CHANNEL_CONTEXT", False),
            channel_context_tokens=reader.integer("CHANNEL_CONTEXT_TOKENS", 1500, minimum=0),
            embedding_model=reader.text("EMBEDDING_MODEL", ""),
            embedding_base_url=reader.text("EMBEDDING_BASE_URL", "") or None,
            embedding_timeout_seconds=reader.number("EMBEDDING_TIMEOUT_SECONDS", 0.8, minimum=0.05),
            facts_batch_messages=reader.integer("FACTS_BATCH_MESSAGES", 10, minimum=1),
            facts_idle_seconds=reader.number("FACTS_IDLE_SECONDS", 300.0, minimum=0.0),
            edit_relearn_seconds=reader.number("EDIT_RELEARN_SECONDS", 300.0, minimum=0.0),
            erasure_cooldown_seconds=reader.number("ERASURE_COOLDOWN_SECONDS", 30.0, minimum=0.0),
            erasure_compact_seconds=reader.number("ERASURE_COMPACT_SECONDS", 3600.0, minimum=60.0),
            background_concurrency=reader.integer("BACKGROUND_CONCURRENCY", 2, minimum=1),
            job_lease_seconds=reader.number("JOB_LEASE_SECONDS", 60.0, minimum=1.0),
            retention_days=reader.integer("RETENTION_DAYS", 30, minimum=0),
            user_messages_per_minute=reader.integer("USER_MESSAGES_PER_MINUTE", 10, minimum=0),
            user_daily_tokens=reader.integer("USER_DAILY_TOKENS", 0, minimum=0),
            server_daily_tokens=reader.integer("SERVER_DAILY_TOKENS", 0, minimum=0),
            model_parallel=reader.parallel("MODEL_PARALLEL") or default_parallel(base_url),
            model_parallel_auto=reader.parallel("MODEL_PARALLEL") == 0,
            model_parallel_max=reader.integer("MODEL_PARALLEL_MAX", 16, minimum=1),
            message_content_intent=reader.boolean("MESSAGE_CONTENT_INTENT", True),
            dev_guild_id=reader.integer("DEV_GUILD_ID", 0, minimum=0),
            shard_count=reader.integer("SHARD_COUNT", 0, minimum=0),
            shard_ids=reader.integers("SHARD_IDS"),
            allowed_guild_ids=reader.ids("ALLOWED_GUILD_IDS"),
            allowed_channel_ids=reader.ids("ALLOWED_CHANNEL_IDS"),
            allowed_role_ids=reader.ids("ALLOWED_ROLE_IDS"),
            blocked_user_ids=reader.ids("BLOCKED_USER_IDS"),
            allow_dms=reader.boolean("ALLOW_DMS", True),
            allowed_chat_models=_chat_models(chat_model, reader.text("ALLOWED_CHAT_MODELS", "")),
            persona_max_tokens=reader.integer("PERSONA_MAX_TOKENS", 500, minimum=20),
            discord_connect_seconds=reader.number("DISCORD_CONNECT_SECONDS", 60.0, minimum=1.0),
            database_connect_seconds=reader.number("DATABASE_CONNECT_SECONDS", 60.0, minimum=0.0),
            ignored=reader.ignored(),
        )
        settings._check_budgets()
        settings._check_shards()
        return settings

    @property
    def model_base_url(self) -> str:
        """OPENAI_BASE_URL resolved: the URL every model client is built with, passed to the
        SDK explicitly so that it never reads OPENAI_BASE_URL from the environment itself
        (where `.env.example`'s empty `OPENAI_BASE_URL=` would be its URL)."""
        return self.openai_base_url or OPENAI_DEFAULT_BASE_URL

    @property
    def database_path(self) -> Path:
        """The SQLite file of DATABASE_URL (SQLite only; use `database_url` for any backend)."""
        if self.database_url.path is None:
            raise ValueError(f"DATABASE_URL is not a SQLite file: {self.database_url}")
        return self.database_url.path

    def _check_budgets(self) -> None:
        # The persona is not in this sum: the system section takes what the others leave, so
        # a long persona is cut in the prompt rather than pushing the total over the budget.
        fixed = self.max_message_tokens + self.summary_max_tokens + self.facts_max_tokens
        if fixed >= self.max_prompt_tokens:
            raise ConfigError(
                "MAX_PROMPT_TOKENS must be larger than MAX_MESSAGE_TOKENS + SUMMARY_MAX_TOKENS"
                f" + FACTS_MAX_TOKENS ({fixed}); see .env.example"
            )

    def _check_shards(self) -> None:
        if not self.shard_ids:
            return
        if self.shard_count == 0:
            raise ConfigError("SHARD_IDS needs SHARD_COUNT (the fleet's total); see .env.example")
        wrong = [shard for shard in self.shard_ids if shard >= self.shard_count]
        if wrong:
            raise ConfigError(
                f"SHARD_IDS must be below SHARD_COUNT ({self.shard_count}), got {wrong[0]};"
                " see .env.example"
            )


def _vision(value: str) -> bool:
    if value.lower() not in ("auto", "off"):
        raise ConfigError(f"VISION must be auto or off, got {value!r}; see .env.example")
    return value.lower() == "auto"


def _image_side(value: int) -> int:
    if value > 2048:
        raise ConfigError(f"IMAGE_MAX_SIDE must be at most 2048, got {value}; see .env.example")
    return value


class _Reader:
    """Reads typed values, raising ConfigError that names the variable."""

    def __init__(self, env: Mapping[str, str], env_file: str | Path | None = None) -> None:
        self._env = _Recorded(env)
        self._env_file = Path(env_file) if env_file else None

    def ignored(self) -> str:
        """The variables that look meant for Mnemo but are not read: the removed ones, and any
        one edit away from a name read (a typo). Known names are those this reader was asked
        for, so the list cannot drift from the settings."""
        known = self._env.read
        found = []
        for name in sorted(self._env.names()):
            if name in known:
                continue
            if name in REMOVED_SETTINGS:
                found.append(f"{name} (removed: {REMOVED_SETTINGS[name]})")
                continue
            near = sorted(k for k in known if _one_edit(name, k))
            if near:
                found.append(f"{name} (not a setting: did you mean {' or '.join(near)}?)")
        return ", ".join(found)

    def text(self, name: str, default: str) -> str:
        value = self._env.get(name, "").strip()
        # One pair of quotes around the value is not part of it: `docker run --env-file`
        # keeps the quotes that .env needs around free text (python-dotenv removes them).
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
            value = value[1:-1].strip()
        return value or default

    def required(self, name: str) -> str:
        value = self._env.get(name, "").strip()
        if not value:
            raise ConfigError(self._missing(name))
        return value

    def _missing(self, name: str) -> str:
        if self._env_file is None or not self._env_file.is_file():
            return f"{name} is not set: copy .env.example to .env and fill it in"
        try:
            listed = dotenv_values(self._env_file)
        except (OSError, UnicodeDecodeError):
            listed = {}
        if name in listed:
            return f"{name} is not set: it is empty in {self._env_file}; fill it in there"
        return (
            f"{name} is not set: {self._env_file} has no {name}= line (nor does the"
            f" environment); add one (see .env.example)"
        )

    def boolean(self, name: str, default: bool) -> bool:
        raw = self._env.get(name, "").strip().lower()
        if not raw:
            return default
        if raw in ("1", "true", "yes", "on"):
            return True
        if raw in ("0", "false", "no", "off"):
            return False
        raise ConfigError(f"{name} must be true or false, got {raw!r}; see .env.example")

    def ids(self, name: str) -> frozenset[int]:
        """A comma- or space-separated list of Discord ids (snowflakes); empty: none."""
        raw = self._env.get(name, "").replace(",", " ").split()
        found = set()
        for item in raw:
            if not item.isdigit() or int(item) <= 0:
                raise ConfigError(
                    f"{name} must be Discord ids separated by commas, got {item!r};"
                    " see .env.example"
                )
            found.add(int(item))
        return frozenset(found)

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

    def parallel(self, name: str) -> int:
        """`auto` (or empty, or 0): 0, to be learned; else a whole number of at least 1."""
        raw = self._env.get(name, "").strip().lower()
        if raw in ("", "auto"):
            return 0
        try:
            return self.integer(name, 0, minimum=0)
        except ConfigError:
            raise ConfigError(
                f"{name} must be auto or a whole number, got {raw!r}; see .env.example"
            ) from None

    def integers(self, name: str) -> tuple[int, ...]:
        """A comma-separated list of whole numbers (shard numbers); empty when unset."""
        raw = self._env.get(name, "").strip()
        try:
            values = tuple(int(part) for part in raw.replace(" ", "").split(",") if part)
        except ValueError:
            raise ConfigError(
                f"{name} must be whole numbers separated by commas, got {raw!r}; see .env.example"
            ) from None
        if any(value < 0 for value in values):
            raise ConfigError(f"{name} must not hold negative numbers; see .env.example")
        return values

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


REMOVED_SETTINGS = {
    "LLM_CONCURRENCY": "MODEL_PARALLEL says how many requests the model server runs at once",
    "LLM_QUEUE_LIMIT": "messages wait while they can be answered in REPLY_DEADLINE_SECONDS",
    "OPENAI_API_BASE": "the old SDK's name; Mnemo reads OPENAI_BASE_URL",
}


class _Recorded:
    """The environment, remembering which names were asked for."""

    def __init__(self, env: Mapping[str, str]) -> None:
        self._env = env
        self.read: set[str] = set()

    def get(self, name: str, default: str) -> str:
        self.read.add(name)
        return self._env.get(name, default)

    def names(self) -> list[str]:
        return list(self._env)


def _one_edit(a: str, b: str) -> bool:
    """a and b differ by one insertion, deletion, substitution or swap of neighbours."""
    if a == b or abs(len(a) - len(b)) > 1:
        return False
    if len(a) == len(b):
        diff = [i for i, (x, y) in enumerate(zip(a, b, strict=True)) if x != y]
        return len(diff) == 1 or (
            len(diff) == 2
            and diff[1] == diff[0] + 1
            and a[diff[0]] == b[diff[1]]
            and a[diff[1]] == b[diff[0]]
        )
    short, long = (a, b) if len(a) < len(b) else (b, a)
    return any(long[:i] + long[i + 1 :] == short for i in range(len(long)))


def is_openai(base_url: str | None) -> bool:
    return base_url is None or urlsplit(base_url).hostname == OPENAI_HOST


def default_parallel(base_url: str | None) -> int:
    """MODEL_PARALLEL's first guess: OpenAI serves many at once; a local server often one."""
    if is_openai(base_url):
        return 8
    return 1 if is_local(base_url) else 4  # 4: a hosted OpenAI-compatible service


def is_local(base_url: str | None) -> bool:
    """A server on this machine or a private network: often one request at a time."""
    host = urlsplit(base_url or "").hostname or ""
    if host == "localhost" or host.endswith((".local", ".localhost", ".internal")):
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    return address.is_loopback or address.is_private or address.is_link_local


def _api_key(reader: _Reader, base_url: str | None) -> str:
    if base_url is None or base_url.rstrip("/") == OPENAI_DEFAULT_BASE_URL:
        return reader.required("OPENAI_API_KEY")
    # Local servers (Ollama, vLLM, llama.cpp) accept any key, but the SDK insists on one.
    return reader.text("OPENAI_API_KEY", "not-needed")


def _chat_models(default: str, listed: str) -> tuple[str, ...]:
    """The models admins may choose: CHAT_MODEL first (always allowed), then the list."""
    models = [default]
    for name in listed.split(","):
        name = name.strip()
        if name and name not in models:
            models.append(name)
    return tuple(models)


def _database_url(url: str) -> DatabaseURL:
    try:
        parsed = DatabaseURL.parse(url)
    except DatabaseURLError as error:
        raise ConfigError(f"{error}; see .env.example") from None
    if parsed.path is not None and (
        parsed.path.name == ":memory:" or str(parsed.path).startswith("file:")
    ):
        raise ConfigError(
            f"DATABASE_URL={url} keeps nothing: every memory would be lost at each restart;"
            " use a file, e.g. sqlite:///data/mnemo.db; see .env.example"
        )
    return parsed


def _log_level(name: str) -> str:
    level = name.upper()
    if not isinstance(logging.getLevelName(level), int):
        raise ConfigError(
            f"LOG_LEVEL must be one of DEBUG, INFO, WARNING, ERROR, got {name!r}; see .env.example"
        )
    return level
