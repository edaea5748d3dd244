"""Background requests cut by tokens, so each fits the model's window as a reply does.

A reply may use `MAX_PROMPT_TOKENS` of prompt and `MAX_REPLY_TOKENS` of answer: that sum is the
window the operator sized for their model. A background request (a summary fold, a fact
extraction) is held to the same window: its instructions, its batch of messages and the answer it
reserves. Counts are the reply path's: each message's text plus the chat format's overhead.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

from bot.config import Settings
from bot.model.tokens import MESSAGE_OVERHEAD_TOKENS, REPLY_PRIMING_TOKENS, Tokenizer

T = TypeVar("T")


def request_window(settings: Settings) -> int:
    """Prompt and answer together, as a reply may use them."""
    return settings.max_prompt_tokens + settings.max_reply_tokens


def request_tokens(tokenizer: Tokenizer, messages: Sequence[dict[str, str]]) -> int:
    """The prompt tokens of a chat request, counted as the reply path counts them."""
    return (
        sum(tokenizer.count(m["content"]) + MESSAGE_OVERHEAD_TOKENS for m in messages)
        + REPLY_PRIMING_TOKENS
    )


@dataclass(frozen=True, slots=True)
class Batch(Generic[T]):
    items: list[T]
    """The items taken, oldest first (at least one when any was offered)."""
    lines: list[str]
    """Their lines as sent; the last may be cut to fit."""


def take_lines(
    items: Sequence[T],
    render: Callable[[T, int], str],
    prompt_tokens: Callable[[list[str]], int],
    room: int,
    *,
    cap: int,
    tokenizer: Tokenizer,
) -> Batch[T]:
    """The longest prefix of `items` whose lines (rendered with at most `cap` tokens of text
    each) keep `prompt_tokens(lines)` within `room`. An item too big even alone is cut to fit
    rather than skipped, so a batch is never empty and the caller's watermark always moves past
    what it read."""
    taken: list[T] = []
    lines: list[str] = []
    used = prompt_tokens([])
    for item in items:
        line = render(item, cap)
        cost = tokenizer.count(line) + 1  # its newline; each line counted once, not the prompt
        if used + cost > room:
            break
        taken.append(item)
        lines.append(line)
        used += cost
    # The sum is an estimate (tokens can merge across lines): the whole prompt decides.
    while len(lines) > 1 and prompt_tokens(lines) > room:
        taken.pop()
        lines.pop()
    if items and (not lines or prompt_tokens(lines) > room):
        taken, lines = [items[0]], [_cut_to_fit(items[0], render, prompt_tokens, room, cap)]
    return Batch(taken, lines)


def _cut_to_fit(
    item: T,
    render: Callable[[T, int], str],
    prompt_tokens: Callable[[list[str]], int],
    room: int,
    cap: int,
) -> str:
    """The item rendered with the largest text cap that fits (by bisection: counts are exact)."""
    low, high = 0, cap
    while low < high:
        middle = (low + high + 1) // 2
        if prompt_tokens([render(item, middle)]) <= room:
            low = middle
        else:
            high = middle - 1
    return render(item, low)
