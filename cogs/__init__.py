"""Discord-facing adapters: each cog turns Discord events into calls on the engine."""
