"""The documentation holds together: the README stays a front page, and every relative link in
it and in docs/ points at a file that exists (and, with an #anchor, at a heading there).

That docs/configuration.md documents every setting is checked in tests/test_config.py."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.helpers import ROOT

PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
README_MAX_LINES = 200

LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
FENCE = re.compile(r"^```.*?^```", re.MULTILINE | re.DOTALL)
HEADING = re.compile(r"^#{1,6} +(.+?) *#*$", re.MULTILINE)


def prose(text: str) -> str:
    """The text outside fenced code blocks (a link there is code, not a link)."""
    return FENCE.sub("", text)


def anchors(page: Path) -> set[str]:
    """The anchors GitHub gives the page's headings: lower case, punctuation dropped, spaces
    as hyphens, and -1, -2… for a repeated one."""
    found: set[str] = set()
    for heading in HEADING.findall(prose(page.read_text())):
        slug = re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")
        anchor, n = slug, 0
        while anchor in found:
            n += 1
            anchor = f"{slug}-{n}"
        found.add(anchor)
    return found


def relative_links(page: Path) -> list[str]:
    return [
        target
        for target in LINK.findall(prose(page.read_text()))
        if not re.match(r"[a-z][a-z0-9+.-]*:", target)  # https:, mailto: …
    ]


def test_readme_is_a_front_page() -> None:
    lines = (ROOT / "README.md").read_text().count("\n")
    assert lines <= README_MAX_LINES, f"README.md has {lines} lines: move detail into docs/"


def test_the_pages_this_test_reads_exist() -> None:
    names = {page.name for page in PAGES}
    for name in (
        "configuration.md",
        "model-servers.md",
        "admins.md",
        "privacy.md",
        "operation.md",
        "design.md",
        "development.md",
        "benchmarks.md",
    ):
        assert name in names, name


@pytest.mark.parametrize("page", PAGES, ids=lambda page: page.relative_to(ROOT).as_posix())
def test_relative_links_resolve(page: Path) -> None:
    broken = []
    for target in relative_links(page):
        path, _, anchor = target.partition("#")
        linked = (page.parent / path).resolve() if path else page
        if not linked.exists():
            broken.append(f"{target}: no such file")
        elif anchor and linked.suffix == ".md" and anchor not in anchors(linked):
            broken.append(f"{target}: no such heading in {linked.relative_to(ROOT)}")
    assert broken == []


def test_the_link_check_sees_links_and_anchors() -> None:
    assert relative_links(ROOT / "README.md"), "no relative link found: is LINK right?"
    assert "exit-status" in anchors(ROOT / "docs" / "operation.md")
    assert "erasure-on-postgresql" in anchors(ROOT / "docs" / "privacy.md")
