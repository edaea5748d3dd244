"""The gateway: the websocket, IDENTIFY and RESUME, sessions per shard, dispatching events (by
intent), and the drops, invalidations and closes a test provokes."""

from __future__ import annotations

import json
import secrets
import time
from dataclasses import dataclass, field
from typing import Any, Literal

from aiohttp import WSMsgType, web

from tests.fakes.discord.protocol import (
    INTENT_GUILDS,
    INTENT_MESSAGE_CONTENT,
    JSON,
    OP_DISPATCH,
    OP_HEARTBEAT,
    OP_HEARTBEAT_ACK,
    OP_HELLO,
    OP_IDENTIFY,
    OP_INVALID_SESSION,
    OP_RECONNECT,
    OP_REQUEST_MEMBERS,
    OP_RESUME,
    SESSION_ENDING_CLOSE_CODES,
    _guild_id_of,
)

ReplayMode = Literal["unacked", "missed", "none"]


@dataclass(eq=False)
class _Connection:
    ws: web.WebSocketResponse
    request: web.Request
    closed_by_server: bool = False

    async def send(self, payload: JSON) -> bool:
        try:
            await self.ws.send_str(json.dumps(payload))
        except (ConnectionError, RuntimeError):
            return False
        return True


@dataclass(eq=False)
class _Session:
    id: str
    intents: int
    shard: list[int] | None
    seq: int = 0
    log: list[tuple[int, str, JSON]] = field(default_factory=list)
    acked_seq: int | None = None
    conn: _Connection | None = None
    replay: ReplayMode = "unacked"


