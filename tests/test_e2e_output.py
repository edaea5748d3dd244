"""What users see is well formed: notes outside code blocks, command pages within Discord's
limits. The real discord.py client against the loopback Discord, which enforces those limits."""

from __future__ import annotations

from tests.conftest import Bots
from tests.fakes.discord_server import FakeDiscord
from tests.fakes.llm_server import FakeLLM

LENGTH_NOTE = "-# (the answer reached the reply length limit)"


async def test_length_note_is_not_inside_an_open_code_block(
    bots: Bots, fake_discord: FakeDiscord, fake_llm: FakeLLM
) -> None:
    d = fake_discord
    await bots.start(max_reply_tokens=40)  # the loopback LLM cuts at 4 characters a token
    code = "\n".join(f"    total += item_{i}" for i in range(40))
    fake_llm.push_answers(f"Here is the loop:\n```python\nfor item in items:\n{code}\n```")
    await d.send_message(d.alice, d.CHANNEL_ID, "write me a loop", mention_bot=True)
    shown = await d.final_text(await d.next_bot_message(d.CHANNEL_ID), quiet=0.5)
    assert shown.endswith("\n```\n\n" + LENGTH_NOTE), shown
    before_note = shown[: -len(LENGTH_NOTE)]
    assert before_note.count("```") % 2 == 0  # the block is closed before the note
