"""Who heard a piece of memory, and where it may be used: pure policy, no I/O.

Memory moves only toward the same or a narrower audience (docs/privacy.md, "Who hears what").
Every stored message and fact keeps the *place* it was said in: a server channel, a public
thread's parent channel (whoever reads a channel reads its public threads), a private thread
itself. A place is *public* when the server's @everyone role can view it now.

The Discord side (`bot.client.places`) reads the audience of the place a message or command
comes from out of discord.py's cache, as it is at that moment, and hands it down as a plain
`Audience`: that place, and the server's public places. Memory may be used there when it was
said in one of `Audience.places`:

* in a public place: the server's public places only;
* in a private channel or a private thread: that place and the server's public places;
* in DMs there is no `Audience` (None): the user's DM memory, as before.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Audience:
    """The audience of one place of a server, from Discord's current permissions."""

    place_id: int
    """The place whose memory this is (see the module docstring)."""
    public: frozenset[int] = frozenset()
    """The server's places its @everyone can view now (channels; not threads)."""

    @property
    def is_public(self) -> bool:
        return self.place_id in self.public

    @property
    def places(self) -> frozenset[int]:
        """The places whose memory may be used here."""
        return self.public | {self.place_id}

    def allows(self, place_id: int) -> bool:
        return place_id == self.place_id or place_id in self.public


def places_of(audience: Audience | None) -> frozenset[int] | None:
    """The places whose memory may be used, or None for no filter (DMs)."""
    return audience.places if audience is not None else None
