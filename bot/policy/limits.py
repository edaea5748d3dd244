"""Per-user message rate, daily token budgets per user and per server, LLM admission.

Budgets are counted from the API's usage figures (our own count when a server sends none) and
stored per UTC day. A server or a user over budget loses background work first: summaries and
extraction stop at BACKGROUND_BUDGET_SHARE of the budget, replies only at the full budget. A
user's background work (on their conversations, in servers and DMs) is charged to them.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from bot.config import Settings
from bot.model.llm import Usage
from storage.fleet import FleetRepository
from storage.models import SessionKey
from storage.usage import UsageRepository

BACKGROUND_BUDGET_SHARE = 0.9
RATE_WINDOW_SECONDS = 60.0


@dataclass(frozen=True, slots=True)
class Refusal:
    """Why a message is not answered now, and when it may be (epoch seconds)."""

    message: str
    resets_at: float
    notify: bool = True  # False: the user was already told in this limit window


class Limits:
    def __init__(
        self,
        settings: Settings,
        usage: UsageRepository,
        fleet: FleetRepository,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._settings = settings
        self._usage = usage
        self._fleet = fleet
        self._clock = clock

    async def check_rate(self, user_id: int) -> Refusal | None:
        """Count this message against the user's per-minute rate; refuse past the limit.

        Counted in the database, so the limit holds for the whole fleet (a user in two
        servers on two shards is one user), in fixed one-minute windows.
        """
        limit = self._settings.user_messages_per_minute
        if limit <= 0:
            return None
        now = self._clock()
        window_start = now - now % RATE_WINDOW_SECONDS
        count = await self._fleet.count_message(user_id, window_start=window_start)
        if count <= limit:
            return None
        # One notice per window, to the first message refused: a notice per refused message
        # would itself flood the channel (and Discord's per-channel rate limit holds up
        # everyone's answers).
        return Refusal(
            f"You're sending messages faster than I can keep up with ({limit} a minute).",
            window_start + RATE_WINDOW_SECONDS,
            notify=count == limit + 1,
        )

    async def check_budget(self, key: SessionKey) -> Refusal | None:
        """Refuse a reply once the user's or the server's daily tokens are used up."""
        day = self._day()
        user_limit = self._settings.user_daily_tokens
        if user_limit and await self._usage.used(day, "user", key.user_id) >= user_limit:
            return Refusal("You've used today's share of my model budget.", self._tomorrow())
        if await self._server_used_share(key.guild_id, day) >= 1.0:
            return Refusal("This server has used today's model budget.", self._tomorrow())
        return None

    async def background_allowed(self, key: SessionKey) -> bool:
        """Summaries and extraction for this conversation: below BACKGROUND_BUDGET_SHARE of
        both the server's and the user's daily budget (the user's holds in DMs too)."""
        day = self._day()
        if await self._server_used_share(key.guild_id, day) >= BACKGROUND_BUDGET_SHARE:
            return False
        user_limit = self._settings.user_daily_tokens
        if not user_limit:
            return True
        used = await self._usage.used(day, "user", key.user_id)
        return used < user_limit * BACKGROUND_BUDGET_SHARE

    async def charge(
        self,
        key: SessionKey,
        usage: Usage | None,
        estimate: Callable[[], int],
        *,
        private: bool = False,
    ) -> None:
        """Add a call's tokens to today's totals: the API's figure, else our estimate (only
        computed then, since counting a long transcript is not free).

        `private` (the user paused their memory): the server's total still counts, and the
        user's own counter only when a per-user budget needs it; no per-member statistics.
        """
        tokens = usage.prompt_tokens + usage.completion_tokens if usage else estimate()
        await self._usage.add(
            self._day(),
            user_id=key.user_id,
            guild_id=key.guild_id,
            tokens=tokens,
            per_user=not private or self._settings.user_daily_tokens > 0,
            per_member=not private,
        )

    async def _server_used_share(self, guild_id: int | None, day: str) -> float:
        limit = self._settings.server_daily_tokens
        if not limit or guild_id is None:
            return 0.0
        return await self._usage.used(day, "guild", guild_id) / limit

    def _day(self) -> str:
        return datetime.fromtimestamp(self._clock(), tz=UTC).strftime("%Y-%m-%d")

    def _tomorrow(self) -> float:
        today = datetime.fromtimestamp(self._clock(), tz=UTC).replace(
            hour=0, minute=0, second=0, microsecond=0
        )
        return (today + timedelta(days=1)).timestamp()


class Cooldown:
    """At most one action per key (a user, a session) per period, in this process, in bounded
    memory: the erasures a user starts (each rewrites the search index), re-learning after
    edits (each a summary and an extraction)."""

    KEPT = 10_000

    def __init__(self, seconds: float, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._seconds = seconds
        self._clock = clock
        self._last: OrderedDict[int, float] = OrderedDict()

    def wait(self, key: int) -> float:
        """Seconds before `key` may act again (0: now)."""
        last = self._last.get(key)
        if last is None:
            return 0.0
        return max(0.0, last + self._seconds - self._clock())

    def used(self, key: int) -> None:
        if self._seconds <= 0:
            return
        self._last[key] = self._clock()
        self._last.move_to_end(key)
        while len(self._last) > self.KEPT:
            self._last.popitem(last=False)
