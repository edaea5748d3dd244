"""Every request the bot sends fits the window a reply may use: MAX_PROMPT_TOKENS of prompt plus
MAX_REPLY_TOKENS of answer. Measured on the requests the loopback LLM received, counted with the
bot's tokenizer the way the reply path counts."""

from __future__ import annotations

from typing import Any

import pytest

from bot.memory.batching import request_tokens
from bot.model.tokens import Tokenizer
from storage.models import SessionKey
from tests.fakes.llm_server import FakeLLM, message_text
from tests.helpers.engines import Engines, chat
from tests.helpers.llm import fact_calls, labelled_ids, summary_calls

pytestmark = pytest.mark.both_backends

ALICE = SessionKey(guild_id=100, channel_id=10, user_id=1)


def code_file(number: int, tokens: int, tokenizer: Tokenizer) -> str:
    """A pasted source file of about `tokens` tokens, on one line per function."""
    lines: list[str] = []
    while tokenizer.count(" ".join(lines)) < tokens:
        index = len(lines)
        lines.append(f"def handler_{number}_{index}(request): return render(request, {index})")
    return "file " + str(number) + ": " + " ".join(lines)


def sizes(fake: FakeLLM, tokenizer: Tokenizer) -> list[int]:
    """Prompt plus reserved answer, for each chat request received."""
    found = []
    for body in fake.chat_calls:
        messages = [{"content": message_text(m)} for m in body["messages"]]
        reserve = body.get("max_completion_tokens") or body.get("max_tokens") or 0
        found.append(request_tokens(tokenizer, messages) + reserve)
    return found


def read_ids(calls: list[dict[str, Any]]) -> set[int]:
    return {mid for call in calls for mid in labelled_ids(call).values()}


async def test_extraction_of_pasted_code_files_fits_the_window(
    engines: Engines, fake_llm: FakeLLM, tokenizer: Tokenizer
) -> None:
    # A small local model: 2500 of prompt, 200 of answer. Ten pasted files of 1400 tokens each
    # were one 15k-token extraction request before.
    engine = await engines.start(
        max_prompt_tokens=2500, max_reply_tokens=200, facts_batch_messages=10
    )
    await chat(engine, ALICE, *[code_file(n, 1400, tokenizer) for n in range(10)])
    await engine.jobs.idle()
    window = 2500 + 200
    assert max(sizes(fake_llm, tokenizer)) <= window
    extractions = fact_calls(fake_llm)
    assert len(extractions) > 1  # cut into several batches
    session = await engine.storage.sessions.find(10, 1)
    assert session is not None
    stored = await engine.storage.messages.oldest(session.id, after_id=0, limit=100, role="user")
    assert read_ids(extractions) == {m.id for m in stored}  # every message read, once
    assert session.facts_through == stored[-1].id


async def test_a_message_bigger_than_the_budget_is_cut_and_passed(
    engines: Engines, fake_llm: FakeLLM, tokenizer: Tokenizer
) -> None:
    settings = {
        "max_prompt_tokens": 2900,
        "max_reply_tokens": 16,
        "max_message_tokens": 2000,
        "summary_trigger_tokens": 1000,
        "summary_keep_recent_tokens": 0,
        "facts_batch_messages": 2,
    }
    engine = await engines.start(**settings)
    huge = code_file(1, 2000, tokenizer)
    await chat(engine, ALICE, huge, "I live in Grenoble", "and I work at Initech", "my cat is Tom")
    await engine.jobs.idle()
    assert max(sizes(fake_llm, tokenizer)) <= 2900 + 16
    extractions = fact_calls(fake_llm)
    first = [text for text in labelled_ids(extractions[0])]
    assert huge.startswith(first[0]) and len(first[0]) < len(huge)  # read, cut to fit
    assert any("I live in Grenoble" in labelled_ids(call) for call in extractions)
    session = await engine.storage.sessions.find(10, 1)
    assert session is not None
    stored = await engine.storage.messages.oldest(session.id, after_id=0, limit=100, role="user")
    assert session.facts_through > stored[0].id  # the watermark went past the huge message
    summaries = summary_calls(fake_llm)
    assert summaries, "the conversation is past the summary trigger"
    assert session.summarized_through >= stored[0].id  # the huge message was folded, cut
