"""REST: channel messages (create, edit, delete, list, threads, reactions), with Discord's
checks on a body (length, embeds, files, emptiness, replies), and the bot's own messages echoed
over the gateway."""

from __future__ import annotations

import mimetypes
import time
from collections.abc import Sequence
from typing import Any

from aiohttp import web

from tests.fakes.discord.protocol import (
    FLAG_EPHEMERAL,
    FLAG_LOADING,
    INTERACTION_COMMAND,
    JSON,
    MAX_CONTENT,
    SETTABLE_FLAGS,
    _embed_chars,
    _embed_texts,
    _error,
    _invalid_form,
    _json,
    _now_iso,
    utf16_len,
)
from tests.fakes.discord.records import BotMessage, FakeInteraction, RecordedRequest, StoredFile


class RestMessages:
    """REST routes of channel messages, and the bot's messages as the fake keeps them."""

    async def _get_channel(self, record: RecordedRequest, channel_id: str) -> web.Response:
        channel = self._channels.get(int(channel_id))
        return _json(200, channel) if channel else _error(404, 10003, "Unknown Channel")

    async def _no_content(self, record: RecordedRequest, **_: str) -> web.Response:
        return web.Response(status=204)

    async def _list_messages(self, record: RecordedRequest, channel_id: str) -> web.Response:
        cid = int(channel_id)
        if cid not in self._channels:
            return _error(404, 10003, "Unknown Channel")
        users = [m for m in self._user_messages.values() if int(m["channel_id"]) == cid]
        bots = [self._message_payload(m) for m in self._visible_bot_messages(cid)]
        found = sorted(users + bots, key=lambda m: int(m["id"]), reverse=True)
        before, after = record.query.get("before"), record.query.get("after")
        if before:
            found = [m for m in found if int(m["id"]) < int(before)]
        if after:
            found = [m for m in found if int(m["id"]) > int(after)]
        found = found[: int(record.query.get("limit", 50))]
        return _json(200, [self._as_read_over_rest(m) for m in found])

    def _as_read_over_rest(self, message: JSON) -> JSON:
        """The MESSAGE_CONTENT intent applies to REST reads too: without it (as the bot
        identified), a guild message that neither mentions the bot nor comes from it is read
        with its content, embeds, attachments and components empty."""
        session = next(iter(self._sessions.values()), None)
        return message if session is None else self._as_seen_by_bot(session, message)

    def _visible_bot_messages(self, channel_id: int) -> list[BotMessage]:
        log = self._channel_log.get(channel_id, [])
        return [m for m in log if not m.deleted and not m.ephemeral]

    async def _create_message(self, record: RecordedRequest, channel_id: str) -> web.Response:
        cid = int(channel_id)
        if cid not in self._channels:
            return _error(404, 10003, "Unknown Channel")
        body = record.json or {}
        error = self._check_body(body, record.files) or self._check_reference(body)
        if error is not None:
            return error
        message = self._new_bot_message(cid, body, record.files)
        await self._echo("MESSAGE_CREATE", message)
        return _json(200, self._message_payload(message))

    async def _start_thread(
        self, record: RecordedRequest, channel_id: str, message_id: str
    ) -> web.Response:
        """A public thread from a message: it takes the message's id, as on Discord."""
        cid, mid = int(channel_id), int(message_id)
        guild_id = self.guild_of(cid)
        if guild_id is None or self._channels[cid]["type"] != 0:
            return _error(400, 50024, "Cannot execute action on this channel type")
        if self._find_message(cid, mid) is None:
            return _error(404, 10008, "Unknown Message")
        if mid in self._channels:
            return _error(400, 160004, "A thread has already been created for this message")
        name = str((record.json or {}).get("name") or "")
        if not 1 <= len(name) <= 100:
            return _invalid_form(["name"], "BASE_TYPE_BAD_LENGTH", "Must be 1-100 in length.")
        self._add_thread(guild_id, mid, cid, name, owner_id=self.BOT_USER_ID)
        thread = self._channels[mid]
        await self._dispatch("THREAD_CREATE", {**thread, "newly_created": True})
        return _json(201, thread)

    async def _get_message(
        self, record: RecordedRequest, channel_id: str, message_id: str
    ) -> web.Response:
        found = self._find_message(int(channel_id), int(message_id))
        if not found:
            return _error(404, 10008, "Unknown Message")
        return _json(200, self._as_read_over_rest(found))

    async def _edit_message(
        self, record: RecordedRequest, channel_id: str, message_id: str
    ) -> web.Response:
        message = self._bot_message_in(int(channel_id), int(message_id))
        if message is None:
            if self._find_message(int(channel_id), int(message_id)) is not None:
                return _error(403, 50005, "Cannot edit a message authored by another user")
            return _error(404, 10008, "Unknown Message")
        return await self._apply_edit(message, record.json or {}, record.files)

    async def _delete_message(
        self, record: RecordedRequest, channel_id: str, message_id: str
    ) -> web.Response:
        message = self._bot_message_in(int(channel_id), int(message_id))
        if message is None:
            if self._find_message(int(channel_id), int(message_id)) is not None:
                return _error(403, 50013, "Missing Permissions")
            return _error(404, 10008, "Unknown Message")
        await self._delete_bot_message(message)
        return web.Response(status=204)

    async def _react(
        self, record: RecordedRequest, channel_id: str, message_id: str, emoji: str
    ) -> web.Response:
        if self._find_message(int(channel_id), int(message_id)) is None:
            return _error(404, 10008, "Unknown Message")
        return web.Response(status=204)

    def _bot_message_in(self, channel_id: int, message_id: int) -> BotMessage | None:
        message = self._bot_messages.get(message_id)
        if message is None or message.deleted or message.ephemeral:
            return None
        return message if message.channel_id == channel_id else None

    def _find_message(self, channel_id: int, message_id: int) -> JSON | None:
        bot_message = self._bot_message_in(channel_id, message_id)
        if bot_message is not None:
            return self._message_payload(bot_message)
        user_message = self._user_messages.get(message_id)
        if user_message is not None and int(user_message["channel_id"]) == channel_id:
            return user_message
        return None

    def _check_body(
        self,
        body: JSON,
        files: list[tuple[str, bytes]],
        existing: BotMessage | None = None,
        prefix: Sequence[str] = (),
    ) -> web.Response | None:
        """Discord's checks on a message body: files' size, length, embeds, and emptiness
        (after an edit)."""
        if sum(len(data) for _, data in files) > self.upload_limit:
            return _error(413, 40005, "Request entity too large")
        content = body.get("content")
        if isinstance(content, str) and utf16_len(content) > MAX_CONTENT:
            message = f"Must be {MAX_CONTENT} or fewer in length."
            return _invalid_form([*prefix, "content"], "BASE_TYPE_MAX_LENGTH", message)
        embeds = body.get("embeds") or []
        if len(embeds) > 10 or sum(_embed_chars(e) for e in embeds) > 6000:
            message = "Embed size exceeds maximum size of 6000"
            return _invalid_form([*prefix, "embeds"], "MAX_EMBED_SIZE_EXCEEDED", message)
        for index, embed in enumerate(embeds):
            for path, text, most in _embed_texts(embed):
                if utf16_len(text) > most:
                    return _invalid_form(
                        [*prefix, "embeds", str(index), *path],
                        "BASE_TYPE_MAX_LENGTH",
                        f"Must be {most} or fewer in length.",
                    )
            if len(embed.get("fields") or []) > 25:
                path = [*prefix, "embeds", str(index), "fields"]
                return _invalid_form(path, "BASE_TYPE_MAX_LENGTH", "Must be 25 or fewer in length.")
        if self._would_be_empty(body, files, existing):
            return _error(400, 50006, "Cannot send an empty message")
        return None

    @staticmethod
    def _would_be_empty(
        body: JSON, files: list[tuple[str, bytes]], existing: BotMessage | None
    ) -> bool:
        def pick(key: str, current: Any) -> Any:
            return body.get(key) if key in body else current

        content = pick("content", existing.content if existing else None)
        embeds = pick("embeds", existing.embeds if existing else None)
        components = pick("components", existing.components if existing else None)
        kept = pick("attachments", existing.files if existing else None)
        has_files = bool(files) or bool(kept)
        extras = body.get("sticker_ids") or body.get("poll")
        return not ((content or "").strip() or embeds or components or has_files or extras)

    def _check_reference(self, body: JSON) -> web.Response | None:
        reference = body.get("message_reference")
        if not reference or reference.get("fail_if_not_exists") is False:
            return None
        channel_id = int(reference.get("channel_id") or 0)
        message_id = int(reference.get("message_id") or 0)
        if self._find_message(channel_id, message_id) is None:
            path = ["message_reference"]
            return _invalid_form(path, "MESSAGE_REFERENCE_UNKNOWN_MESSAGE", "Unknown message")
        return None

    def _new_bot_message(
        self,
        channel_id: int,
        body: JSON,
        files: list[tuple[str, bytes]],
        *,
        interaction: FakeInteraction | None = None,
        extra_flags: int = 0,
    ) -> BotMessage:
        allowed = SETTABLE_FLAGS | (FLAG_EPHEMERAL if interaction else 0)
        message = BotMessage(
            id=self._ids.next(),
            channel_id=channel_id,
            guild_id=self.guild_of(channel_id),
            content=body.get("content") or "",
            flags=(int(body.get("flags") or 0) & allowed) | extra_flags,
            allowed_mentions=body.get("allowed_mentions"),
            message_reference=body.get("message_reference"),
            components=list(body.get("components") or []),
            embeds=list(body.get("embeds") or []),
            files=[self._store_file(name, data) for name, data in files],
            interaction_id=interaction.id if interaction else None,
        )
        message.history.append(message.content)
        message.bodies.append(body)
        self._bot_messages[message.id] = message
        self._channel_log.setdefault(channel_id, []).append(message)
        return message

    def _store_file(self, filename: str, data: bytes) -> StoredFile:
        content_type = mimetypes.guess_type(filename)[0] or "application/octet-stream"
        stored = StoredFile(self._ids.next(), filename, data, content_type)
        self._cdn[stored.id] = stored
        return stored

    async def _apply_edit(
        self, message: BotMessage, body: JSON, files: list[tuple[str, bytes]]
    ) -> web.Response:
        error = self._check_body(body, files, existing=message)
        if error is not None:
            return error
        self._update_message(message, body, files)
        await self._echo("MESSAGE_UPDATE", message)
        return _json(200, self._message_payload(message))

    def _update_message(
        self, message: BotMessage, body: JSON, files: list[tuple[str, bytes]]
    ) -> None:
        if "content" in body:
            message.content = body["content"] or ""
            message.history.append(message.content)
        if "embeds" in body:
            message.embeds = list(body["embeds"] or [])
        if "components" in body:
            message.components = list(body["components"] or [])
        if "allowed_mentions" in body:
            message.allowed_mentions = body["allowed_mentions"]
        if body.get("flags") is not None:
            kept = message.flags & ~SETTABLE_FLAGS
            message.flags = kept | (int(body["flags"]) & SETTABLE_FLAGS)
        if "attachments" in body or files:
            keep_ids = {int(a["id"]) for a in body.get("attachments") or [] if "id" in a}
            message.files = [f for f in message.files if f.id in keep_ids]
            message.files += [self._store_file(name, data) for name, data in files]
        message.flags &= ~FLAG_LOADING
        message.bodies.append(body)
        message.edited_timestamp = _now_iso()
        message.updated_at = time.monotonic()

    async def _delete_bot_message(self, message: BotMessage) -> None:
        message.deleted = True
        message.updated_at = time.monotonic()
        if self.echo_bot_messages and not message.ephemeral:
            event = {"id": str(message.id), "channel_id": str(message.channel_id)}
            if message.guild_id is not None:
                event["guild_id"] = str(message.guild_id)
            await self._dispatch("MESSAGE_DELETE", event, intent=self._message_intent(event))

    async def _echo(self, event: str, message: BotMessage) -> None:
        """Discord sends the bot its own (non-ephemeral) messages over the gateway too."""
        if self.echo_bot_messages and not message.ephemeral:
            payload = self._message_payload(message)
            await self._dispatch(event, payload, intent=self._message_intent(payload))

    def _message_payload(self, message: BotMessage) -> JSON:
        payload: JSON = {
            "id": str(message.id),
            "channel_id": str(message.channel_id),
            "author": self._bot_user_payload(),
            "content": message.content,
            "timestamp": message.timestamp,
            "edited_timestamp": message.edited_timestamp,
            "tts": False,
            "mention_everyone": False,
            "mentions": self._mentions_in(message.content, message.guild_id),
            "mention_roles": self._role_mentions_in(message.content, message.guild_id),
            "attachments": [self._attachment_payload(message.channel_id, f) for f in message.files],
            "embeds": message.embeds,
            "pinned": False,
            "type": 19 if message.message_reference else 0,
            "flags": message.flags,
            "components": message.components,
        }
        if message.guild_id is not None:
            payload["guild_id"] = str(message.guild_id)
        if message.message_reference:
            self._add_reference(payload, message.message_reference)
        if message.interaction_id is not None:
            self._add_interaction_metadata(payload, self._interactions[message.interaction_id])
        return payload

    def _add_reference(self, payload: JSON, reference: JSON) -> None:
        channel_id = int(reference.get("channel_id") or payload["channel_id"])
        payload["message_reference"] = {**reference, "channel_id": str(channel_id)}
        referenced = self._find_message(channel_id, int(reference.get("message_id") or 0))
        if referenced is not None:
            referenced = {k: v for k, v in referenced.items() if k != "referenced_message"}
        payload["referenced_message"] = referenced

    def _add_interaction_metadata(self, payload: JSON, interaction: FakeInteraction) -> None:
        payload["webhook_id"] = str(self.APPLICATION_ID)
        payload["application_id"] = str(self.APPLICATION_ID)
        if interaction.type == INTERACTION_COMMAND:
            payload["type"] = 20
        metadata: JSON = {
            "id": str(interaction.id),
            "type": interaction.type,
            "user": interaction.user.payload(),
            "authorizing_integration_owners": interaction.payload["authorizing_integration_owners"],
        }
        if interaction.message is not None:
            metadata["interacted_message_id"] = str(interaction.message.id)
        payload["interaction_metadata"] = metadata
