"""What the tests share that is not a fixture: plain functions and classes, imported by name.

Fixtures live in tests/conftest.py, where pytest finds them; the classes a fixture hands out
(`Engines`, `Bots`) live here so that a test can name their type. A test module imports from
here and from tests/fakes/, never from another test module or from a conftest.

- `engines`: `SettingsFactory`, `Engines` (the `engines` fixture), `said()` and `chat()` (a
  user's turn through an engine), the `SMALL` summary settings.
- `llm`: reading what the loopback LLM was asked (`is_summary_call`, `summary_calls`,
  `fact_calls`, `labelled_ids`) and `facts_responder`, a fact extraction to answer with.
- `storage`: `next_discord_id()`, writing straight into a `Storage` (`store`, `summarize_all`,
  `bury_in_index`) and looking for a word in the database files (`file_contains`, `index_word`).
- `e2e`: the bot over the loopback Discord: `Bots` (the `bots` fixture), `check_invariants`
  (what every end-to-end test must leave true), `settled`, `ask`, `talk`, `press`,
  `final_content`, `stored`, `eventually`, `take_tracebacks`, `Gate`, `no_reply_in_flight`.
- `processes`: the bot as subprocesses: `BotLauncher`, `BotProcess`, `StderrBot`.
- `postgres`: `PostgresForTests`, the run's PostgreSQL database from TEST_DATABASE_URL.
"""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
"""The checkout: where `python -m tests.fakes.run_bot` runs from, with pyproject.toml in it."""
