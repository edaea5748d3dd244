"""Discord-facing adapters: each cog turns Discord events into calls on the engine.

The bot loads `EXTENSIONS` (given to it by the entry point, `bot.__main__`): a new command is
one more cog here, or a command in one.
"""

EXTENSIONS = ("cogs.chat", "cogs.memory", "cogs.facts", "cogs.admin", "cogs.help", "cogs.pointed")
