"""The loopback Discord's former module, kept for tests_real/, which imports it by this name.

The fake lives in the package tests/fakes/discord/ (one module per part, composed by
`FakeDiscord` in server.py); import it from there: `from tests.fakes.discord import FakeDiscord`.
"""

from tests.fakes.discord import (
    BotMessage,
    ChannelRef,
    FakeDiscord,
    FakeInteraction,
    FakeUser,
    RecordedRequest,
    RoleRef,
    StoredFile,
    utf16_len,
)

__all__ = [
    "BotMessage",
    "ChannelRef",
    "FakeDiscord",
    "FakeInteraction",
    "FakeUser",
    "RecordedRequest",
    "RoleRef",
    "StoredFile",
    "utf16_len",
]
