"""Split a long answer into Discord messages.

Discord counts a message's length in UTF-16 code units and refuses more than 2000 (or an empty
message). Parts are cut at a paragraph, else a line, else a word boundary; a code block cut by a
split is closed at the end of its part and reopened, with its language tag, in the next.
"""

from __future__ import annotations

DISCORD_LIMIT = 2000
FENCE = "```"
_CLOSE = "\n" + FENCE


def utf16_len(text: str) -> int:
    """Length as Discord counts it (characters outside the BMP count twice)."""
    # surrogatepass: a lone surrogate (invalid, but possible in model output) counts as one.
    return len(text.encode("utf-16-le", "surrogatepass")) // 2


def split_message(text: str, limit: int = DISCORD_LIMIT) -> list[str]:
    """Cut `text` into non-empty parts of at most `limit` UTF-16 units each."""
    parts: list[str] = []
    remaining = text.strip("\n")
    open_lang: str | None = None  # the language of a code block left open by the last part
    while remaining.strip():
        reopen = "" if open_lang is None else f"{FENCE}{open_lang}\n"
        last = reopen + remaining.rstrip()
        if _fence_state_after(remaining, open_lang) is not None:
            last += _CLOSE  # an answer cut off inside a code block still renders as one
        if utf16_len(last) <= limit:
            parts.append(last)
            break
        budget = limit - utf16_len(reopen) - utf16_len(_CLOSE)
        if budget < 1:
            raise ValueError(f"limit {limit} is too small to split with code fences")
        cut = _cut_index(remaining, budget)
        chunk, remaining = remaining[:cut], remaining[cut:].lstrip("\n")
        open_lang = _fence_state_after(chunk, open_lang)
        body = (reopen + chunk).rstrip()
        if body.strip() and body != reopen.rstrip():
            parts.append(body + _CLOSE if open_lang is not None else body)
    return parts


def _cut_index(text: str, budget: int) -> int:
    """Where to cut `text` so the head has at most `budget` units, at the best boundary."""
    window = _prefix_within(text, budget)
    half = len(window) // 2
    for separator in ("\n\n", "\n", " "):
        index = window.rfind(separator)
        if index > half or (separator == " " and index > 0):
            return index + len(separator)
    return len(window)  # one unbroken run: a hard cut (never inside a surrogate pair)


def _prefix_within(text: str, budget: int) -> str:
    window = text[:budget]
    while utf16_len(window) > budget:
        window = window[: len(window) - (utf16_len(window) - budget + 1) // 2 - 1]
    return window


def _fence_state_after(chunk: str, open_lang: str | None) -> str | None:
    """Track ``` lines: returns the language of the block still open at the end, or None."""
    for line in chunk.split("\n"):
        stripped = line.strip()
        if not stripped.startswith(FENCE):
            continue
        open_lang = stripped[len(FENCE) :].strip() if open_lang is None else None
    return open_lang
