"""The loopback Discord's former module name, kept for tests_real/, which imports it.

The fake is the package tests/fakes/discord/ (one module per part, composed by `FakeDiscord` in
server.py): import it from there, `from tests.fakes.discord import FakeDiscord`.
"""

from tests.fakes.discord import BotMessage, FakeDiscord

__all__ = ["BotMessage", "FakeDiscord"]
