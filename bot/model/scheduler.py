"""Who may use the model server now: replies first, background work only when it is free.

A local server often runs one request at a time. If a background summary holds its only slot, a
reply waits for it; and some servers (llama-cpp-python's, by default) interrupt the running
request when a new one arrives, so a background call sent during a reply would cut the reply.
The scheduler therefore never sends more requests at once than the server's parallelism
(MODEL_PARALLEL), and gives every slot to a waiting reply before any background call:

- a reply takes a free slot, or waits; replies waiting are served round-robin by user, so one
  user's burst never starves the others;
- a background call starts only when no reply waits and, on a one-slot server, none runs;
- a reply that finds every slot taken while background calls run aborts the newest of them
  (closing its HTTP request frees the server); the aborted call waits and runs again later,
  so background work still completes once the bot is quiet.

It also estimates how long a reply would wait, from recent reply latencies, so the engine
queues what can be answered within the reply deadline and refuses only beyond it. Until a
reply has been timed the estimate is optimistic; each timed reply updates it, and a queued
reply that can no longer be answered in time is then told so (`Overdue`) instead of waiting.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter, OrderedDict, deque
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import TypeVar

T = TypeVar("T")

LATENCY_WEIGHT = 0.3  # weight of the newest reply in the moving average


class Overdue(Exception):
    """A queued reply can no longer be answered within the reply deadline."""


@dataclass(eq=False, slots=True)
class Ticket:
    """One admitted reply, from admission until it is done."""

    user_id: int
    admitted_at: float
    started: bool = False
    overdue: bool = False
    waiter: asyncio.Future[None] | None = None


@dataclass(eq=False, slots=True)
class _Background:
    task: asyncio.Task[object]
    preempted: bool = False


class ModelScheduler:
    def __init__(self, parallel: int, deadline: float = float("inf")) -> None:
        self.parallel = max(parallel, 1)
        self.deadline = deadline
        self._replies_running = 0
        self._reply_waiters: OrderedDict[int, deque[asyncio.Future[None]]] = OrderedDict()
        self._background: list[_Background] = []
        self._background_starting = 0
        self._background_waiters: deque[asyncio.Future[None]] = deque()
        self._tickets: list[Ticket] = []  # admitted and not done, oldest first
        self._reply_seconds: float | None = None
        self.preemptions = 0

    # -- admission ---------------------------------------------------------------------------

    @property
    def reply_seconds(self) -> float:
        """The recent time one reply holds a slot (a moving average; 0 until one is timed)."""
        return self._reply_seconds or 0.0

    def expected_wait(self, user_id: int) -> float:
        """Seconds until a new reply of `user_id` would be answered, queued behind the others
        (0 when a slot is free for it: then only its own generation time is left)."""
        return self._answered_after(self._ahead(user_id, self._waiting_of(user_id)))

    def enter(self, user_id: int) -> Ticket:
        """A reply of `user_id` was admitted; `leave` when it is done."""
        ticket = Ticket(user_id, time.monotonic())
        self._tickets.append(ticket)
        return ticket

    def leave(self, ticket: Ticket) -> None:
        self._tickets.remove(ticket)

    def _waiting_of(self, user_id: int) -> int:
        return sum(1 for t in self._tickets if t.user_id == user_id and self._queued(t))

    @staticmethod
    def _queued(ticket: Ticket) -> bool:
        return not ticket.started and not ticket.overdue

    def _turns(self) -> dict[int, list[float]]:
        """Each user's queued replies, by admission time, oldest first."""
        turns: dict[int, list[float]] = {}
        for ticket in self._tickets:
            if self._queued(ticket):
                turns.setdefault(ticket.user_id, []).append(ticket.admitted_at)
        return turns

    def _ahead(
        self,
        user_id: int,
        index: int,
        admitted_at: float = float("inf"),
        turns: dict[int, list[float]] | None = None,
    ) -> int:
        """Replies served before the `index`-th queued reply of `user_id` (admitted at
        `admitted_at`): the running ones, and, users taking turns, every other user's queued
        replies of an earlier turn, and of the same turn when admitted earlier."""
        others = 0
        for user, times in (self._turns() if turns is None else turns).items():
            if user == user_id:
                continue
            others += min(len(times), index)
            if len(times) > index and times[index] < admitted_at:
                others += 1
        return self._replies_running + index + others

    def _answered_after(self, ahead: int) -> float:
        if ahead < self.parallel:
            return 0.0
        return (ahead // self.parallel + 1) * self.reply_seconds

    def _prune(self) -> None:
        """Tell queued replies that can no longer be answered in time (the estimate changed)."""
        now = time.monotonic()
        if not self._any_overdue_possible(now):
            return
        turns = self._turns()
        seen: Counter[int] = Counter()
        for ticket in [t for t in self._tickets if self._queued(t)]:
            index = seen[ticket.user_id]
            seen[ticket.user_id] += 1
            ahead = self._ahead(ticket.user_id, index, ticket.admitted_at, turns)
            if ahead < self.parallel:
                continue
            if now - ticket.admitted_at + self._answered_after(ahead) > self.deadline:
                ticket.overdue = True
                if ticket.waiter is not None and not ticket.waiter.done():
                    ticket.waiter.set_exception(Overdue())
                    self._forget_reply_waiter(ticket)

    def _any_overdue_possible(self, now: float) -> bool:
        """False when even the oldest queued reply, served last, would be answered in time.

        `_prune` runs after every reply; its exact pass costs queue length x users. This
        bound is one pass, and under a normal load it ends the check there."""
        queued = [t.admitted_at for t in self._tickets if self._queued(t)]
        if not queued:
            return False
        last_place = self._replies_running + len(queued) - 1
        return now - min(queued) + self._answered_after(last_place) > self.deadline

    # -- replies -----------------------------------------------------------------------------

    @asynccontextmanager
    async def reply(self, ticket: Ticket) -> AsyncIterator[None]:
        """Hold one of the server's slots for a reply (waiting for one, replies first).

        Raises Overdue, before the slot, when the reply can no longer be answered in time.
        """
        if ticket.overdue:
            raise Overdue()
        if self._free_slots() > 0 and not self._reply_waiters:
            self._replies_running += 1
        else:
            waiter = asyncio.get_running_loop().create_future()
            ticket.waiter = waiter
            self._reply_waiters.setdefault(ticket.user_id, deque()).append(waiter)
            self._preempt_background()
            try:
                await waiter
            except asyncio.CancelledError:
                self._forget_reply_waiter(ticket)
                raise
            finally:
                ticket.waiter = None
        ticket.started = True
        started = time.monotonic()
        try:
            yield
        finally:
            self._replies_running -= 1
            self._note_latency(time.monotonic() - started)
            self._dispatch()

    def _forget_reply_waiter(self, ticket: Ticket) -> None:
        waiter = ticket.waiter
        if waiter is None:
            return
        if waiter.done() and not waiter.cancelled() and waiter.exception() is None:
            # The slot was handed over just as the wait was cancelled: pass it on.
            self._replies_running -= 1
            self._dispatch()
            return
        queue = self._reply_waiters.get(ticket.user_id)
        if queue is not None and waiter in queue:
            queue.remove(waiter)
            if not queue:
                del self._reply_waiters[ticket.user_id]

    def _note_latency(self, seconds: float) -> None:
        if self._reply_seconds is None:
            self._reply_seconds = seconds
        else:
            self._reply_seconds += LATENCY_WEIGHT * (seconds - self._reply_seconds)
        self._prune()

    # -- background --------------------------------------------------------------------------

    async def background(self, call: Callable[[], Awaitable[T]]) -> T:
        """Run `call` when the server is free; if a reply needs the slot, abort and rerun it.

        `call` must be safe to run again (a model request is).
        """
        while True:
            await self._wait_background_slot()
            entry = _Background(asyncio.ensure_future(call()))
            self._background_starting -= 1
            self._background.append(entry)
            try:
                return await entry.task  # type: ignore[return-value]
            except asyncio.CancelledError:
                current = asyncio.current_task()
                if not entry.preempted or (current is not None and current.cancelling()):
                    raise
            finally:
                self._background.remove(entry)
                self._dispatch()

    async def _wait_background_slot(self) -> None:
        if self._may_start_background():
            self._background_starting += 1
            return
        waiter = asyncio.get_running_loop().create_future()
        self._background_waiters.append(waiter)
        try:
            await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                self._background_starting -= 1
                self._dispatch()
            elif waiter in self._background_waiters:
                self._background_waiters.remove(waiter)
            raise

    def _may_start_background(self) -> bool:
        if self._reply_waiters or self._free_slots() <= 0:
            return False
        # On a one-slot server a background call never runs beside a reply: some servers
        # would interrupt the reply, the others make it wait. With more slots, one stays free.
        in_use = self._background_count()
        return self._replies_running == 0 if self.parallel == 1 else in_use < self.parallel - 1

    def _preempt_background(self) -> None:
        """Abort the newest background call when a waiting reply finds no free slot."""
        if self._free_slots() > 0:
            return
        for entry in reversed(self._background):
            if not entry.preempted:
                entry.preempted = True
                entry.task.cancel()
                self.preemptions += 1
                return

    # -- slots -------------------------------------------------------------------------------

    def set_parallel(self, parallel: int) -> None:
        """A new limit (MODEL_PARALLEL, or learned): waiting calls take the slots it adds;
        calls running beyond a lower one finish, and no new one starts until it is under."""
        self.parallel = max(parallel, 1)
        self._dispatch()

    @property
    def running(self) -> int:
        """Model calls holding a slot now."""
        return self._replies_running + self._background_count()

    @property
    def replies_waiting(self) -> bool:
        return bool(self._reply_waiters)

    def _background_count(self) -> int:
        return len(self._background) + self._background_starting

    def _free_slots(self) -> int:
        return self.parallel - self._replies_running - self._background_count()

    def _dispatch(self) -> None:
        """Hand free slots to waiting replies (round-robin by user), then to background."""
        while self._free_slots() > 0 and self._reply_waiters:
            user_id, queue = next(iter(self._reply_waiters.items()))
            waiter = queue.popleft()
            if queue:
                self._reply_waiters.move_to_end(user_id)
            else:
                del self._reply_waiters[user_id]
            if not waiter.done():
                self._replies_running += 1
                waiter.set_result(None)
        while self._background_waiters and self._may_start_background():
            waiter = self._background_waiters.popleft()
            if not waiter.done():
                self._background_starting += 1
                waiter.set_result(None)

    def idle(self) -> bool:
        """True when no model call runs or waits."""
        return (
            self._replies_running == 0
            and not self._reply_waiters
            and not self._background_count()
            and not self._background_waiters
        )