class Gateway:
    """The gateway websocket, its sessions, and the events sent over it."""

    async def _handle_gateway(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(max_msg_size=0)
        await ws.prepare(request)
        conn = _Connection(ws, request)
        self._connections.add(conn)
        self.gateway_urls.append(str(request.rel_url))
        try:
            hello = {"heartbeat_interval": self.heartbeat_interval_ms, "_trace": ["fake"]}
            await conn.send({"op": OP_HELLO, "d": hello, "s": None, "t": None})
            async for msg in ws:
                if msg.type is WSMsgType.TEXT:
                    await self._on_gateway_message(conn, json.loads(msg.data))
        finally:
            self._connections.discard(conn)
            self._on_connection_lost(conn)
        return ws

    def _session_of(self, conn: _Connection) -> tuple[int, _Session] | None:
        for shard, session in self._sessions.items():
            if session.conn is conn:
                return shard, session
        return None

    def _on_connection_lost(self, conn: _Connection) -> None:
        found = self._session_of(conn)
        if found is None:
            return
        shard, session = found
        session.conn = None
        if not conn.closed_by_server and conn.ws.close_code in (1000, 1001):
            del self._sessions[shard]  # a clean close by the client ends the session
        self._notify()

    async def _on_gateway_message(self, conn: _Connection, msg: JSON) -> None:
        self.gateway_received.append(msg)
        op, raw = msg.get("op"), msg.get("d")
        data: JSON = raw if isinstance(raw, dict) else {}
        if op == OP_HEARTBEAT:
            if (found := self._session_of(conn)) is not None:
                found[1].acked_seq = raw if isinstance(raw, int) else None
            await conn.send({"op": OP_HEARTBEAT_ACK, "d": None, "s": None, "t": None})
        elif op == OP_IDENTIFY:
            await self._on_identify(conn, data)
        elif op == OP_RESUME:
            await self._on_resume(conn, data)
        elif op == OP_REQUEST_MEMBERS:
            await self._on_request_members(data)

    async def _on_identify(self, conn: _Connection, data: JSON) -> None:
        shard_id, refusal = self._identify_shard(data.get("shard"))
        if refusal is not None:
            conn.closed_by_server = True
            await conn.ws.close(code=refusal[0], message=refusal[1].encode())
            return
        async with self._gateway_lock:
            self._record_identify(shard_id)
            self.identify_payloads.append(data)
            session = _Session(
                secrets.token_hex(16), int(data.get("intents", 0)), data.get("shard")
            )
            session.conn = conn
            self._sessions[shard_id] = session
            await self._send_dispatch(session, "READY", self._ready_payload(session), log=False)
            if session.intents & INTENT_GUILDS:
                for guild_id in self._guilds_of(shard_id):
                    payload = self._guild_create_payload(guild_id)
                    await self._send_dispatch(session, "GUILD_CREATE", payload, log=False)
        self._notify()

    def _identify_shard(self, shard: Any) -> tuple[int, tuple[int, str] | None]:
        """The shard an IDENTIFY asks for, or the close code Discord would answer with."""
        if shard is None:
            if self.shard_count > 1:
                return 0, (4011, "Sharding required.")
            return 0, None
        shard_id, count = int(shard[0]), int(shard[1])
        if count != self.shard_count or not 0 <= shard_id < count:
            return 0, (4010, "Invalid shard.")
        return shard_id, None

    def _record_identify(self, shard_id: int) -> None:
        now = time.monotonic()
        bucket = shard_id % self.max_concurrency
        earlier = [t for t, s in self.identify_times if s % self.max_concurrency == bucket]
        if earlier and now - earlier[-1] < 5.0:
            self.pacing_violations.append((shard_id, now - earlier[-1]))
        self.identify_times.append((now, shard_id))
        self.identify_count += 1

    def _guilds_of(self, shard_id: int) -> list[int]:
        return [gid for gid in self._guilds if self.shard_of(gid) == shard_id]

    def _ready_payload(self, session: _Session) -> JSON:
        ready: JSON = {
            "v": 10,
            "user": self._bot_user_payload(),
            "guilds": [
                {"id": str(gid), "unavailable": True}
                for gid in self._guilds_of(session.shard[0] if session.shard else 0)
            ],
            "session_id": session.id,
            "session_type": "normal",
            "resume_gateway_url": self.resume_gateway_url,
            "application": {"id": str(self.APPLICATION_ID), "flags": (1 << 19) | (1 << 15)},
            "private_channels": [],
            "relationships": [],
            "presences": [],
            "user_settings": {},
            "_trace": ["fake-discord"],
        }
        if session.shard is not None:
            ready["shard"] = session.shard
        return ready

    async def _on_resume(self, conn: _Connection, data: JSON) -> None:
        async with self._gateway_lock:
            session = next(
                (s for s in self._sessions.values() if s.id == data.get("session_id")), None
            )
            if session is None:
                await conn.send({"op": OP_INVALID_SESSION, "d": False, "s": None, "t": None})
                return
            self.resume_count += 1
            session.conn = conn
            for seq, event, payload in self._replayed(session, data.get("seq")):
                await conn.send({"op": OP_DISPATCH, "t": event, "s": seq, "d": payload})
            await self._send_dispatch(session, "RESUMED", {"_trace": ["fake-discord"]}, log=False)
        self._notify()

    @staticmethod
    def _replayed(session: _Session, resume_seq: int | None) -> list[tuple[int, str, JSON]]:
        if session.replay == "none":
            return []
        since = session.acked_seq if session.replay == "unacked" else resume_seq
        return [entry for entry in session.log if entry[0] > (since or 0)]

    async def _on_request_members(self, data: JSON) -> None:
        guild_id = int(data["guild_id"])
        wanted = {int(u) for u in data.get("user_ids") or []}
        query = (data.get("query") or "").lower()
        if wanted:
            users = [u for u in self.users.values() if u.id in wanted]
        else:
            users = [u for u in self.users.values() if u.username.lower().startswith(query)]
        chunk = {
            "guild_id": str(guild_id),
            "members": [self._member_payload(guild_id, u) for u in users],
            "chunk_index": 0,
            "chunk_count": 1,
            "not_found": [],
            "nonce": data.get("nonce"),
        }
        await self._dispatch("GUILD_MEMBERS_CHUNK", chunk, log=False)

    async def _send_dispatch(self, session: _Session, event: str, data: JSON, *, log: bool) -> None:
        session.seq += 1
        if log:
            session.log.append((session.seq, event, data))
        self.dispatched.append((event, data))
        if session.conn is not None:
            frame = {"op": OP_DISPATCH, "t": event, "s": session.seq, "d": data}
            await session.conn.send(frame)

    async def _dispatch(self, event: str, data: JSON, *, intent: int = 0, log: bool = True) -> None:
        """Send an event to the bot's session (or queue it for a resume, or lose it)."""
        async with self._gateway_lock:
            session = self._sessions.get(self.shard_of(_guild_id_of(data)))
            if session is None:
                self.lost_dispatches.append((event, data))
                return
            if intent and not session.intents & intent:
                return
            if event in ("MESSAGE_CREATE", "MESSAGE_UPDATE"):
                data = self._as_seen_by_bot(session, data)
            await self._send_dispatch(session, event, data, log=log)

    def _as_seen_by_bot(self, session: _Session, message: JSON) -> JSON:
        """Without the MESSAGE_CONTENT intent, guild messages that neither mention the bot nor
        come from it arrive with their content, embeds, attachments and components empty."""
        if session.intents & INTENT_MESSAGE_CONTENT or "guild_id" not in message:
            return message
        if message["author"]["id"] == str(self.BOT_USER_ID):
            return message
        if any(m["id"] == str(self.BOT_USER_ID) for m in message.get("mentions", [])):
            return message
        return {**message, "content": "", "embeds": [], "attachments": [], "components": []}

    async def drop_connection(
        self,
        *,
        replay: ReplayMode = "unacked",
        wait: bool = True,
        timeout: float = 5.0,  # noqa: ASYNC109
        shard: int = 0,
    ) -> None:
        """Cut the websocket abruptly; discord.py reconnects and RESUMEs.

        On resume the fake replays, before RESUMED: with ``"unacked"`` every event after the
        sequence number of the bot's last heartbeat (so events the bot already handled come
        again, as on Discord after a short drop), with ``"missed"`` only those after the resume
        sequence, with ``"none"`` nothing. ``wait`` waits for the resumed session.
        """
        session = self._require_session(shard)
        conn = session.conn
        assert conn is not None, "no live gateway connection"
        session.replay = replay
        conn.closed_by_server = True
        transport = conn.request.transport
        if transport is not None:
            transport.abort()
        else:
            await conn.ws.close(code=4000)
        if wait:
            await self.wait_for(
                lambda: True if self._live(shard) and self._connection(shard) is not conn else None,
                timeout,
                "the bot to reconnect",
            )

    async def invalidate_session(self, *, resumable: bool = False) -> None:
        """Send op 9 INVALID_SESSION. With ``resumable=False`` the session ends and events sent
        before the bot identifies again are lost; discord.py's default ``before_identify_hook``
        sleeps 5 s before that new IDENTIFY."""
        session = self._require_session()
        conn = session.conn
        if not resumable:
            del self._sessions[0]
            self._notify()
        if conn is not None:
            conn.closed_by_server = True
            await conn.send({"op": OP_INVALID_SESSION, "d": resumable, "s": None, "t": None})

    async def request_reconnect(self) -> None:
        """Send op 7 RECONNECT: discord.py closes the socket and resumes."""
        session = self._require_session()
        if session.conn is not None:
            session.replay = "missed"
            session.conn.closed_by_server = True
            await session.conn.send({"op": OP_RECONNECT, "d": None, "s": None, "t": None})

    async def close_gateway(self, code: int, reason: str = "") -> None:
        """Close the websocket with ``code``. 4004, 4007, 4009 and 4010-4014 also end the session
        (discord.py gives up on 4004 and 4010-4014, raising; it reconnects on the others)."""
        session = self._require_session()
        conn = session.conn
        if code in SESSION_ENDING_CLOSE_CODES:
            del self._sessions[0]
            self._notify()
        if conn is not None:
            conn.closed_by_server = True
            await conn.ws.close(code=code, message=reason.encode())

    def _require_session(self, shard: int = 0) -> _Session:
        session = self._sessions.get(shard)
        assert session is not None, f"the bot has no gateway session on shard {shard}"
        return session
