"""The scripted conversation and how the loopback LLM answers it.

User messages are about 40 tokens, answers about 120, and every 25th turn the user states a
fact about themself ("I live in Porto", "I work at Initech"). The loopback LLM answers chat
calls with ~120-token answers, summary calls with a ~300-token summary, and JSON-mode fact
calls by extracting the sprinkled facts, citing the [id] labels of the extraction prompt.
Everything is deterministic, so Mnemo and the baselines see the same conversation.
"""

from __future__ import annotations

import json
import zlib
from dataclasses import dataclass
from typing import Any

from tests.fakes.llm_server import message_text

FACT_EVERY = 25


@dataclass(frozen=True, slots=True)
class ScriptFact:
    attribute: str
    sentence: str
    value: str


@dataclass(frozen=True, slots=True)
class Turn:
    index: int
    text: str
    fact: ScriptFact | None


FACTS = (
    ScriptFact("city", "I live in Porto", "Porto"),
    ScriptFact("employer", "I work at Initech", "Initech"),
    ScriptFact("pet_name", "My dog is called Biscuit", "Biscuit"),
    ScriptFact("favorite_language", "My favourite programming language is Rust", "Rust"),
    ScriptFact("job", "I work as a data engineer", "data engineer"),
    ScriptFact("timezone", "My timezone is Europe/Lisbon", "Europe/Lisbon"),
    ScriptFact("hobby", "I play the cello on weekends", "cello"),
    ScriptFact("birthday", "My birthday is on 14 March", "14 March"),
    ScriptFact("city", "I moved to Lisbon last month", "Lisbon"),
    ScriptFact("employer", "I just started a new job at Globex", "Globex"),
)

SUBJECTS = (
    "the garden sensor project",
    "my monthly budget spreadsheet",
    "the Django migration at work",
    "our team's on-call rota",
    "the sourdough experiment",
    "my small Rust side project",
    "the trip to the Azores",
    "the home server in the attic",
    "the book club reading list",
    "the kitchen renovation plan",
)

DETAILS = (
    "The humidity readings drift by about three percent every evening after sunset.",
    "I tried splitting the work into smaller steps but it still takes most of the weekend.",
    "Two of the tests fail only on the build machine and never on my laptop.",
    "The costs went up again this month and I cannot see where the money went.",
    "My notes from last week are a mess and half of the links are broken now.",
    "A friend suggested a completely different approach that sounds simpler to maintain.",
    "The second attempt worked better, though the results are still not consistent.",
    "I have about two hours each evening for this, so I need to pick carefully.",
)

QUESTIONS = (
    "What would be a sensible next step here?",
    "Is there an obvious mistake I am making?",
    "How would you break this down into smaller pieces?",
    "Which option is easier to undo later if it goes wrong?",
    "What should I measure first to find the cause?",
    "Can you sketch a short plan for the coming week?",
)

ANSWER_SENTENCES = (
    "That sounds like a classic case where a small change upstream has large effects later on.",
    "I would start by writing down exactly what you expect to happen, step by step.",
    "Then compare it with what actually happens, and note the first place they differ.",
    "Keep each experiment small enough that you can undo it in a couple of minutes.",
    "If the problem only shows up occasionally, log the conditions every time it appears.",
    "A simple checklist often catches more issues than a clever tool does at first.",
    "It is usually worth fixing the measurement before trusting any conclusion from it.",
    "Once the basic version is stable, you can add the nicer features one at a time.",
    "Try to change one variable per attempt, otherwise you cannot tell what helped.",
    "Set a short time limit for each idea, and move on when the time runs out.",
    "Writing a short summary after each session makes it easier to pick things up again.",
    "If you share the numbers from the last few attempts, I can help spot a pattern.",
)

SUMMARY_SENTENCES = (
    "The user is working on several personal and work projects in parallel.",
    "The user asked for help planning the next steps and breaking work into small pieces.",
    "The assistant suggested writing down expected behaviour before changing anything.",
    "The assistant recommended changing one variable per attempt and logging the results.",
    "The user reported that two tests fail only on the build machine.",
    "The user has about two hours each evening for side projects.",
    "The assistant promised to help spot patterns once the user shares the numbers.",
    "The user noticed humidity readings drifting by about three percent each evening.",
    "The user's costs went up this month and the cause is still unknown.",
    "A friend of the user suggested a simpler approach that is easier to maintain.",
    "Open question: which option is easier to undo later if it goes wrong.",
    "The assistant advised setting a short time limit for each idea.",
    "The user keeps notes from earlier sessions, but many of the links are broken.",
    "Decision: fix the measurement first before trusting any conclusion.",
    "The assistant suggested a short checklist instead of a new tool.",
    "The user plans to write a short summary after each working session.",
    "Open question: what to measure first to find the cause of the drift.",
    "The user prefers short answers with concrete steps over long explanations.",
    "The assistant explained how to compare expected and actual behaviour step by step.",
    "The user tried splitting the work into smaller steps, which still took most of a weekend.",
    "The assistant offered to review the user's plan for the coming week once it is written down.",
    "The user mentioned a kitchen renovation, a trip to the Azores and a book club reading list.",
    "Decision: keep each experiment small enough to undo within a couple of minutes.",
)


def conversation(turns: int) -> list[Turn]:
    """The scripted user messages, with a fact stated every `FACT_EVERY` turns."""
    return [_turn(index) for index in range(turns)]


def _turn(index: int) -> Turn:
    subject = SUBJECTS[index % len(SUBJECTS)]
    question = QUESTIONS[(index * 7) % len(QUESTIONS)]
    fact = FACTS[(index // FACT_EVERY) % len(FACTS)] if index % FACT_EVERY == 7 else None
    if fact is not None:
        middle = f"By the way, {fact.sentence}. I mention it because it matters for this."
    else:
        middle = DETAILS[(index * 3) % len(DETAILS)]
    return Turn(
        index, f"Hi again, message {index} here, about {subject}. {middle} {question}", fact
    )


def is_summary_call(body: dict[str, Any]) -> bool:
    return "running summary" in message_text(body["messages"][0])


def answer(body: dict[str, Any]) -> str:
    """The loopback LLM's answer to a chat call or a summary call (not JSON mode)."""
    if is_summary_call(body):
        return summary(body)
    seed = _seed(message_text(body["messages"][-1]))
    picks = [ANSWER_SENTENCES[(seed + step * 5) % len(ANSWER_SENTENCES)] for step in range(7)]
    picks.insert(0, "Good question, let me think about it.")
    return " ".join(picks)


def summary(body: dict[str, Any]) -> str:
    """A ~300-token running summary; mentions the facts found in the folded messages."""
    transcript = message_text(body["messages"][-1])
    seed = _seed(transcript)
    count = len(SUMMARY_SENTENCES)
    picks = [SUMMARY_SENTENCES[(seed + step) % count] for step in range(count - 1)]
    stated = [fact.sentence for fact in FACTS if fact.sentence in transcript]
    if stated:
        picks.append("The user said: " + "; ".join(stated) + ".")
    return " ".join(picks)


def extract_facts(body: dict[str, Any]) -> str:
    """The JSON answer to a fact-extraction call: each scripted fact, citing its [id] label."""
    facts = []
    for line in message_text(body["messages"][-1]).splitlines():
        if not line.startswith("["):
            continue
        label, _, text = line.partition("] ")
        for fact in FACTS:
            if fact.sentence in text:
                facts.append(
                    {"attribute": fact.attribute, "value": fact.value, "sources": [int(label[1:])]}
                )
    return json.dumps({"facts": facts})


def _seed(text: str) -> int:
    return zlib.crc32(text.encode())
