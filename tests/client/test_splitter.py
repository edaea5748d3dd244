from __future__ import annotations

import random
import re

import pytest

from bot.client.splitter import (
    DISCORD_LIMIT,
    append_outside_code,
    split_message,
    split_parts,
    utf16_len,
)


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
    assert parts[0] == "a" * 900 + "\n\n" + "a" * 900 + "\n\n"  # a slice; Discord trims ends


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


def test_answer_cut_inside_a_code_block_is_closed() -> None:
    assert split_message("Look:\n```js\nlet x = 1;") == ["Look:\n```js\nlet x = 1;\n```"]
    parts = split_message("```py\n" + "x = 1\n" * 500)
    assert_valid(parts)


# Written the way Discord's renderer pairs them: ``` marks pair up in order, wherever they stand.
SHORT_ANSWERS = [
    "Try this: ```python\nprint('hi')\n``` and tell me.",  # a fence opened mid-line
    "```ls -la``` lists the files, ```pwd``` prints the folder.",  # one-line code spans
    "Here it is:\n```js\nlet x = 1;\n```",  # a fence at the very end
    "  indented ```\ncode\n```  \n\n",  # whitespace around, kept as written
    "`inline` and ``double`` backticks, no fence",
]


@pytest.mark.parametrize("text", SHORT_ANSWERS)
def test_an_answer_that_fits_is_sent_exactly_as_written(text: str) -> None:
    assert split_message(text) == [text]


def test_fence_opened_mid_line_is_reopened_with_its_language() -> None:
    code = "\n".join(f"value_{i} = compute({i})" for i in range(150))
    text = f"Here you go: ```python\n{code}\n``` and that is it."
    parts = split_message(text)
    assert len(parts) >= 2
    assert_valid(parts)
    assert parts[1].startswith("```python\nvalue_")
    assert parts[-1].endswith("``` and that is it.")
    assert_bodies_are_the_input(text)


def test_one_line_spans_in_a_long_answer_add_no_fence() -> None:
    text = "\n".join(f"Run ```make target{i}``` then ```echo {i}```." for i in range(150))
    parts = split_message(text)
    assert len(parts) >= 2
    assert_valid(parts)
    assert "".join(parts) == text  # cut at line ends, nothing added


def test_fence_at_the_very_end_of_a_long_answer_is_not_doubled() -> None:
    text = ("prose " * 300).strip() + "\n\n```\n" + "x = 1\n" * 20 + "```"
    parts = split_message(text)
    assert_valid(parts)
    assert parts[-1].endswith("x = 1\n```") and not parts[-1].endswith("```\n```")
    assert_bodies_are_the_input(text)


def test_a_cut_right_before_a_closing_fence_uses_the_written_fence() -> None:
    code = "```\n" + ("y" * 99 + "\n") * 19 + "z" * 89 + "\n"  # 1994 units
    text = code + "```\n" + "after " * 100  # the closing fence falls across the first cut
    parts = split_message(text)
    assert parts == [code + "```", "\n" + "after " * 100]


def test_length_note_is_placed_outside_an_open_code_block() -> None:
    note = "-# (the answer reached the reply length limit)"
    cut_off = "Sure:\n```python\nfor i in range(10):\n    print(i"
    shown = append_outside_code(cut_off, note)
    assert shown == cut_off + "\n```\n\n" + note
    [part] = split_message(shown)
    assert part.endswith("```\n\n" + note)  # the note renders as text, after the block
    assert append_outside_code("All done.", note) == "All done.\n\n" + note
    assert append_outside_code("a ```b``` c", note) == "a ```b``` c\n\n" + note
    long_code = "```\n" + "z = 1\n" * 600
    parts = split_message(append_outside_code(long_code, note))
    assert_valid(parts)
    assert parts[-1].endswith("```\n\n" + note)


def random_markdown(rng: random.Random) -> str:
    """Markdown as models write it, with the shapes that break naive splitters."""
    words = ["word", "ça", "naïve", "漢字", "かな", "😀", "👩‍💻", "`x`", "``y``", "a_b", "—"]

    def prose(n: int) -> str:
        return " ".join(rng.choice(words) * rng.randint(1, 4) for _ in range(n))

    def code_lines() -> str:
        return "\n".join(
            rng.choice(["x" * rng.randint(0, 150), prose(rng.randint(0, 12)), "  `tick`"])
            for _ in range(rng.randint(1, 50))
        )

    chunks = []
    for _ in range(rng.randint(1, 30)):
        kind = rng.random()
        lang = rng.choice(["", "py", "js", "c++", "objective-c", "c#"])
        if kind < 0.2:
            chunks.append(f"```{lang}\n{code_lines()}\n```")
        elif kind < 0.3:
            chunks.append(f"{prose(rng.randint(1, 8))} ```{lang}\n{code_lines()}```")
        elif kind < 0.4:
            chunks.append(f"Use ```{prose(rng.randint(1, 5))}``` here, ```and``` there.")
        elif kind < 0.5:
            chunks.append(rng.choice("xé漢😀") * rng.randint(100, 3000))  # no boundary at all
        else:
            chunks.append(prose(rng.randint(1, 400)))
    text = rng.choice(["\n\n", "\n", " "]).join(chunks)
    if rng.random() < 0.15:
        text += f"\n```{rng.choice(['', 'py'])}\n{code_lines()}"  # cut off inside a block
    return text


def assert_bodies_are_the_input(text: str) -> None:
    parts = split_parts(text)
    assert "".join(p.body for p in parts) == text


@pytest.mark.parametrize("batch", range(10))
def test_property_random_markdown(batch: int) -> None:
    for seed in range(batch * 40, batch * 40 + 40):
        rng = random.Random(seed)
        text = random_markdown(rng)
        parts = split_parts(text)
        rendered = split_message(text)
        assert rendered == [p.text for p in parts], seed
        assert parts, seed
        for index, part in enumerate(parts):
            assert utf16_len(part.text) <= DISCORD_LIMIT, seed
            assert part.text.strip(), seed
            assert part.text.count("```") % 2 == 0, (seed, index)  # its code blocks closed
            assert re.fullmatch(r"(```[A-Za-z0-9_+\-.#]*\n)?", part.opening), seed
            assert part.closing in ("", "```", "\n```"), seed
            # A block is reopened only where the splitter closed it.
            previous_closing = parts[index - 1].closing if index else ""
            assert bool(part.opening) == bool(previous_closing), (seed, index)
        assert "".join(p.body for p in parts) == text, seed  # nothing lost, nothing doubled
        if utf16_len(text) <= DISCORD_LIMIT and text.count("```") % 2 == 0:
            assert rendered == [text], seed
