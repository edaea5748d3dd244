"""The engine's side of access and per-server controls: rules loaded from the database through a
small cache, the admins' changes, the users' memory pause, and the checks on what admins set.

A server's rules are read on every addressed message, so they are cached in the process; a
change made here invalidates its server at once. Entries also expire after a TTL, because in a
fleet another process may have made the change (its own cache is the only one it can clear).
Messages that miss the cache together (a burst after a restart, or as an entry expires) share
one load; a load that began before a change made here is not cached.
A pause is never cached: it is read from the database on every message, so a pause made on any
process holds on the very next message.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from bot.config import Settings
from bot.model.tokens import Tokenizer
from bot.policy.access import ChannelView, Decision, OperatorPolicy, Place, decide, resolve
from storage import Storage
from storage.guild_settings import ServerRules

RULES_TTL_SECONDS = 30.0
RULES_CACHE_MAX = 5000


@dataclass(frozen=True, slots=True)
class UsageReport:
    """A server's model tokens (as the API reported them), for /mnemo-admin stats."""

    today: int
    last_30_days: int
    top: list[tuple[int, int]]  # (user id, tokens) over 30 days, most first
    budget: int  # SERVER_DAILY_TOKENS, 0: none


class Controls:
    def __init__(
        self,
        storage: Storage,
        settings: Settings,
        tokenizer: Tokenizer,
        *,
        clock: Callable[[], float] = time.time,
        ttl: float = RULES_TTL_SECONDS,
    ) -> None:
        self._repo = storage.guild_settings
        self._usage = storage.usage
        self._settings = settings
        self._tokenizer = tokenizer
        self._clock = clock
        self._ttl = ttl
        self._cache: dict[int, tuple[float, ServerRules]] = {}
        self._loading: dict[int, asyncio.Future[ServerRules]] = {}
        self.policy = OperatorPolicy.from_settings(settings)

    # -- reading ----------------------------------------------------------------------------

    async def rules(self, guild_id: int) -> ServerRules:
        cached = self._cache.get(guild_id)
        if cached is not None and cached[0] > time.monotonic():
            return cached[1]
        loading = self._loading.get(guild_id)
        if loading is None:
            loading = asyncio.ensure_future(self._load(guild_id))
            self._loading[guild_id] = loading
            loading.add_done_callback(lambda done: self._loaded(guild_id, done))
        # Shielded: one waiter cancelled (its message deleted) does not cancel the others'.
        return await asyncio.shield(loading)

    async def _load(self, guild_id: int) -> ServerRules:
        rules = await self._repo.load(guild_id)
        # Still the server's load: no change was made here meanwhile (`invalidate` drops it).
        if self._loading.get(guild_id) is asyncio.current_task():
            if len(self._cache) >= RULES_CACHE_MAX:
                self._cache.clear()  # crude but bounded; reloading is four indexed reads
            self._cache[guild_id] = (time.monotonic() + self._ttl, rules)
        return rules

    def _loaded(self, guild_id: int, done: asyncio.Future[ServerRules]) -> None:
        if self._loading.get(guild_id) is done:
            del self._loading[guild_id]
        if not done.cancelled():
            done.exception()  # retrieved: every waiter has seen it already

    def invalidate(self, guild_id: int) -> None:
        self._cache.pop(guild_id, None)
        self._loading.pop(guild_id, None)  # later callers load again, after the change

    async def check(self, place: Place) -> tuple[Decision, ChannelView]:
        """May this message be answered, and how is it answered there."""
        rules = None
        member_rules: dict[int, ServerRules] = {}
        if place.guild_id is not None and self.policy.guild_allowed(place.guild_id):
            rules = await self.rules(place.guild_id)
        elif place.guild_id is None and self.policy.dms_need_membership:
            for membership in place.memberships:
                if self.policy.qualifies(membership):
                    member_rules[membership.guild_id] = await self.rules(membership.guild_id)
        decision = decide(self.policy, rules, place, member_rules)
        view = resolve(rules, place.chain)
        if place.audience is not None:
            view = dataclasses.replace(view, audience=place.audience)
        return decision, view

    async def is_paused(self, user_id: int) -> bool:
        return await self._repo.is_paused(user_id)

    async def paused_among(self, user_ids: Sequence[int]) -> set[int]:
        """Which of these users paused their memory (never cached, like `is_paused`)."""
        return await self._repo.paused_among(user_ids)

    def model_for(self, view: ChannelView) -> str:
        """The stored choice, if the operator still allows it; else CHAT_MODEL."""
        model = view.chat_model
        return model if model in self._settings.allowed_chat_models else self._settings.chat_model

    def channel_context_for(self, view: ChannelView) -> bool:
        """Whether prompts in this place hold the channel's recent messages: the place's
        choice, else the server's, else the operator's CHANNEL_CONTEXT."""
        if view.channel_context is None:
            return self._settings.channel_context
        return view.channel_context

    def blocked_here(self, rules: ServerRules | None) -> frozenset[int]:
        """Whose lines never enter a channel context here: the operator's BLOCKED_USER_IDS
        and the server's block list."""
        blocked = self.policy.blocked_user_ids
        return blocked | rules.blocked if rules is not None else blocked

    def persona_for(self, view: ChannelView) -> str:
        """The place's persona (capped, in case PERSONA_MAX_TOKENS was lowered since it was
        set), or the operator's SYSTEM_PROMPT."""
        if view.persona is None:
            return self._settings.system_prompt
        cap = self._settings.persona_max_tokens
        if self._tokenizer.count(view.persona) <= cap:
            return view.persona
        return self._tokenizer.truncate(view.persona, cap)

    async def usage(self, guild_id: int) -> UsageReport:
        today = datetime.fromtimestamp(self._clock(), tz=UTC)
        first = (today - timedelta(days=29)).strftime("%Y-%m-%d")
        return UsageReport(
            await self._usage.used(today.strftime("%Y-%m-%d"), "guild", guild_id),
            await self._usage.guild_since(guild_id, first),
            await self._usage.top_members(guild_id, first),
            self._settings.server_daily_tokens,
        )

    # -- checking what admins set -----------------------------------------------------------

    def persona_problem(self, persona: str) -> str | None:
        tokens = self._tokenizer.count(persona)
        limit = self._settings.persona_max_tokens
        if not persona.strip():
            return "A persona cannot be empty; use reset to go back to the default."
        if tokens > limit:
            return (
                f"That persona is {tokens} tokens; the limit is {limit} (PERSONA_MAX_TOKENS)."
                " Shorten it and try again."
            )
        return None

    def model_problem(self, model: str) -> str | None:
        allowed = self._settings.allowed_chat_models
        if model in allowed:
            return None
        return f"`{model}` is not one of the models this bot offers: " + ", ".join(
            f"`{name}`" for name in allowed
        )

    # -- changing ---------------------------------------------------------------------------

    async def set_server(self, guild_id: int, name: str, value: str | int | None) -> ServerRules:
        await self._repo.set_server(guild_id, name, value, now=self._clock())
        return await self._reload(guild_id)

    async def set_channel(
        self, guild_id: int, channel_id: int, name: str, value: str | int | None
    ) -> ServerRules:
        await self._repo.set_channel(guild_id, channel_id, name, value, now=self._clock())
        return await self._reload(guild_id)

    async def set_role(self, guild_id: int, role_id: int, access: str | None) -> ServerRules:
        assert access in (None, "allow", "deny")
        await self._repo.set_role(guild_id, role_id, access)  # type: ignore[arg-type]
        return await self._reload(guild_id)

    async def set_blocked(
        self, guild_id: int, user_id: int, blocked: bool, *, by: int
    ) -> ServerRules:
        await self._repo.set_blocked(guild_id, user_id, blocked, by=by, now=self._clock())
        return await self._reload(guild_id)

    async def set_paused(self, user_id: int, paused: bool) -> bool:
        return await self._repo.set_paused(user_id, paused, now=self._clock())

    async def _reload(self, guild_id: int) -> ServerRules:
        self.invalidate(guild_id)
        return await self.rules(guild_id)
