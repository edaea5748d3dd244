"""REST: interaction callbacks and the webhook (follow-up) routes of an interaction."""

from __future__ import annotations

import time

from aiohttp import web

from tests.fakes.discord.protocol import (
    ALLOWED_CALLBACKS,
    FLAG_LOADING,
    JSON,
    _error,
    _invalid_form,
    _json,
)
from tests.fakes.discord.records import BotMessage, FakeInteraction, RecordedRequest


class RestInteractions:
    """REST routes that answer interactions: callbacks, follow-ups, @original."""

    async def _callback(
        self, record: RecordedRequest, interaction_id: str, token: str
    ) -> web.Response:
        interaction = self._interactions.get(int(interaction_id))
        if interaction is None or interaction.token != token:
            return _error(404, 10062, "Unknown interaction")
        if interaction.responses:
            return _error(400, 40060, "Interaction has already been acknowledged.")
        late = time.monotonic() - interaction.created_at > self.interaction_deadline
        if interaction.expired or late:
            interaction.expired = True
            return _error(404, 10062, "Unknown interaction")
        body = record.json or {}
        kind, data = body.get("type"), body.get("data") or {}
        if kind not in ALLOWED_CALLBACKS[interaction.type]:
            return _invalid_form(["type"], "INTERACTION_CALLBACK_TYPE_INVALID", "Invalid type")
        if kind in (4, 7):
            existing = interaction.message if kind == 7 else None
            error = self._check_body(data, record.files, existing, prefix=["data"])
            if error is not None:
                return error
        interaction.responses.append(body)
        message = await self._apply_callback(interaction, kind, data, record.files)
        if record.query.get("with_response", "").lower() not in ("1", "true"):
            return web.Response(status=204)
        return _json(200, self._callback_body(interaction, kind, message))

    async def _apply_callback(
        self, interaction: FakeInteraction, kind: int, data: JSON, files: list[tuple[str, bytes]]
    ) -> BotMessage | None:
        if kind in (4, 5):
            loading = FLAG_LOADING if kind == 5 else 0
            body = data if kind == 4 else {"flags": data.get("flags")}
            message = self._new_bot_message(
                interaction.channel_id,
                body,
                files if kind == 4 else [],
                interaction=interaction,
                extra_flags=loading,
            )
            interaction.original = message
            await self._echo("MESSAGE_CREATE", message)
            return message
        if kind in (6, 7) and interaction.message is not None:
            interaction.original = interaction.message
            if kind == 7:
                self._update_message(interaction.message, data, files)
                await self._echo("MESSAGE_UPDATE", interaction.message)
            return interaction.message
        return None

    @staticmethod
    def _callback_body(interaction: FakeInteraction, kind: int, message: BotMessage | None) -> JSON:
        summary: JSON = {"id": str(interaction.id), "type": interaction.type}
        resource: JSON = {"type": kind}
        if message is not None:
            summary["response_message_id"] = str(message.id)
            summary["response_message_loading"] = message.loading
            summary["response_message_ephemeral"] = message.ephemeral
        if message is not None and kind in (4, 7):
            resource["message"] = interaction.fake._message_payload(message)
        return {"interaction": summary, "resource": resource}

    def _webhook_interaction(self, app_id: str, token: str) -> FakeInteraction | None:
        interaction = self._interactions_by_token.get(token)
        if app_id != str(self.APPLICATION_ID) or interaction is None:
            return None
        return interaction if interaction.acknowledged else None

    def _webhook_target(self, interaction: FakeInteraction, message_id: str) -> BotMessage | None:
        if message_id == "@original":
            target = interaction.original
        else:
            target = next((m for m in interaction.messages if str(m.id) == message_id), None)
        return None if target is None or target.deleted else target

    async def _execute_webhook(
        self, record: RecordedRequest, app_id: str, token: str
    ) -> web.Response:
        interaction = self._webhook_interaction(app_id, token)
        if interaction is None:
            return _error(404, 10015, "Unknown Webhook")
        body = record.json or {}
        original = interaction.original
        if original is not None and original.loading and not original.deleted:
            # The first follow-up after a deferred response fills in the "thinking" message
            # (which keeps the ephemeral choice made at the defer).
            response = await self._apply_edit(original, body, record.files)
        else:
            error = self._check_body(body, record.files)
            if error is not None:
                return error
            channel_id = int(record.query.get("thread_id") or interaction.channel_id)
            message = self._new_bot_message(channel_id, body, record.files, interaction=interaction)
            interaction.followups.append(message)
            await self._echo("MESSAGE_CREATE", message)
            response = _json(200, self._message_payload(message))
        if record.query.get("wait", "").lower() in ("1", "true") or response.status != 200:
            return response
        return web.Response(status=204)

    async def _get_webhook_message(
        self, record: RecordedRequest, app_id: str, token: str, message_id: str
    ) -> web.Response:
        interaction = self._webhook_interaction(app_id, token)
        if interaction is None:
            return _error(404, 10015, "Unknown Webhook")
        target = self._webhook_target(interaction, message_id)
        if target is None:
            return _error(404, 10008, "Unknown Message")
        return _json(200, self._message_payload(target))

    async def _edit_webhook_message(
        self, record: RecordedRequest, app_id: str, token: str, message_id: str
    ) -> web.Response:
        interaction = self._webhook_interaction(app_id, token)
        if interaction is None:
            return _error(404, 10015, "Unknown Webhook")
        target = self._webhook_target(interaction, message_id)
        if target is None:
            return _error(404, 10008, "Unknown Message")
        body = record.json or {}
        if message_id == "@original":
            interaction.edits.append(body)
        return await self._apply_edit(target, body, record.files)

    async def _delete_webhook_message(
        self, record: RecordedRequest, app_id: str, token: str, message_id: str
    ) -> web.Response:
        interaction = self._webhook_interaction(app_id, token)
        if interaction is None:
            return _error(404, 10015, "Unknown Webhook")
        target = self._webhook_target(interaction, message_id)
        if target is None:
            return _error(404, 10008, "Unknown Message")
        await self._delete_bot_message(target)
        return web.Response(status=204)
