"""Text as it comes from outside (Discord events, model output) made safe to store and send."""

from __future__ import annotations

import re

_LONE_SURROGATE = re.compile("[\ud800-\udfff]")


def clean_text(text: str) -> str:
    """Replace lone surrogates (valid in a Python str and in JSON, not in UTF-8) with U+FFFD.

    SQLite and Discord both need UTF-8; a lone surrogate would make the write raise.
    """
    return _LONE_SURROGATE.sub("\ufffd", text)


STORED_CUT_NOTICE = "\n[… cut here when stored: the message was longer than {limit} characters]"


def cap_stored(text: str, limit: int) -> str:
    """At most `limit` characters of a message as stored, the cut marked (after `limit`)."""
    if len(text) <= limit:
        return text
    return text[:limit].rstrip() + STORED_CUT_NOTICE.format(limit=limit)
