"""A reasoning model's thinking is neither shown nor remembered.

Local reasoning models (DeepSeek R1 distills, Qwen3…) open their answer with `<think>…</think>`;
some chat templates put the opening tag in the prompt, so the answer holds only `…</think>`. In a
stream the tags can arrive split over chunks, and a cut answer can leave `<think>` unclosed.
`visible_answer` is computed from the whole raw text so far, so splitting never matters.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

OPEN_TAG = "<think>"
CLOSE_TAG = "</think>"
_BLOCK = re.compile(r"<think>.*?</think>", re.DOTALL | re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class Visible:
    text: str
    thinking: bool  # the raw text ends inside a thought (an unclosed <think>)


def visible_answer(raw: str, *, final: bool = True) -> Visible:
    """The part of `raw` meant for the user, and whether the model is still thinking.

    While a stream is still running (`final=False`), a trailing "<thi" is held back.
    """
    lowered = raw.lower()
    close = lowered.rfind(CLOSE_TAG)
    if close != -1 and OPEN_TAG not in lowered[:close]:
        # An orphan closing tag: everything before it was thinking (the template opened it).
        raw = raw[close + len(CLOSE_TAG) :]
    text = _BLOCK.sub("", raw)
    lowered = text.lower()
    thinking = False
    opened = lowered.find(OPEN_TAG)
    if opened != -1:
        text, thinking = text[:opened], True
    elif not final:
        text = _hold_back_partial_tag(text)
    if not text.strip():
        return Visible("", thinking)
    return Visible(text.lstrip("\r\n"), thinking)


def _hold_back_partial_tag(text: str) -> str:
    """Do not show "<thi" yet: it may be the start of a tag that the next chunk completes."""
    for length in range(min(len(OPEN_TAG) - 1, len(text)), 0, -1):
        if text[-length:].lower() == OPEN_TAG[:length]:
            return text[:-length]
    return text
