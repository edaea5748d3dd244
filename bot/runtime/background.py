"""Background jobs: coalesced per (kind, session), under a global cap, retried with backoff.

A job reads its input from the database and writes its result with a compare-and-set on a
watermark, so running one again is always safe; coalescing only saves calls. Scheduling a job
that is already running marks it to run once more when it finishes. Where several processes share
the database, each attempt first claims a lease on its work (see `JobLeases`), so two processes
never make the same model call; a process that dies leaves a lease that expires.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Protocol

from storage.errors import RetryableStorageError

log = logging.getLogger(__name__)

Job = Callable[[], Awaitable[None]]
JobKey = tuple[str, int]


class JobLeases(Protocol):
    """Claims the right to run a job's work, fleet-wide."""

    async def claim(self, kind: str, session_id: int) -> bool: ...

    async def release(self, kind: str, session_id: int) -> None: ...

    @property
    def renew_every(self) -> float:
        """How often a running job renews its claim (claiming again renews it)."""
        ...


class _NoLeases:
    """One process alone: every claim succeeds."""

    renew_every = 3600.0

    async def claim(self, kind: str, session_id: int) -> bool:
        return True

    async def release(self, kind: str, session_id: int) -> None:
        return None


class RetryableJobError(Exception):
    """A job failed in a way worth retrying later (the LLM failed, bad JSON)."""


class BackgroundJobs:
    def __init__(
        self,
        concurrency: int,
        *,
        retry_delays: Sequence[float] = (2.0, 10.0, 30.0),
        leases: JobLeases | None = None,
    ) -> None:
        self._slots = asyncio.Semaphore(concurrency)
        self._leases = leases or _NoLeases()
        self._retry_delays = tuple(retry_delays)
        self._tasks: dict[JobKey, asyncio.Task[None]] = {}
        self._again: dict[JobKey, Job] = {}
        self._timers: dict[JobKey, asyncio.TimerHandle] = {}
        self._closed = False
        self.completed = 0
        self.failed = 0

    def schedule(self, kind: str, session_id: int, job: Job) -> None:
        """Run `job` now, or once more after the running one of the same key."""
        if self._closed:
            return
        key = (kind, session_id)
        if key in self._tasks:
            self._again[key] = job
            return
        task = asyncio.create_task(self._run(key, job), name=f"mnemo-{kind}-{session_id}")
        self._tasks[key] = task

    def schedule_later(self, kind: str, session_id: int, delay: float, job: Job) -> None:
        """Run `job` after `delay` seconds; scheduling again restarts the timer."""
        if self._closed:
            return
        key = (kind, session_id)
        if (timer := self._timers.pop(key, None)) is not None:
            timer.cancel()
        loop = asyncio.get_running_loop()
        self._timers[key] = loop.call_later(delay, self._fire_timer, key, job)

    def cancel_session(self, session_id: int) -> list[asyncio.Task[None]]:
        """Stop every pending or running job of a session (its data is being deleted)."""
        cancelled = []
        for key in [key for key in self._timers if key[1] == session_id]:
            self._timers.pop(key).cancel()
        for key in [key for key in self._tasks if key[1] == session_id]:
            self._again.pop(key, None)
            task = self._tasks[key]
            task.cancel()
            cancelled.append(task)
        return cancelled

    def pending(self) -> int:
        return len(self._tasks) + len(self._timers)

    async def idle(self) -> None:
        """Wait until no job is running (timers not yet due are not waited for)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks.values()), return_exceptions=True)

    async def close(self, grace: float = 3.0) -> None:
        """Stop scheduling; give running jobs `grace` seconds, then cancel them.

        A cancelled job writes nothing: its result lands in one transaction or not at all.
        """
        self._closed = True
        for timer in self._timers.values():
            timer.cancel()
        self._timers.clear()
        self._again.clear()
        tasks = list(self._tasks.values())
        if not tasks:
            return
        _, still_running = await asyncio.wait(tasks, timeout=grace)
        for task in still_running:
            task.cancel()
        await asyncio.gather(*still_running, return_exceptions=True)

    async def _run_leased(self, key: JobKey, job: Job) -> bool:
        """Run `job` under its lease; False when another process holds it (that process
        does the work, and a sweep reschedules it if that process dies)."""
        kind, session_id = key
        if not await self._leases.claim(kind, session_id):
            log.debug("%s job for session %s runs elsewhere", kind, session_id)
            return False
        renewer = asyncio.create_task(self._keep_lease(kind, session_id))
        try:
            await job()
        finally:
            renewer.cancel()
            await asyncio.gather(renewer, return_exceptions=True)
            await self._leases.release(kind, session_id)
        return True

    async def _keep_lease(self, kind: str, session_id: int) -> None:
        """Renew the claim while the job runs (it may wait for the model a long time)."""
        while True:
            await asyncio.sleep(self._leases.renew_every)
            try:
                await self._leases.claim(kind, session_id)
            except Exception as error:  # the lease then expires; the work's result is CAS-safe
                log.warning(
                    "Could not renew the %s lease of session %s: %s", kind, session_id, error
                )

    def _fire_timer(self, key: JobKey, job: Job) -> None:
        self._timers.pop(key, None)
        self.schedule(key[0], key[1], job)

    async def _run(self, key: JobKey, job: Job) -> None:
        try:
            while True:
                await self._attempts(key, job)
                next_job = self._again.pop(key, None)
                if next_job is None or self._closed:
                    return
                job = next_job
        finally:
            self._tasks.pop(key, None)

    async def _attempts(self, key: JobKey, job: Job) -> None:
        for attempt, delay in enumerate((*self._retry_delays, None), start=1):
            try:
                async with self._slots:
                    if not await self._run_leased(key, job):
                        return
                self.completed += 1
                return
            except (RetryableJobError, RetryableStorageError) as error:
                # The model failed, or the database was locked, full or unreachable: worth
                # another try.
                if delay is None:
                    self.failed += 1
                    log.warning("%s job for session %s gave up: %s", key[0], key[1], error)
                    return
                log.info(
                    "%s job for session %s failed (attempt %d: %s); retrying in %.0f s",
                    key[0],
                    key[1],
                    attempt,
                    error,
                    delay,
                )
                await asyncio.sleep(delay)
            except Exception:
                self.failed += 1
                log.exception("%s job for session %s failed", key[0], key[1])
                return
