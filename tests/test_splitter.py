from __future__ import annotations

import random
import re

import pytest

from bot.splitter import DISCORD_LIMIT, split_message, utf16_len


def squash(text: str) -> str:
    return re.sub(r"\s+", "", text)


def without_fence_lines(text: str) -> str:
    return "\n".join(line for line in text.split("\n") if not line.strip().startswith("```"))


def assert_text_kept(parts: list[str], original: str) -> None:
    """Apart from fence lines (the splitter adds some) and whitespace at cuts, nothing changed."""
    joined = "\n".join(parts)
    assert squash(without_fence_lines(joined)) == squash(without_fence_lines(original))


def assert_valid(parts: list[str], limit: int = DISCORD_LIMIT) -> None:
    assert parts, "no parts"
    for part in parts:
        assert part.strip(), "empty part"
        assert utf16_len(part) <= limit
        assert part.count("```") % 2 == 0, f"unbalanced fences in {part[:60]!r}"


def test_short_text_is_one_part() -> None:
    assert split_message("hello") == ["hello"]


def test_empty_text_gives_no_parts() -> None:
    assert split_message("") == []
    assert split_message("\n\n  \n") == []


def test_prefers_paragraph_boundaries() -> None:
    text = ("a" * 900 + "\n\n") * 3
    parts = split_message(text)
    assert_valid(parts)
    assert parts[0] == "a" * 900 + "\n\n" + "a" * 900


def test_word_boundaries_when_no_newline() -> None:
    text = " ".join(f"word{i}" for i in range(1000))
    parts = split_message(text)
    assert_valid(parts)
    for part in parts:
        assert re.fullmatch(r"(word\d+ ?)+", part), part[:50]
    assert_text_kept(parts, text)


def test_code_block_is_closed_and_reopened_with_language() -> None:
    code = "\n".join(f"    value_{i} = compute({i})" for i in range(200))
    text = f"Here is the code:\n\n```python\n{code}\n```\n\nThat's all."
    parts = split_message(text)
    assert len(parts) >= 3
    assert_valid(parts)
    for part in parts[1:-1]:
        assert part.startswith("```python\n")
    assert parts[0].endswith("\n```")
    assert_text_kept(parts, text)


def test_utf16_units_are_counted() -> None:
    text = "😀" * 1500  # 3000 UTF-16 units, 1500 characters
    parts = split_message(text)
    assert_valid(parts)
    assert len(parts) == 2
    assert "".join(parts) == text


def test_unbroken_run_is_hard_cut() -> None:
    text = "x" * 4500
    parts = split_message(text)
    assert_valid(parts)
    assert "".join(parts) == text


@pytest.mark.parametrize("seed", range(20))
def test_random_markdown_keeps_text_and_limits(seed: int) -> None:
    rng = random.Random(seed)
    chunks = []
    for _ in range(rng.randint(5, 40)):
        kind = rng.random()
        if kind < 0.3:
            lang = rng.choice(["", "py", "js", "c++"])
            lines = "\n".join("x" * rng.randint(0, 120) for _ in range(rng.randint(1, 60)))
            chunks.append(f"```{lang}\n{lines}\n```")
        elif kind < 0.5:
            chunks.append("é😀漢 " * rng.randint(1, 300))
        else:
            chunks.append(" ".join("w" * rng.randint(1, 12) for _ in range(rng.randint(1, 200))))
    text = "\n\n".join(chunks)
    parts = split_message(text)
    assert_valid(parts)
    assert_text_kept(parts, text)


def test_answer_cut_inside_a_code_block_is_closed() -> None:
    assert split_message("Look:\n```js\nlet x = 1;") == ["Look:\n```js\nlet x = 1;\n```"]
    parts = split_message("```py\n" + "x = 1\n" * 500)
    assert_valid(parts)
