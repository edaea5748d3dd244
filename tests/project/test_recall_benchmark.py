"""Benchmark 9's generated conversations stay honest: the harder questions do not reuse the
words of the messages that answer them, every answer is where its question says, and the
original questions are laid out as before (so their figures stay comparable across runs)."""

from __future__ import annotations

import hashlib

import pytest

from bench.recall_conversations import (
    BASE_KINDS,
    HARD_BEFORE,
    HARD_KINDS,
    Conversation,
    generate,
    question_time,
)
from bot.memory.hybrid import Period, parse_time_phrase, utc
from storage.recall import query_terms

SEEDS = range(12)
ALLOWED_SHARED = {"sister"}  # "Where's my sister's wedding …": one word, and in much filler


@pytest.fixture(scope="module")
def conversations() -> list[Conversation]:
    return [generate(seed) for seed in SEEDS]


def text_of(conversation: Conversation, exchange: int, role: str) -> str:
    user, bot = conversation.exchanges[exchange]
    return user if role == "user" else bot


def terms(text: str) -> set[str]:
    return set(query_terms(text, limit=100))


def test_every_evidence_key_is_in_its_message(conversations: list[Conversation]) -> None:
    for conversation in conversations:
        for question in conversation.questions:
            for evidence in question.evidence:
                text = text_of(conversation, evidence.exchange, evidence.role)
                assert evidence.key in text, (question.text, text)
                assert evidence.exchange in conversation.planted


def test_the_harder_questions_share_no_word_with_the_answer(
    conversations: list[Conversation],
) -> None:
    counted = 0
    for conversation in conversations:
        for question in conversation.questions:
            if question.kind not in HARD_KINDS:
                continue
            counted += 1
            # The message holding the answer is the last evidence (the reply, the second hop).
            answer = question.evidence[-1]
            assert answer.exchange < HARD_BEFORE
            shared = terms(question.text) & terms(
                text_of(conversation, answer.exchange, answer.role)
            )
            assert shared <= ALLOWED_SHARED, (question.text, shared)
    assert counted == 13 * len(SEEDS)


def test_the_kinds_are_asked_in_their_numbers(conversations: list[Conversation]) -> None:
    kinds = [q.kind for c in conversations for q in c.questions]
    assert {kind: kinds.count(kind) for kind in (*BASE_KINDS, *HARD_KINDS, "no-answer")} == {
        "single-hop": 60,
        "multi-hop": 24,
        "temporal": 24,
        "paraphrase": 48,
        "multi-hop-far": 24,
        "period": 36,
        "before-event": 12,
        "exchange": 36,
        "no-answer": 24,
    }


def test_far_multi_hop_halves_are_two_weeks_apart(conversations: list[Conversation]) -> None:
    for conversation in conversations:
        for question in conversation.questions:
            if question.kind == "multi-hop-far":
                first, second = (conversation.times[e.exchange] for e in question.evidence)
                assert second - first >= 14 * 86400.0, question.text


def test_a_period_question_names_the_time_of_its_answer_as_people_do(
    conversations: list[Conversation],
) -> None:
    """Not all of them fall inside what the parser reads (people are vague about dates, and
    the benchmark should show it), but most do."""
    inside = total = 0
    for conversation in conversations:
        for number, question in enumerate(conversation.questions):
            if question.kind != "period":
                continue
            found = parse_time_phrase(question.text, utc(question_time(conversation, number)))
            assert isinstance(found, Period), question.text
            total += 1
            inside += found.contains(conversation.times[question.evidence[0].exchange])
    assert total == 36 and inside >= 30


def test_the_original_questions_are_laid_out_as_before(conversations: list[Conversation]) -> None:
    """A fingerprint of the original questions, their evidence and the times: the harder
    items are laid over filler with their own random generator, never moving these."""
    digest = hashlib.sha256()
    for conversation in conversations:
        for question in conversation.questions:
            if question.kind in (*BASE_KINDS, "no-answer"):
                digest.update(repr((question.kind, question.text, question.evidence)).encode())
                for evidence in question.evidence:
                    digest.update(text_of(conversation, evidence.exchange, evidence.role).encode())
        digest.update(repr(conversation.times).encode())
    assert digest.hexdigest()[:16] == ORIGINAL_FINGERPRINT


ORIGINAL_FINGERPRINT = "7eb8acab8caa6fec"  # as generated before the harder questions
