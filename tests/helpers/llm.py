"""What the loopback LLM was asked (summaries, fact extractions), and answers to give it."""

from __future__ import annotations

import json
from typing import Any

from tests.fakes.llm_server import FakeLLM, message_text


def is_summary_call(body: dict[str, Any]) -> bool:
    return "running summary" in message_text(body["messages"][0])


def summary_calls(fake: FakeLLM) -> list[dict[str, Any]]:
    return [call for call in fake.chat_calls if is_summary_call(call)]


def fact_calls(fake: FakeLLM) -> list[dict[str, Any]]:
    return [call for call in fake.chat_calls if call.get("response_format")]


def labelled_ids(body: dict[str, Any]) -> dict[str, int]:
    """Map each message text in an extraction prompt to its [id] label."""
    found = {}
    for line in message_text(body["messages"][-1]).splitlines():
        if line.startswith("["):
            label, _, text = line.partition("] ")
            found[text] = int(label[1:])
    return found


def facts_responder(body: dict[str, Any]) -> str:
    facts = []
    for text, mid in labelled_ids(body).items():
        if "I live in" in text:
            city = text.split("I live in ")[1].split()[0].strip(".,")
            facts.append({"attribute": "city", "value": city, "sources": [mid]})
        if "my dog is" in text:
            facts.append({"attribute": "dog_name", "value": text.split()[-1], "sources": [mid]})
    return json.dumps({"facts": facts})
