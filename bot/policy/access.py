"""Who may talk to Mnemo, where, and how it answers there: pure policy, no I/O.

The operator's environment (`OperatorPolicy`) sets the outer bounds; each server's admins refine
them for their server (`ServerRules`, stored in the database). `decide` answers one question for
one message: may it reach the model (and be stored), and if not, does its author get a short
notice or silence. `resolve` says how the bot answers in a channel: mention-only or always, in a
new thread or not, with which persona and model.

A place is looked up most specific first: a thread, then its channel, then the channel's
category. So a category covers its channels and a channel covers its threads, and a setting on
a channel wins over its category's.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from bot.config import Settings
from bot.policy.audience import Audience
from storage.guild_settings import AnswerMode, ServerRules


@dataclass(frozen=True, slots=True)
class OperatorPolicy:
    """The operator's bounds from the environment; an empty id set restricts nothing."""

    guild_ids: frozenset[int] = frozenset()
    channel_ids: frozenset[int] = frozenset()
    role_ids: frozenset[int] = frozenset()
    blocked_user_ids: frozenset[int] = frozenset()
    allow_dms: bool = True

    @classmethod
    def from_settings(cls, settings: Settings) -> OperatorPolicy:
        return cls(
            settings.allowed_guild_ids,
            settings.allowed_channel_ids,
            settings.allowed_role_ids,
            settings.blocked_user_ids,
            settings.allow_dms,
        )

    def guild_allowed(self, guild_id: int) -> bool:
        return not self.guild_ids or guild_id in self.guild_ids

    @property
    def dms_need_membership(self) -> bool:
        """With a server or role allow-list, a DM is served only to a member of an allowed
        server (holding an allowed role there, when roles are listed)."""
        return bool(self.guild_ids or self.role_ids)

    def qualifies(self, membership: Membership) -> bool:
        """Whether membership of this server lets its member talk to Mnemo in DMs."""
        if not self.guild_allowed(membership.guild_id):
            return False
        return not self.role_ids or bool(self.role_ids & membership.role_ids)


@dataclass(frozen=True, slots=True)
class Membership:
    """A user's membership of one server, as Discord answered it: the server and their roles."""

    guild_id: int
    role_ids: frozenset[int] = frozenset()


@dataclass(frozen=True, slots=True)
class Place:
    """Where a message was written and by whom: ids only."""

    user_id: int
    guild_id: int | None = None  # None: a DM
    channel_id: int = 0
    parent_id: int | None = None  # a thread's channel
    category_id: int | None = None
    role_ids: frozenset[int] = frozenset()
    # In a DM: the user's memberships of the servers that could allow DMs (looked up only when
    # the operator has a server or role allow-list).
    memberships: tuple[Membership, ...] = ()
    # Who may read this place now, from Discord's permissions (None: a DM; see
    # bot.policy.audience): what memory may be used here.
    audience: Audience | None = None

    @property
    def chain(self) -> tuple[int, ...]:
        """The ids whose settings apply here, most specific first."""
        found: list[int] = []
        for item in (self.channel_id, self.parent_id, self.category_id):
            if item and item not in found:
                found.append(item)
        return tuple(found)


@dataclass(frozen=True, slots=True)
class Decision:
    allowed: bool
    notice: bool = False  # when not allowed: tell the author (True) or stay silent
    reason: str = "allowed"  # for the log line; never shown to other users


ALLOWED = Decision(True)


def decide(
    policy: OperatorPolicy,
    rules: ServerRules | None,
    place: Place,
    member_rules: Mapping[int, ServerRules] | None = None,
) -> Decision:
    """May this message reach the model? DMs get a notice when not; servers as they chose.

    `member_rules`, for a DM: the rules of the servers in `place.memberships` (their block
    lists apply to DMs too)."""
    if place.guild_id is None:
        if place.user_id in policy.blocked_user_ids:
            return Decision(False, notice=True, reason="user blocked by the operator")
        if not policy.allow_dms:
            return Decision(False, notice=True, reason="DMs are off (ALLOW_DMS)")
        if policy.dms_need_membership:
            return _dm_decision(policy, place, member_rules or {})
        return ALLOWED
    if not policy.guild_allowed(place.guild_id):
        # Ignored, never answered: the operator did not allow this server at all.
        return Decision(False, notice=False, reason="server not in ALLOWED_GUILD_IDS")
    reason = _operator_refusal(policy, place) or _server_refusal(rules, place)
    if reason is None:
        return ALLOWED
    return Decision(False, notice=rules.notice if rules is not None else False, reason=reason)


