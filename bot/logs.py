"""Logging for the bot process: one line per event, and no library tracebacks for the
network trouble a running bot simply rides out."""

from __future__ import annotations

import logging

FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"


def configure(level: str) -> None:
    logging.basicConfig(level=level, format=FORMAT)
    for name in ("discord.client", "discord.shard"):
        logging.getLogger(name).addFilter(ReconnectFilter())


class ReconnectFilter(logging.Filter):
    """discord.py logs every gateway reconnect with `log.exception`: a full traceback each
    time the network blips. Keep it to one warning line naming the error."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and str(record.msg).startswith("Attempting a reconnect"):
            error = record.exc_info[1]
            reason = f"{type(error).__name__}: {error}" if error else "unknown error"
            reason = reason.replace("%", "%%")  # record.msg is a %-format string
            record.msg = f"Lost the connection to Discord's gateway ({reason}); {record.msg}"
            record.exc_info = None
            record.exc_text = None
            record.levelno = logging.WARNING
            record.levelname = "WARNING"
        return True
