"""bot/policy/access.py: who may talk to Mnemo where, and how it answers there (pure policy)."""

from __future__ import annotations

import pytest

from bot.policy.access import (
    ChannelView,
    Membership,
    OperatorPolicy,
    Place,
    channel_allowed,
    decide,
    resolve,
)
from storage.guild_settings import ChannelRule, ServerRules

GUILD, OTHER_GUILD = 10, 20
CATEGORY, CHANNEL, SIBLING, THREAD = 100, 101, 102, 103
ROLE, OTHER_ROLE = 200, 201
ALICE, BOB = 1, 2

in_thread = Place(ALICE, GUILD, THREAD, CHANNEL, CATEGORY, frozenset({GUILD, ROLE}))
in_channel = Place(ALICE, GUILD, CHANNEL, None, CATEGORY, frozenset({GUILD, ROLE}))
in_sibling = Place(ALICE, GUILD, SIBLING, None, CATEGORY, frozenset({GUILD}))
in_dm = Place(ALICE, None, 999)
open_policy = OperatorPolicy()


def rules(*channel_rules: ChannelRule, **kwargs: object) -> ServerRules:
    return ServerRules(GUILD, channels={r.channel_id: r for r in channel_rules}, **kwargs)  # type: ignore[arg-type]


def test_place_chain_is_most_specific_first_without_duplicates() -> None:
    assert in_thread.chain == (THREAD, CHANNEL, CATEGORY)
    assert in_channel.chain == (CHANNEL, CATEGORY)
    assert Place(ALICE, GUILD, CHANNEL, None, None).chain == (CHANNEL,)
    assert in_dm.chain == (999,)


def test_nothing_set_allows_everything() -> None:
    for place in (in_thread, in_channel, in_sibling, in_dm):
        assert decide(open_policy, rules(), place).allowed
        assert decide(open_policy, None, place).allowed


def test_dms_off_and_operator_block_give_a_notice_in_dms() -> None:
    off = decide(OperatorPolicy(allow_dms=False), None, in_dm)
    assert not off.allowed and off.notice and "ALLOW_DMS" in off.reason
    blocked = decide(OperatorPolicy(blocked_user_ids=frozenset({ALICE})), None, in_dm)
    assert not blocked.allowed and blocked.notice
    assert decide(OperatorPolicy(allow_dms=False), rules(), in_channel).allowed


def test_operator_guild_list_ignores_other_servers_silently() -> None:
    policy = OperatorPolicy(guild_ids=frozenset({OTHER_GUILD}))
    decision = decide(policy, rules(notice=True), in_channel)
    assert not decision.allowed and not decision.notice  # never a notice, even if chosen
    assert decide(OperatorPolicy(guild_ids=frozenset({GUILD})), rules(), in_channel).allowed


def test_operator_channel_list_covers_threads_and_categories() -> None:
    by_channel = OperatorPolicy(channel_ids=frozenset({CHANNEL}))
    assert decide(by_channel, None, in_channel).allowed
    assert decide(by_channel, None, in_thread).allowed
    assert not decide(by_channel, None, in_sibling).allowed
    by_category = OperatorPolicy(channel_ids=frozenset({CATEGORY}))
    assert decide(by_category, None, in_sibling).allowed
    assert decide(by_channel, None, in_dm).allowed  # DMs are governed by ALLOW_DMS alone


def test_operator_roles_and_blocked_users() -> None:
    by_role = OperatorPolicy(role_ids=frozenset({ROLE}))
    assert decide(by_role, None, in_channel).allowed
    assert not decide(by_role, None, in_sibling).allowed
    blocked = OperatorPolicy(blocked_user_ids=frozenset({ALICE}))
    assert not decide(blocked, None, in_channel).allowed
    assert decide(blocked, None, Place(BOB, GUILD, CHANNEL)).allowed


def test_notice_in_servers_is_the_servers_choice() -> None:
    denied = ChannelRule(CHANNEL, access="deny")
    assert not decide(open_policy, rules(denied), in_channel).notice
    assert decide(open_policy, rules(denied, notice=True), in_channel).notice


