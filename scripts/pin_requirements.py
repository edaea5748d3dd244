"""Write requirements.txt: every package Mnemo needs to run, pinned, resolved from pyproject.toml.

    python scripts/pin_requirements.py      (or `make requirements`)

pip's own resolver does the work (`pip install --dry-run --report`, pip >= 22.2), for the
interpreter that runs this script: run it with Python 3.11 on Linux, as the Dockerfile's image
is. Hosts that read a Procfile install from the file; the Dockerfile and `make` install with
it. tests/test_packaging.py checks that it still matches pyproject.toml.
"""

from __future__ import annotations

import json
import platform
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUTPUT = ROOT / "requirements.txt"
HEADER = """\
# Mnemo's runtime dependencies, pinned: for hosts that install from a requirements file
# (Procfile hosts), the Dockerfile and `make`. Generated from pyproject.toml by
# `make requirements` (scripts/pin_requirements.py) with {python} on {system}; do not edit.
"""


def resolve() -> dict[str, str]:
    report = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--dry-run",
            "--ignore-installed",
            "--quiet",
            "--report",
            "-",
            str(ROOT),
        ],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    pins = {}
    for item in json.loads(report)["install"]:
        name, version = item["metadata"]["name"], item["metadata"]["version"]
        if name.lower() != "mnemo":
            pins[name] = version
    return pins


def main() -> int:
    pins = resolve()
    header = HEADER.format(
        python=f"Python {platform.python_version_tuple()[0]}.{platform.python_version_tuple()[1]}",
        system=platform.system(),
    )
    lines = [f"{name}=={pins[name]}" for name in sorted(pins, key=str.lower)]
    OUTPUT.write_text(header + "\n".join(lines) + "\n")
    print(f"Wrote {OUTPUT.name}: {len(lines)} packages")
    return 0


if __name__ == "__main__":
    sys.exit(main())
