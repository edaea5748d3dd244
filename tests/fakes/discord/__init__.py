"""A loopback Discord for end-to-end tests: the gateway websocket and the REST API on 127.0.0.1.

The real, unmodified discord.py client talks to it once :meth:`FakeDiscord.install` has pointed
``discord.http.Route.BASE`` and ``discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY`` here::

    fake = FakeDiscord()
    await fake.start()
    fake.install()
    task = asyncio.create_task(bot.start("fake-token"))
    await fake.wait_ready()
    payload = await fake.send_message(fake.alice, fake.CHANNEL_ID, "hi", mention_bot=True)
    reply = await fake.next_bot_message(fake.CHANNEL_ID)
    ...
    await bot.close()
    await task
    await fake.close()          # also restores discord.py

The world
---------
Guild ``GUILD_ID`` ("Test Server") has text channels ``CHANNEL_ID`` and ``OTHER_CHANNEL_ID``, a
public thread ``THREAD_ID`` under ``CHANNEL_ID``, the roles @everyone (id ``GUILD_ID``), the bot's
managed role ``BOT_ROLE_ID``, ``ADMIN_ROLE_ID`` (Manage Server) and ``MEMBER_ROLE_ID`` (no extra
permissions; give it with :meth:`FakeDiscord.set_roles`), and a category ``CATEGORY_ID`` holding
the channel ``CATEGORY_CHANNEL_ID``. Guild ``GUILD2_ID`` has channel ``GUILD2_CHANNEL_ID``.
Every channel is public (no permission overwrites) unless a test adds a private channel
(:meth:`FakeDiscord.add_private_channel`: @everyone denied View Channel, the bot's role and the
given members allowed), a private thread (``add_private_thread``, type 12) or a public one
(``add_public_thread``) before the bot connects, or makes a channel private or public later
(``make_private``, ``make_public``: CHANNEL_UPDATE with the new ``permission_overwrites``), or
changes a role's permissions (``set_role_permissions``: GUILD_ROLE_UPDATE).
``alice``, ``bob``, ``admin`` (with the admin role), ``other_bot`` and ``owner`` (owner of both
guilds and of the application) are members of both guilds. Each user has a deterministic DM
channel, :meth:`FakeDiscord.dm_channel_id`.

What Discord does and the fake does too
---------------------------------------
* Gateway: HELLO, heartbeat ACKs, IDENTIFY → READY + one GUILD_CREATE per guild, RESUME →
  replay + RESUMED, INVALID_SESSION, close codes (4004, 4014… end the session), sequence numbers,
  plain JSON text frames (discord.py asks for ``compress=zlib-stream`` but also reads text).
* Events are filtered by the identified intents (GUILD_MESSAGES, DIRECT_MESSAGES); without the
  MESSAGE_CONTENT intent, guild messages that do not mention the bot arrive with empty content.
* The bot's own messages come back as MESSAGE_CREATE / MESSAGE_UPDATE / MESSAGE_DELETE (not the
  ephemeral ones), as on Discord; pass ``echo_bot_messages=False`` to turn that off.
* REST: content over 2000 UTF-16 units → 400/50035; embeds past Discord's limits (10 per message,
  6000 characters in all, title 256, description 4096, 25 fields, field name 256 and value 1024,
  footer 2048, author name 256) → 400/50035; an empty message → 400/50006; a reply to an
  unknown message → 400/50035; the first interaction callback later than 3 s → 404/10062; a second
  one → 400/40060; webhook (follow-up) routes before the interaction is acknowledged → 404/10015;
  editing or deleting someone else's message → 403. Unknown routes → 404 ``{"code": 0}`` and are
  kept in :attr:`FakeDiscord.unknown_requests`.
* Interactions: after a deferred (thinking) response the first follow-up fills in the original
  "thinking" message rather than creating a new one, and keeps the ephemeral choice of the defer.
  ``?with_response=1`` callbacks answer in the ``{"interaction": …, "resource": …}`` shape of
  discord.py 2.5+, so views sent in an interaction response are filed under the right message id.
* Attachments (the users' and the bot's) are served at their ``url``, so ``Attachment.read()``
  works.
* Starting a thread from a message (``POST …/messages/{id}/threads``) creates a public thread
  with the message's id, owned by the bot, and dispatches THREAD_CREATE.
* Slash command options of type channel and role: pass :class:`ChannelRef` / :class:`RoleRef`;
  they arrive with ``resolved`` data as Discord sends it.

Where things are
----------------
One class, :class:`FakeDiscord` (``server.py``: the state, set up in its ``__init__``, and
start/close/install), composed of one part per module; a part calls the others through ``self``:

* ``world.py``: guilds, channels, roles, members, DM channels and their payloads;
* ``waiting.py``: ``wait_for``, ``wait_ready``, ``next_bot_message``, ``final_text``…;
* ``faults.py``: ``fail_next``, ``delay_next``;
* ``gateway.py``: the websocket, IDENTIFY/RESUME, sessions and shards, dispatching, and
  ``drop_connection``, ``invalidate_session``, ``request_reconnect``, ``close_gateway``;
* ``users.py``: ``send_message``, ``send_dm``, ``edit_user_message``, ``delete_user_message``,
  ``bulk_delete_user_messages``…;
* ``interactions.py``: ``slash``, ``message_command``, ``autocomplete``, ``click``;
* ``rest.py``: the route table, recording each request (``requests``), the CDN;
* ``rest_guilds.py``, ``rest_messages.py``, ``rest_interactions.py``: the REST routes;
* ``records.py``: what tests get back (``FakeUser``, ``BotMessage``, ``FakeInteraction``,
  ``RecordedRequest``…); ``protocol.py``: Discord's numbers and JSON error answers.
"""

from tests.fakes.discord.protocol import utf16_len
from tests.fakes.discord.records import (
    BotMessage,
    ChannelRef,
    FakeInteraction,
    FakeUser,
    RecordedRequest,
    RoleRef,
    StoredFile,
)
from tests.fakes.discord.server import FakeDiscord

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
