"""Coordination between bot processes that share one database: leases, login pacing, rates.

Every statement is a single atomic upsert, so it needs no lock held across processes and reads
the same on SQLite and PostgreSQL. Times are the callers' wall clocks (time.time()); processes of
one fleet are expected to share a reasonably synchronized clock (NTP).
"""

from __future__ import annotations

from storage.database import Database

# Discord allows one IDENTIFY per 5 s in a bucket, counted as it receives them. A claim's time is
# taken before the claim's round trip and the IDENTIFY it allows is sent after it, so two claims
# 5 s apart can reach Discord less than 5 s apart (seen: 4.9985 s, two processes starting
# together): claims are kept a second further apart.
IDENTIFY_INTERVAL_SECONDS = 5.0 + 1.0


class FleetRepository:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def claim_lease(self, name: str, owner: str, *, now: float, ttl: float) -> bool:
        """Take (or renew) the lease `name` for `ttl` seconds; False while another owner holds
        an unexpired one."""
        row = await self._db.write_one(
            "INSERT INTO leases (name, owner, expires_at) VALUES (?, ?, ?)"
            " ON CONFLICT (name) DO UPDATE SET owner = excluded.owner,"
            " expires_at = excluded.expires_at"
            " WHERE leases.expires_at < ? OR leases.owner = excluded.owner"
            " RETURNING owner",
            (name, owner, now + ttl, now),
        )
        return row is not None

    async def release_lease(self, name: str, owner: str) -> None:
        await self._db.write_one("DELETE FROM leases WHERE name = ? AND owner = ?", (name, owner))

    async def lease_holder(self, name: str, *, now: float) -> str | None:
        row = await self._db.fetch_one(
            "SELECT owner FROM leases WHERE name = ? AND expires_at >= ?", (name, now)
        )
        return str(row[0]) if row else None

    async def claim_identify(self, bucket: int, *, now: float) -> float:
        """Claim the right to IDENTIFY in `bucket` now. Returns 0 when claimed, else how many
        seconds to wait before asking again."""
        row = await self._db.write_one(
            "INSERT INTO identify_buckets (bucket, last_at) VALUES (?, ?)"
            " ON CONFLICT (bucket) DO UPDATE SET last_at = excluded.last_at"
            " WHERE identify_buckets.last_at <= ?"
            " RETURNING last_at",
            (bucket, now, now - IDENTIFY_INTERVAL_SECONDS),
        )
        if row is not None:
            return 0.0
        last = await self._db.fetch_one(
            "SELECT last_at FROM identify_buckets WHERE bucket = ?", (bucket,)
        )
        last_at = float(last[0]) if last else now
        return max(last_at + IDENTIFY_INTERVAL_SECONDS - now, 0.05)

    async def count_message(self, user_id: int, *, window_start: float) -> int:
        """Count one message of the user in the window starting at `window_start`; returns the
        user's count in that window, this message included (a new window starts at 1)."""
        row = await self._db.write_one(
            "INSERT INTO rate_windows (user_id, window_start, count) VALUES (?, ?, 1)"
            " ON CONFLICT (user_id) DO UPDATE SET"
            " count = CASE WHEN rate_windows.window_start = excluded.window_start"
            " THEN rate_windows.count + 1 ELSE 1 END,"
            " window_start = excluded.window_start"
            " RETURNING count",
            (user_id, window_start),
        )
        assert row is not None
        return int(row[0])
