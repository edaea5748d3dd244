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
from bot.tokens import MESSAGE_OVERHEAD_TOKENS, REPLY_PRIMING_TOKENS, Tokenizer

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
    fits: Callable[[list[str]], bool],
    *,
    cap: int,
) -> Batch[T]:
    """The longest prefix of `items` whose lines (rendered with at most `cap` tokens of text
    each) `fits`. An item too big even alone is cut to fit rather than skipped, so a batch is
    never empty and the caller's watermark always moves past what it read."""
    taken: list[T] = []
    lines: list[str] = []
    for item in items:
        line = render(item, cap)
        if fits([*lines, line]):
            taken.append(item)
            lines.append(line)
            continue
        if not taken:
            taken.append(item)
            lines.append(_cut_to_fit(item, render, fits, cap))
        break
    return Batch(taken, lines)


def _cut_to_fit(
    item: T,
    render: Callable[[T, int], str],
    fits: Callable[[list[str]], bool],
    cap: int,
) -> str:
    """The item rendered with the largest text cap that fits (by bisection: counts are exact)."""
    low, high = 0, cap
    while low < high:
        middle = (low + high + 1) // 2
        if fits([render(item, middle)]):
            low = middle
        else:
            high = middle - 1
    return render(item, low)
