"""Who is a member of which server, for DMs under the operator's allow-lists.

With `ALLOWED_GUILD_IDS` or `ALLOWED_ROLE_IDS` set, a DM is served only to a member of an
allowed server (holding an allowed role there, when roles are listed). Mnemo has no privileged
members intent, so the membership is read from the member cache when it is there, else over
REST (`GET /guilds/{id}/members/{user}`), and each answer is kept `MEMBER_CACHE_SECONDS` in a
bounded cache: a DM conversation costs one lookup per candidate server every few minutes. An
unknown member (404) is not a member; a lookup that fails otherwise counts as no membership
(refused, not cached: the next message asks again).

Candidate servers are only those that could qualify: in `ALLOWED_GUILD_IDS` (when set) and
holding one of `ALLOWED_ROLE_IDS` (when set; a role id belongs to one server). So the lookups
are bounded by the operator's lists, not by how many servers added the bot.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections import OrderedDict
from collections.abc import Callable

import discord

from bot.policy.access import Membership, OperatorPolicy, Place

log = logging.getLogger(__name__)

MEMBER_CACHE_SECONDS = 300.0
MEMBER_CACHE_MAX = 10_000


class MemberLookup:
    def __init__(
        self,
        client: discord.Client,
        policy: OperatorPolicy,
        *,
        ttl: float = MEMBER_CACHE_SECONDS,
        max_entries: int = MEMBER_CACHE_MAX,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._client = client
        self._policy = policy
        self._ttl = ttl
        self._max = max_entries
        self._clock = clock
        # (guild id, user id) -> (expires at, the membership or None: not a member)
        self._cache: OrderedDict[tuple[int, int], tuple[float, Membership | None]] = OrderedDict()

    def candidates(self) -> list[discord.Guild]:
        """The servers whose membership could allow DMs."""
        policy = self._policy
        return [
            guild
            for guild in self._client.guilds
            if policy.guild_allowed(guild.id)
            and (not policy.role_ids or any(guild.get_role(r) for r in policy.role_ids))
        ]

    async def with_memberships(self, place: Place) -> Place:
        """The place of a DM with its author's memberships filled in, when an allow-list makes
        them matter; any other place as it is."""
        if place.guild_id is not None or not self._policy.dms_need_membership:
            return place
        return dataclasses.replace(place, memberships=await self.memberships(place.user_id))

    async def memberships(self, user_id: int) -> tuple[Membership, ...]:
        """The user's memberships of the candidate servers (none when no allow-list is set)."""
        if not self._policy.dms_need_membership:
            return ()
        found = []
        for guild in self.candidates():
            membership = await self._membership(guild, user_id)
            if membership is not None:
                found.append(membership)
        return tuple(found)

    async def _membership(self, guild: discord.Guild, user_id: int) -> Membership | None:
        key = (guild.id, user_id)
        now = self._clock()
        cached = self._cache.get(key)
        if cached is not None and cached[0] > now:
            self._cache.move_to_end(key)
            return cached[1]
        member = guild.get_member(user_id)
        if member is None:
            try:
                member = await guild.fetch_member(user_id)
            except discord.NotFound:
                member = None
            except discord.HTTPException as error:
                log.warning("Could not look up member %s of %s: %s", user_id, guild.id, error)
                return None
        membership = (
            Membership(guild.id, frozenset(role.id for role in member.roles))
            if member is not None
            else None
        )
        self._cache[key] = (now + self._ttl, membership)
        self._cache.move_to_end(key)
        while len(self._cache) > self._max:
            self._cache.popitem(last=False)
        return membership

    def forget(self, user_id: int | None = None) -> None:
        """Drop cached answers (of one user, or all)."""
        if user_id is None:
            self._cache.clear()
            return
        for key in [k for k in self._cache if k[1] == user_id]:
            del self._cache[key]
