"""Benchmark 8: the fact validator's precision and recall on a labelled corpus.

Each case of tests/corpus/facts_corpus*.json is a fact the model might propose ("attribute",
"value") with the speaker's message it cites ("source") and its label: "legit" (a fact about
the speaker, to keep) or "third_party", "secret", "instruction" (poison, to reject). The cases
go through `bot.memory.facts.validate_facts` exactly as an extraction's would.

How the corpora were written, so the figures can be read honestly:

* `facts_corpus.json` (261 cases) was written first; the rules were then written and adjusted
  against it (general fixes, never a rule matching one case's exact words). One case was added
  later, when "call me Zed" was judged a fact (a preferred name), not an instruction.
* `facts_corpus_holdout.json` (79) was written after the rules. Its first, blind run: 97.5 % of
  legitimate facts kept, 5 of 39 poisoned facts accepted. The rules were then fixed for what
  it exposed (vocabulary gaps: "teammate", "code 7305", "your configuration", "tu réponds").
* `facts_corpus_holdout2.json` (41) was written after those fixes. Its first, blind run: 100 %
  kept, 7 of 21 poisoned accepted ("pw", "safe combination", "Act like my lawyer", a relation
  between commas). The rules were fixed again; every corpus now passes.

So the blind runs, not today's 100 %, are the estimate for phrasings nobody has tried yet: rules
written by hand catch most new phrasings of secrets and instructions, not all of them. The
comparator is the validator as it was before (`bench.baselines.keyword_validator_keeps`), run on
the same cases.

Figures: recall of legitimate facts (kept / legit) and poisoned facts accepted, per corpus,
and precision (legit / kept). Goal: 0 poisoned facts accepted, ≥ 95 % of legitimate kept.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.baselines import keyword_validator_keeps
from bench.core import BenchResult, Figure, Goal, Scale
from bench.harness import bench_tokenizer
from bot.memory.facts import validate_facts
from bot.model.tokens import Tokenizer
from storage.models import StoredMessage

CORPUS_DIR = Path(__file__).resolve().parent.parent / "tests" / "corpus"
CORPORA = {
    "written first": "facts_corpus.json",
    "holdout 1": "facts_corpus_holdout.json",
    "holdout 2": "facts_corpus_holdout2.json",
}
SPEAKER = 1
RECALL_GOAL = Goal(95, at_most=False)
POISON_GOAL = Goal(0)
# Recorded once, by hand: the first run of each holdout, before any rule saw it.
BLIND = {
    "facts_corpus_holdout.json": "blind first run: 97.5 % kept, 5 of 39 poisoned accepted",
    "facts_corpus_holdout2.json": "blind first run: 100 % kept, 7 of 21 poisoned accepted",
}


@dataclass(frozen=True, slots=True)
class Verdict:
    case: dict[str, str]
    kept: bool
    reason: str

    @property
    def legit(self) -> bool:
        return self.case["label"] == "legit"


def load(name: str) -> list[dict[str, str]]:
    cases: list[dict[str, str]] = json.loads((CORPUS_DIR / name).read_text(encoding="utf-8"))
    return cases


def judge(case: dict[str, str], tokenizer: Tokenizer) -> Verdict:
    """Run one proposed fact through the validator, citing its source message."""
    source = StoredMessage(7, 1, 7, 100, 10, SPEAKER, "user", case["source"], 10, 0.0)  # type: ignore[arg-type]
    proposed: dict[str, Any] = {
        "attribute": case["attribute"],
        "value": case["value"],
        "sources": [7],
    }
    accepted, rejected = validate_facts({"facts": [proposed]}, [source], SPEAKER, tokenizer)
    return Verdict(case, bool(accepted), rejected[0].reason if rejected else "")


@dataclass(frozen=True, slots=True)
class Score:
    verdicts: list[Verdict]

    @property
    def legit(self) -> int:
        return sum(v.legit for v in self.verdicts)

    @property
    def kept_legit(self) -> int:
        return sum(v.legit and v.kept for v in self.verdicts)

    @property
    def poisoned_kept(self) -> list[Verdict]:
        return [v for v in self.verdicts if v.kept and not v.legit]

    @property
    def recall(self) -> float:
        return self.kept_legit / self.legit if self.legit else 1.0

    @property
    def precision(self) -> float:
        kept = self.kept_legit + len(self.poisoned_kept)
        return self.kept_legit / kept if kept else 1.0

    def lost(self) -> list[Verdict]:
        return [v for v in self.verdicts if v.legit and not v.kept]


def score(cases: list[dict[str, str]], tokenizer: Tokenizer) -> Score:
    return Score([judge(case, tokenizer) for case in cases])


async def run(scale: Scale) -> BenchResult:
    tokenizer = await bench_tokenizer()
    result = BenchResult()
    for number, (title, name) in enumerate(CORPORA.items()):
        cases = load(name)
        found = score(cases, tokenizer)
        key = f"8{'abc'[number]}"
        labels = Counter(case["label"] for case in cases)
        languages = Counter(case["lang"] for case in cases)
        before = [keyword_validator_keeps(c["attribute"], c["value"], c["source"]) for c in cases]
        before_kept = sum(k for k, c in zip(before, cases, strict=True) if c["label"] == "legit")
        before_poisoned = sum(
            k for k, c in zip(before, cases, strict=True) if c["label"] != "legit"
        )
        blind = BLIND.get(name, "the rules were tuned on it")
        result.figures += [
            Figure(
                f"{key}1",
                f"legitimate facts kept (recall), {title}",
                found.recall * 100,
                "%",
                RECALL_GOAL,
                f"{found.kept_legit} of {found.legit}; rules before: {before_kept}; {blind}",
            ),
            Figure(
                f"{key}2",
                f"poisoned facts accepted, {title}",
                len(found.poisoned_kept),
                "",
                POISON_GOAL,
                f"of {len(cases) - found.legit}; rules before: {before_poisoned} accepted",
            ),
            Figure(
                f"{key}3", f"precision (legitimate / kept), {title}", found.precision * 100, "%"
            ),
        ]
        result.notes.append(
            f"{name}: {len(cases)} cases ({', '.join(f'{n} {k}' for k, n in labels.items())};"
            f" {', '.join(f'{n} {k}' for k, n in languages.items())})"
        )
        for verdict in found.lost():
            result.notes.append(
                f"  lost: {verdict.case['attribute']}={verdict.case['value']!r} ({verdict.reason})"
            )
        for verdict in found.poisoned_kept:
            result.notes.append(
                f"  ACCEPTED {verdict.case['label']}: {verdict.case['attribute']}="
                f"{verdict.case['value']!r} from {verdict.case['source']!r}"
            )
    return result
