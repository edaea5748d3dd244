"""This process among the processes that share one database.

Background jobs are claimed with leases (a process that dies stops renewing them, and another
takes the work over once they expire); work done once for the whole fleet (retention, command
sync) is claimed for its period. On one process alone the same claims simply always succeed.
"""

from __future__ import annotations

import os
import secrets
import socket
import time
from collections.abc import Callable

from storage.fleet import FleetRepository

# Job kinds that call the model, and the work each claims: the idle timer's extraction and the
# scheduled one are the same work.
_LEASED_WORK = {"summary": "summary", "facts": "facts", "facts-idle": "facts"}


class Fleet:
    def __init__(
        self,
        repository: FleetRepository,
        *,
        lease_seconds: float,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._repository = repository
        self._lease_seconds = lease_seconds
        self._clock = clock
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"

    @property
    def renew_every(self) -> float:
        return self._lease_seconds / 3

    async def claim(self, kind: str, session_id: int) -> bool:
        work = _LEASED_WORK.get(kind)
        if work is None:
            return True  # bookkeeping jobs (scheduling checks) make no model call
        return await self._repository.claim_lease(
            f"{work}:{session_id}", self.owner, now=self._clock(), ttl=self._lease_seconds
        )

    async def release(self, kind: str, session_id: int) -> None:
        work = _LEASED_WORK.get(kind)
        if work is not None:
            await self._repository.release_lease(f"{work}:{session_id}", self.owner)

    async def claim_period(self, name: str, period: float) -> bool:
        """Claim work that the fleet does once per `period` (the lease is kept, not released,
        so no other process repeats it before the period is over)."""
        return await self._repository.claim_lease(
            f"once:{name}", self.owner, now=self._clock(), ttl=period
        )
