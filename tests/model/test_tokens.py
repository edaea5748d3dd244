"""Token counting: the remembered counts are the counts, and hold no text."""

from __future__ import annotations

import gc
import random

from bot.model.tokens import OFFLINE_ENCODING, Tokenizer, load_encoding


def texts(seed: int, n: int) -> list[str]:
    rng = random.Random(seed)
    words = ["alpha", "beta", "δέλτα", "😀", "<|endoftext|>", "\n", "  ", "long_identifier"]
    return [" ".join(rng.choice(words) for _ in range(rng.randint(0, 60))) for _ in range(n)]


def test_remembered_counts_are_the_counts() -> None:
    encoding = load_encoding("gpt-4o", OFFLINE_ENCODING)
    cached, uncached = Tokenizer(encoding, counts_kept=50), Tokenizer(encoding, counts_kept=0)
    sample = texts(1, 200)
    for text in sample * 3 + list(reversed(sample)):  # hits, misses and evictions
        assert cached.count(text) == uncached.count(text) == len(encoding.encode_ordinary(text))


def test_remembered_counts_are_bounded_and_keep_no_text() -> None:
    tokenizer = Tokenizer(load_encoding("gpt-4o", OFFLINE_ENCODING), counts_kept=10)
    secret = "my bank PIN is 4921, " * 20
    tokenizer.count(secret)
    for text in texts(2, 30):
        tokenizer.count(text)
    counts = tokenizer._counts._counts
    assert len(counts) == 10
    held = [obj for obj in gc.get_referents(counts) if isinstance(obj, str)]
    assert not held and all(isinstance(part, int) for key in counts for part in key)