def _dm_decision(
    policy: OperatorPolicy, place: Place, member_rules: Mapping[int, ServerRules]
) -> Decision:
    """Served in DMs: a member of an allowed server (with an allowed role there, when roles are
    listed) whom none of those servers' admins blocked."""
    qualifying = [m for m in place.memberships if policy.qualifies(m)]
    for membership in qualifying:
        server = member_rules.get(membership.guild_id)
        if server is not None and place.user_id in server.blocked:
            return Decision(False, notice=True, reason="user blocked by an allowed server")
    if not qualifying:
        return Decision(
            False, notice=True, reason="DM from no member of an allowed server (or role)"
        )
    return ALLOWED


def _operator_refusal(policy: OperatorPolicy, place: Place) -> str | None:
    if place.user_id in policy.blocked_user_ids:
        return "user blocked by the operator"
    if policy.channel_ids and not policy.channel_ids.intersection(place.chain):
        return "channel not in ALLOWED_CHANNEL_IDS"
    if policy.role_ids and not policy.role_ids & place.role_ids:
        return "no role in ALLOWED_ROLE_IDS"
    return None


def _server_refusal(rules: ServerRules | None, place: Place) -> str | None:
    if rules is None:
        return None
    if place.user_id in rules.blocked:
        return "member blocked by the server"
    if not channel_allowed(rules, place.chain):
        return "channel not allowed by the server"
    denied = {role for role, access in rules.roles.items() if access == "deny"}
    if denied & place.role_ids:
        return "role denied by the server"
    allowed = {role for role, access in rules.roles.items() if access == "allow"}
    if allowed and not allowed & place.role_ids:
        return "no role the server allows"
    return None


def channel_allowed(rules: ServerRules, chain: tuple[int, ...]) -> bool:
    """The most specific allow/deny wins; with none, a server that allows some channels
    allows only those, and one that allows none allows all."""
    for channel_id in chain:
        rule = rules.channels.get(channel_id)
        if rule is not None and rule.access is not None:
            return rule.access == "allow"
    return not any(rule.access == "allow" for rule in rules.channels.values())


@dataclass(frozen=True, slots=True)
class ChannelView:
    """How Mnemo answers in one place, after inheritance."""

    answer_mode: AnswerMode = "mention"
    threads: bool = False
    persona: str | None = None  # None: the operator's SYSTEM_PROMPT
    chat_model: str | None = None  # None: CHAT_MODEL
    memory: bool = True
    channel_context: bool | None = None  # None: the operator's CHANNEL_CONTEXT
    audience: Audience | None = None  # the place's (Place.audience): which memory is used


def resolve(rules: ServerRules | None, chain: tuple[int, ...]) -> ChannelView:
    """Each setting from the most specific place that has one, else the server's."""
    if rules is None:
        return ChannelView()
    rules_here = [rules.channels[c] for c in chain if c in rules.channels]

    def first(name: str) -> object:
        for rule in rules_here:
            value = getattr(rule, name)
            if value is not None:
                return value
        return None

    mode = first("answer_mode")
    threads = first("threads")
    persona = first("persona")
    model = first("chat_model")
    context = first("channel_context")
    return ChannelView(
        answer_mode="always" if mode == "always" else "mention",
        threads=bool(threads) if threads is not None else rules.threads,
        persona=persona if isinstance(persona, str) else rules.persona,
        chat_model=model if isinstance(model, str) else rules.chat_model,
        memory=rules.memory,
        channel_context=bool(context) if context is not None else rules.channel_context,
    )
