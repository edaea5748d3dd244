"""Changes: what users change of what was said — edits, deletions and erasures.

An edit or a deletion may reach a message at any point of its turn: still waiting (not stored:
remembered in the turns in hand, applied when its turn comes), being answered (the answer is
dropped, and no more of it shows), or stored (changed in storage, and learned again from).
An erasure deletes in storage (whose fence then defeats every later write of the turns it
covers) and stops showing the turns in hand it covers at once.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from bot.engine.records import DeletedMessage
from bot.engine.turns import TurnsInHand
from bot.memory.describe import keep_descriptions
from bot.memory.learning import Learning
from bot.memory.recall import RecallLog
from bot.model.tokens import Tokenizer
from bot.policy.controls import Controls
from bot.policy.limits import Cooldown, Limits
from storage import Storage
from storage.models import SessionKey
from storage.users import DeletedCounts

# A child of the engine's logger, as before the engine was split: a level set on
# "bot.engine.engine" (by an operator, or a test) still applies here.
log = logging.getLogger("bot.engine.engine").getChild("changes")


class Changes:
    def __init__(
        self,
        storage: Storage,
        tokenizer: Tokenizer,
        *,
        turns: TurnsInHand,
        learning: Learning,
        controls: Controls,
        limits: Limits,
        recall_log: RecallLog,
        erasure_cooldown: Cooldown,
        clock: Callable[[], float],
    ) -> None:
        self._storage = storage
        self._tokenizer = tokenizer
        self._turns = turns
        self._learning = learning
        self._controls = controls
        self._limits = limits
        self._recall_log = recall_log
        self.cooldown = erasure_cooldown
        self._clock = clock

    def erasure_wait(self, user_id: int) -> float:
        """Seconds before the user may erase again (`/memory clear`, `/facts forget`): 0 now.
        Each erasure rewrites the search index, so they are one per ERASURE_COOLDOWN_SECONDS."""
        return self.cooldown.wait(user_id)

    async def forget_fact(self, user_id: int, space_id: int, fact_id: int) -> int:
        """Delete one of the user's facts with its history; 0 when it is not theirs."""
        self.cooldown.used(user_id)
        return await self._storage.users.delete_fact(user_id, space_id, fact_id)

    async def clear_conversation(self, key: SessionKey) -> DeletedCounts:
        """Delete one conversation's messages and summary, and stop its background jobs.

        Does not wait for an answer in flight: the erasure fence discards it instead.
        """
        session = await self._storage.sessions.find(key.channel_id, key.user_id)
        if session is not None:
            await self._learning.stop_jobs([session.id])
        self._recall_log.forget_conversation(key.channel_id, key.user_id)
        self._learning.forget_vectors(key.user_id)
        self.cooldown.used(key.user_id)
        counts = await self._storage.users.clear_session(key.channel_id, key.user_id)
        self._turns.erase(lambda k: (k.user_id, k.channel_id) == (key.user_id, key.channel_id))
        await self._storage.recall.purge_deleted()
        return counts

    async def forget_user(self, user_id: int) -> DeletedCounts:
        """Delete everything of the user everywhere; nothing derived is written back after."""
        self.cooldown.used(user_id)
        await self._learning.stop_jobs(await self._storage.users.session_ids(user_id))
        self._recall_log.forget_user(user_id)
        self._learning.forget_vectors(user_id)
        counts = await self._storage.users.delete_user_data(user_id, now=self._clock())
        self._turns.erase(lambda k: k.user_id == user_id)
        await self._storage.recall.purge_deleted()
        return counts

    async def forget_member(self, user_id: int, guild_id: int) -> DeletedCounts:
        """Delete what the user said in one server (an admin's request), nothing elsewhere."""
        sessions = await self._storage.users.session_ids(user_id, guild_id=guild_id)
        await self._learning.stop_jobs(sessions)
        self._recall_log.forget_user(user_id)
        self._learning.forget_vectors(user_id)
        counts = await self._storage.users.delete_member_in_guild(user_id, guild_id)
        self._turns.erase(lambda k: (k.user_id, k.guild_id) == (user_id, guild_id))
        await self._storage.recall.purge_deleted()
        return counts

    async def message_edited(
        self,
        discord_id: int,
        new_content: str,
        *,
        user_id: int | None = None,
        admit: bool = False,
    ) -> bool:
        """The user edited a message: store the new text (or remember it for a message still
        waiting for its turn), and learn again from it: facts drawn from the old text are
        withdrawn and the new text is read for facts; a summary that held it is rebuilt.
        Re-learning is debounced per conversation (`Learning.relearn_after_edit`).

        An edit by `user_id` while their memory is paused is neither stored nor learned from:
        the message is withdrawn instead, as a deletion would (the old text, what was derived
        from it alone, and a summary that held it, rebuilt from what remains). With `admit`
        (an edit as it arrives from Discord), it counts against the user's per-minute rate
        like a new message, and past the rate it is dropped (False)."""
        if user_id is not None and await self._controls.is_paused(user_id):
            await self.message_deleted(discord_id)
            return True
        if admit and user_id is not None:
            refusal = await self._limits.check_rate(user_id)
            if refusal is not None:
                log.debug("Edit of message %s dropped: %s", discord_id, refusal.message)
                return False
        was_waiting = self._turns.waiting(discord_id)
        old = await self._storage.messages.user_text(discord_id)
        if old is not None:
            new_content = keep_descriptions(old, new_content)
        edit = await self._storage.messages.edit(
            discord_id, new_content, self._tokenizer.count(new_content)
        )
        if edit is None and self._turns.waiting(discord_id):
            self._turns.unstored.edited(discord_id, new_content)
            return True
        if edit is None and was_waiting:  # stored while we looked
            edit = await self._storage.messages.edit(
                discord_id, new_content, self._tokenizer.count(new_content)
            )
        if edit is None:
            return False
        if edit.changed:
            # Rebuilt or read again; work in flight on the old text lands nothing (revision).
            self._learning.relearn_after_edit(edit.session_id)
            self._learning.schedule_recall_purge()  # the old words must leave the index's pages
        return True

    async def message_deleted(self, discord_id: int) -> DeletedMessage | None:
        """The user deleted a message: delete it, the answers to it, and what was derived
        from it alone. One not stored (yet) is remembered, so that it is never answered if it
        is still waiting. None when nothing was stored; else where the deleted answers were
        shown in Discord (for the caller to delete there too)."""
        was_waiting = self._turns.waiting(discord_id)
        self._turns.delete(discord_id)
        deletion = await self._storage.messages.delete_by_discord_id(discord_id)
        if deletion is None and was_waiting and not self._turns.waiting(discord_id):
            deletion = await self._storage.messages.delete_by_discord_id(discord_id)
        if deletion is None:
            self._turns.unstored.deleted(discord_id)
            return None
        self._recall_log.forget_message(discord_id)
        self._learning.forget_vectors()
        self._learning.schedule_recall_purge()
        # Rebuilt from what remains; work in flight that read the message lands nothing.
        self._learning.relearn(deletion.session_id)
        return DeletedMessage(deletion.answers_shown_as)