@pytest.mark.parametrize(
    ("channel_rules", "place", "allowed"),
    [
        ((ChannelRule(CHANNEL, access="deny"),), in_channel, False),
        ((ChannelRule(CHANNEL, access="deny"),), in_thread, False),  # a channel covers threads
        ((ChannelRule(CHANNEL, access="deny"),), in_sibling, True),
        ((ChannelRule(CATEGORY, access="deny"),), in_sibling, False),  # a category its channels
        (
            (ChannelRule(CATEGORY, access="deny"), ChannelRule(CHANNEL, access="allow")),
            in_thread,
            True,
        ),
        ((ChannelRule(CHANNEL, access="allow"),), in_sibling, False),  # an allow list
        ((ChannelRule(CHANNEL, access="allow"),), in_thread, True),
        (
            (ChannelRule(CHANNEL, access="allow"), ChannelRule(THREAD, access="deny")),
            in_thread,
            False,
        ),
        ((ChannelRule(CATEGORY, access="allow"),), in_sibling, True),
        ((ChannelRule(CHANNEL, persona="p"),), in_sibling, True),  # no access rule at all
    ],
)
def test_channel_rules_most_specific_wins(
    channel_rules: tuple[ChannelRule, ...], place: Place, allowed: bool
) -> None:
    assert decide(open_policy, rules(*channel_rules), place).allowed is allowed
    assert channel_allowed(rules(*channel_rules), place.chain) is allowed


def test_denied_category_with_one_allowed_channel() -> None:
    server = rules(ChannelRule(CATEGORY, access="deny"), ChannelRule(CHANNEL, access="allow"))
    assert decide(open_policy, server, in_channel).allowed
    assert decide(open_policy, server, in_thread).allowed
    assert not decide(open_policy, server, in_sibling).allowed


def test_server_roles_and_blocked_members() -> None:
    deny = rules(roles={ROLE: "deny"})
    assert not decide(open_policy, deny, in_channel).allowed
    assert decide(open_policy, deny, in_sibling).allowed  # no ROLE there
    allow = rules(roles={ROLE: "allow"})
    assert decide(open_policy, allow, in_channel).allowed
    assert not decide(open_policy, allow, in_sibling).allowed
    both = rules(roles={ROLE: "allow", GUILD: "deny"})  # deny @everyone: nobody
    assert not decide(open_policy, both, in_channel).allowed
    blocked = rules(blocked=frozenset({ALICE}))
    assert not decide(open_policy, blocked, in_channel).allowed
    assert decide(open_policy, blocked, Place(BOB, GUILD, CHANNEL)).allowed


def test_resolve_inherits_thread_channel_category_server() -> None:
    server = rules(
        ChannelRule(CATEGORY, persona="category persona", chat_model="m-cat"),
        ChannelRule(CHANNEL, answer_mode="always", persona="channel persona"),
        ChannelRule(THREAD, threads=False),
        persona="server persona",
        threads=True,
        memory=False,
    )
    here = resolve(server, in_thread.chain)
    assert here == ChannelView("always", False, "channel persona", "m-cat", memory=False)
    sibling = resolve(server, in_sibling.chain)
    assert sibling == ChannelView("mention", True, "category persona", "m-cat", memory=False)
    elsewhere = resolve(server, (555,))
    assert elsewhere == ChannelView("mention", True, "server persona", None, memory=False)
    assert resolve(None, in_thread.chain) == ChannelView()
    assert resolve(rules(), in_thread.chain) == ChannelView()


def test_dms_under_allow_lists_need_a_membership_of_an_allowed_server() -> None:
    by_guild = OperatorPolicy(guild_ids=frozenset({GUILD}))
    member_here = Place(ALICE, None, 999, memberships=(Membership(GUILD),))
    member_elsewhere = Place(ALICE, None, 999, memberships=(Membership(OTHER_GUILD),))
    refused = decide(by_guild, None, in_dm)  # a member of no server at all
    assert not refused.allowed and refused.notice
    assert not decide(by_guild, None, member_elsewhere).allowed
    assert decide(by_guild, None, member_here).allowed
    by_role = OperatorPolicy(role_ids=frozenset({ROLE}))
    with_role = Place(ALICE, None, 999, memberships=(Membership(OTHER_GUILD, frozenset({ROLE})),))
    without = Place(ALICE, None, 999, memberships=(Membership(GUILD, frozenset({OTHER_ROLE})),))
    assert decide(by_role, None, with_role).allowed
    assert not decide(by_role, None, without).allowed
    both = OperatorPolicy(guild_ids=frozenset({GUILD}), role_ids=frozenset({ROLE}))
    assert not decide(both, None, with_role).allowed  # the role, in a server not allowed
    assert decide(open_policy, None, in_dm).allowed  # no list: DMs as ALLOW_DMS says


def test_dms_refused_to_a_member_blocked_by_an_allowed_server() -> None:
    by_guild = OperatorPolicy(guild_ids=frozenset({GUILD, OTHER_GUILD}))
    place = Place(ALICE, None, 999, memberships=(Membership(GUILD), Membership(OTHER_GUILD)))
    blocked_there = {
        GUILD: rules(),
        OTHER_GUILD: ServerRules(OTHER_GUILD, blocked=frozenset({ALICE})),
    }
    decision = decide(by_guild, None, place, blocked_there)
    assert not decision.allowed and decision.notice
    assert decide(by_guild, None, place, {GUILD: rules(), OTHER_GUILD: rules()}).allowed
