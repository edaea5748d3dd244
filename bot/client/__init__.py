"""The discord.py side: the Bot, members, streamed replies, message splitting."""
