"""Users act: they post, edit and delete messages (with mentions, replies, attachments)."""

from __future__ import annotations

import mimetypes
from collections.abc import Sequence
from typing import Any

from tests.fakes.discord.protocol import (
    INTENT_DIRECT_MESSAGES,
    INTENT_GUILD_MESSAGES,
    JSON,
    MENTION_RE,
    ROLE_MENTION_RE,
    _now_iso,
)
from tests.fakes.discord.records import BotMessage, FakeUser, StoredFile


class Users:
    """What the test users do in Discord: MESSAGE_CREATE, _UPDATE and _DELETE."""

    async def send_message(
        self,
        author: FakeUser,
        channel_id: int,
        content: str,
        *,
        mention_bot: bool = False,
        mention_bot_role: bool = False,
        mention_users: Sequence[FakeUser] = (),
        mention_everyone: bool = False,
        reply_to: JSON | BotMessage | None = None,
        reply_mention: bool = True,
        attachments: Sequence[JSON] = (),
        embeds: Sequence[JSON] = (),
        webhook_id: int | None = None,
    ) -> JSON:
        """A user posts in a guild channel, thread or DM channel: dispatch MESSAGE_CREATE.

        Mention options prepend their tokens to ``content`` (``<@bot>``, ``<@&bot role>``,
        ``<@user>``, ``@everyone``); ``mentions``/``mention_roles`` are parsed from the final text.
        ``reply_to`` (a user message payload or a :class:`BotMessage`) makes it a reply; with
        ``reply_mention`` the replied-to author is in ``mentions``, like a pinging reply.
        ``attachments`` are dicts with at least ``filename`` and ``data`` (bytes). Returns the
        payload (keep it for :meth:`redeliver`, :meth:`edit_user_message`, ``reply_to``).
        """
        guild_id = self.guild_of(channel_id)
        prefix = []
        if mention_bot:
            prefix.append(f"<@{self.BOT_USER_ID}>")
        if mention_bot_role and guild_id is not None:
            prefix.append(f"<@&{self.bot_role_id(guild_id)}>")
        prefix += [user.mention for user in mention_users]
        if mention_everyone:
            prefix.append("@everyone")
        text = " ".join([*prefix, content]) if prefix else content
        payload = self._user_message(author, channel_id, text, webhook_id)
        self._mention_prefixes[int(payload["id"])] = " ".join(prefix)
        payload["mention_everyone"] = mention_everyone
        payload["attachments"] = [self._user_attachment(channel_id, a) for a in attachments]
        payload["embeds"] = list(embeds)
        if reply_to is not None:
            self._make_reply(payload, reply_to, reply_mention)
        self._user_messages[int(payload["id"])] = payload
        await self._dispatch("MESSAGE_CREATE", payload, intent=self._message_intent(payload))
        return payload

    async def send_dm(self, author: FakeUser, content: str, **kwargs: Any) -> JSON:
        """A user writes to the bot in their DM channel (see :meth:`send_message`)."""
        return await self.send_message(author, self.dm_channel_id(author), content, **kwargs)

    async def redeliver(self, payload: JSON) -> None:
        """Dispatch the same MESSAGE_CREATE again (as a replay after a resume would)."""
        await self._dispatch("MESSAGE_CREATE", payload, intent=self._message_intent(payload))

    async def edit_user_message(
        self, payload: JSON, new_content: str, *, keep_mentions: bool = True
    ) -> JSON:
        """The author edits their message: dispatch MESSAGE_UPDATE with the full new message.

        With ``keep_mentions`` the mention tokens that :meth:`send_message` put in front of the
        text stay in front of ``new_content``; mentions are parsed again from the result.
        """
        guild_id = self.guild_of(int(payload["channel_id"]))
        prefix = self._mention_prefixes.get(int(payload["id"]), "") if keep_mentions else ""
        new_content = f"{prefix} {new_content}" if prefix else new_content
        edited = {**payload, "content": new_content, "edited_timestamp": _now_iso()}
        edited["mentions"] = self._mentions_in(new_content, guild_id)
        edited["mention_roles"] = self._role_mentions_in(new_content, guild_id)
        self._user_messages[int(payload["id"])] = edited
        await self._dispatch("MESSAGE_UPDATE", edited, intent=self._message_intent(edited))
        return edited

    async def delete_user_message(self, payload: JSON) -> None:
        """The author deletes their message: dispatch MESSAGE_DELETE."""
        self._user_messages.pop(int(payload["id"]), None)
        event = {"id": payload["id"], "channel_id": payload["channel_id"]}
        if "guild_id" in payload:
            event["guild_id"] = payload["guild_id"]
        await self._dispatch("MESSAGE_DELETE", event, intent=self._message_intent(payload))

    async def bulk_delete_user_messages(self, payloads: Sequence[JSON]) -> None:
        """A moderator deletes several messages of one channel at once (`POST …/messages/
        bulk-delete`): dispatch MESSAGE_DELETE_BULK, as Discord does."""
        first = payloads[0]
        for payload in payloads:
            self._user_messages.pop(int(payload["id"]), None)
        event: JSON = {"ids": [p["id"] for p in payloads], "channel_id": first["channel_id"]}
        if "guild_id" in first:
            event["guild_id"] = first["guild_id"]
        await self._dispatch("MESSAGE_DELETE_BULK", event, intent=self._message_intent(first))

    @staticmethod
    def _message_intent(payload: JSON) -> int:
        return INTENT_GUILD_MESSAGES if "guild_id" in payload else INTENT_DIRECT_MESSAGES

    def _user_message(
        self, author: FakeUser, channel_id: int, content: str, webhook_id: int | None
    ) -> JSON:
        guild_id = self.guild_of(channel_id)
        payload: JSON = {
            "id": str(self._ids.next()),
            "channel_id": str(channel_id),
            "author": author.payload(),
            "content": content,
            "timestamp": _now_iso(),
            "edited_timestamp": None,
            "tts": False,
            "mention_everyone": False,
            "mentions": self._mentions_in(content, guild_id),
            "mention_roles": self._role_mentions_in(content, guild_id),
            "attachments": [],
            "embeds": [],
            "pinned": False,
            "type": 0,
            "flags": 0,
            "components": [],
        }
        if guild_id is not None:
            payload["guild_id"] = str(guild_id)
        if webhook_id is not None:
            payload["webhook_id"] = str(webhook_id)
            payload["author"] = {**author.payload(), "id": str(webhook_id), "bot": True}
        elif guild_id is not None:
            payload["member"] = self._member_payload(guild_id, author, with_user=False)
        return payload

    def _make_reply(self, payload: JSON, target: JSON | BotMessage, ping: bool) -> None:
        referenced = self._message_payload(target) if isinstance(target, BotMessage) else target
        referenced = {k: v for k, v in referenced.items() if k != "referenced_message"}
        payload["type"] = 19
        payload["message_reference"] = {
            "type": 0,
            "message_id": referenced["id"],
            "channel_id": referenced["channel_id"],
        }
        if "guild_id" in referenced:
            payload["message_reference"]["guild_id"] = referenced["guild_id"]
        payload["referenced_message"] = referenced
        author_id = referenced["author"]["id"]
        if ping and all(m["id"] != author_id for m in payload["mentions"]):
            guild_id = self.guild_of(int(payload["channel_id"]))
            payload["mentions"].append(self._mention_entry(referenced["author"], guild_id))

    def _user_attachment(self, channel_id: int, spec: JSON) -> JSON:
        data: bytes = spec.get("data", b"")
        filename = spec.get("filename", "file.bin")
        content_type = spec.get("content_type") or mimetypes.guess_type(filename)[0]
        stored = StoredFile(
            self._ids.next(), filename, data, content_type or "application/octet-stream"
        )
        self._cdn[stored.id] = stored
        extra = {k: v for k, v in spec.items() if k not in ("data", "filename")}
        return {**self._attachment_payload(channel_id, stored), **extra}

    def _attachment_payload(self, channel_id: int, stored: StoredFile) -> JSON:
        url = (
            f"http://127.0.0.1:{self._port}/attachments/{channel_id}/{stored.id}/{stored.filename}"
        )
        return {
            "id": str(stored.id),
            "filename": stored.filename,
            "size": len(stored.data),
            "url": url,
            "proxy_url": url,
            "content_type": stored.content_type,
        }

    def _mention_entry(self, user: JSON, guild_id: int | None) -> JSON:
        entry = dict(user)
        known = self.users.get(int(user["id"]))
        if guild_id is not None and known is not None:
            entry["member"] = self._member_payload(guild_id, known, with_user=False)
        return entry

    def _mentions_in(self, content: str, guild_id: int | None) -> list[JSON]:
        seen: dict[int, JSON] = {}
        for match in MENTION_RE.finditer(content):
            user = self.users.get(int(match.group(1)))
            if user is not None and user.id not in seen:
                seen[user.id] = self._mention_entry(user.payload(), guild_id)
        return list(seen.values())

    def _role_mentions_in(self, content: str, guild_id: int | None) -> list[str]:
        if guild_id is None:
            return []
        known = {role["id"] for role in self._roles[guild_id]}
        found = dict.fromkeys(m.group(1) for m in ROLE_MENTION_RE.finditer(content))
        return [role_id for role_id in found if role_id in known]
