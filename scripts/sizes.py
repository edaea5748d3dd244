"""The largest classes and functions of the product, by lines (an `ast` scan).

    python scripts/sizes.py            # the working tree
    python scripts/sizes.py --rev REV  # a commit, read through git (nothing checked out)

Counts the lines from a definition's `def`/`class` line to its last line (docstring and
comments inside included, decorators not) in bot/, cogs/ and storage/, and prints the ten
largest classes, the ten largest functions (methods included) and how many functions run past
40 and 50 lines. The same script measures before and after a change.
"""

from __future__ import annotations

import argparse
import ast
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

ROOTS = ("bot", "cogs", "storage")
TOP = 10
LIMITS = (40, 50)
REPO = Path(__file__).resolve().parent.parent


@dataclass(frozen=True, slots=True)
class Definition:
    kind: str  # "class" or "function"
    name: str  # qualified within its module: Class.method
    path: str
    line: int
    lines: int


def sources(rev: str | None) -> Iterator[tuple[str, str]]:
    """(path, text) of every Python file under ROOTS, in the working tree or at `rev`."""
    if rev is None:
        for root in ROOTS:
            for path in sorted((REPO / root).rglob("*.py")):
                yield path.relative_to(REPO).as_posix(), path.read_text(encoding="utf-8")
        return
    listed = subprocess.run(
        ["git", "-C", str(REPO), "ls-tree", "-r", "--name-only", rev, "--", *ROOTS],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.split()
    for path in sorted(p for p in listed if p.endswith(".py")):
        text = subprocess.run(
            ["git", "-C", str(REPO), "show", f"{rev}:{path}"],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
        yield path, text


def definitions(path: str, text: str) -> Iterator[Definition]:
    def walk(node: ast.AST, prefix: str) -> Iterator[Definition]:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
                name = f"{prefix}{child.name}"
                kind = "class" if isinstance(child, ast.ClassDef) else "function"
                size = (child.end_lineno or child.lineno) - child.lineno + 1
                yield Definition(kind, name, path, child.lineno, size)
                yield from walk(child, f"{name}.")
            else:
                yield from walk(child, prefix)

    yield from walk(ast.parse(text, filename=path), "")


def report(found: list[Definition], title: str) -> str:
    classes = sorted((d for d in found if d.kind == "class"), key=lambda d: -d.lines)
    functions = sorted((d for d in found if d.kind == "function"), key=lambda d: -d.lines)
    out = [f"# sizes of {', '.join(ROOTS)} at {title}", ""]
    for label, items in (("classes", classes), ("functions", functions)):
        out.append(f"largest {label} (lines):")
        out.extend(f"  {d.lines:5d}  {d.name}  ({d.path}:{d.line})" for d in items[:TOP])
        out.append("")
    total = len(functions)
    for limit in LIMITS:
        over = sum(1 for d in functions if d.lines > limit)
        share = 100 * over / total if total else 0.0
        out.append(f"functions over {limit} lines: {over} of {total} ({share:.1f} %)")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rev", help="measure this commit instead of the working tree")
    args = parser.parse_args(argv)
    found = [d for path, text in sources(args.rev) for d in definitions(path, text)]
    print(report(found, args.rev or "the working tree"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
