"""The heartbeat: a timestamp the running bot writes to the database while it is connected to
Discord's gateway, and `mnemo health` reads from outside the process."""

HEARTBEAT_KEY = "heartbeat"  # the row of `bot_state` that holds it
HEARTBEAT_SECONDS = 30.0
HEARTBEAT_FRESH_SECONDS = 90.0  # three beats: one late write is not an outage
