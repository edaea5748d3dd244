"""Split a long answer into Discord messages.

Discord counts a message's length in UTF-16 code units and refuses more than 2000 (or an empty
message). An answer that fits is sent exactly as written. A longer one is cut at a paragraph,
else a line, else a word boundary; every part is a slice of the answer, and a code block cut by
a split is closed at the end of its part and reopened, with its language tag, in the next.

Code blocks are tracked the way Discord renders them: ``` marks pair up in order wherever they
stand (a fence opened mid-line, ```a one-line span```), not only at the start of a line.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

DISCORD_LIMIT = 2000
FENCE = "```"
_MAX_CLOSE = "\n" + FENCE  # the longest closing the splitter adds
# Discord reads a language tag only as a word right after the opening fence, then a newline.
_LANGUAGE = re.compile(r"([A-Za-z0-9_+\-.#]+)\n")


def utf16_len(text: str) -> int:
    """Length as Discord counts it (characters outside the BMP count twice)."""
    # surrogatepass: a lone surrogate (invalid, but possible in model output) counts as one.
    return len(text.encode("utf-16-le", "surrogatepass")) // 2


@dataclass(frozen=True, slots=True)
class Part:
    """One message: `body` is a slice of the answer; `opening` and `closing` are fences the
    splitter added so that the part renders its code blocks closed."""

    opening: str
    body: str
    closing: str

    @property
    def text(self) -> str:
        return self.opening + self.body + self.closing


def split_message(text: str, limit: int = DISCORD_LIMIT) -> list[str]:
    """Cut `text` into non-empty parts of at most `limit` UTF-16 units each."""
    return [part.text for part in split_parts(text, limit)]


def split_parts(text: str, limit: int = DISCORD_LIMIT) -> list[Part]:
    """The parts of `text`; joined, their bodies are `text` (less whitespace-only stretches
    longer than a message, which Discord would not show anyway)."""
    if not text.strip():
        return []
    if utf16_len(text) <= limit and fence_state(text) is None:
        return [Part("", text, "")]  # fits, balanced: exactly as the model wrote it
    parts: list[Part] = []
    remaining = text
    language: str | None = None  # the language of a code block left open by the last part
    while remaining:
        opening = "" if language is None else f"{FENCE}{language}\n"
        after = fence_state(remaining, language)
        if utf16_len(opening + remaining + _closing(remaining, after)) <= limit:
            chunk, remaining = remaining, ""
        else:
            budget = limit - utf16_len(opening) - utf16_len(_MAX_CLOSE)
            if budget < len(FENCE) + 1:
                raise ValueError(f"limit {limit} is too small to split with code fences")
            cut = _cut_index(remaining, budget)
            chunk, remaining = remaining[:cut], remaining[cut:]
            after = fence_state(chunk, language)
            if after is not None and remaining.startswith(FENCE):
                # The block closes right here: take the written fence, not an added one.
                chunk, remaining = chunk + FENCE, remaining[len(FENCE) :]
                after = None
        part = Part(opening, chunk, _closing(chunk, after))
        if part.text.strip():
            parts.append(part)
        language = after
    return parts


def append_outside_code(text: str, note: str) -> str:
    """`text` followed by `note` on its own paragraph, never inside a code block: a block the
    text leaves open (an answer cut off mid-code) is closed first."""
    state = fence_state(text)
    if state is not None:
        text += _closing(text, state)
    return f"{text}\n\n{note}" if text.strip() else note


def fence_state(text: str, language: str | None = None) -> str | None:
    """The language ("" when untagged) of the code block still open at the end of `text`, or
    None when none is; `language` is the state at its start."""
    index = text.find(FENCE)
    while index != -1:
        after = index + len(FENCE)
        if language is None:
            tag = _LANGUAGE.match(text, after)
            language = tag.group(1) if tag else ""
        else:
            language = None
        index = text.find(FENCE, after)
    return language


def _closing(chunk: str, state: str | None) -> str:
    if state is None:
        return ""
    return FENCE if chunk.endswith("\n") else "\n" + FENCE


def _cut_index(text: str, budget: int) -> int:
    """Where to cut `text` so the head has at most `budget` units, at the best boundary."""
    window = _prefix_within(text, budget)
    half = len(window) // 2
    for separator in ("\n\n", "\n", " "):
        index = window.rfind(separator)
        if index > half or (separator == " " and index > 0):
            return _outside_backtick_run(text, index + len(separator))
    # One unbroken run: a hard cut (never inside a surrogate pair, nor inside a ``` mark).
    return _outside_backtick_run(text, len(window))


def _outside_backtick_run(text: str, cut: int) -> int:
    """Move a cut that falls between two backticks back to the start of their run."""
    start = cut
    while 0 < start < len(text) and text[start - 1] == "`" and text[start] == "`":
        start -= 1
    return start if start > 0 else cut


def _prefix_within(text: str, budget: int) -> str:
    window = text[:budget]
    while utf16_len(window) > budget:
        window = window[: len(window) - (utf16_len(window) - budget + 1) // 2 - 1]
    return window
