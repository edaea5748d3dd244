"""The model scheduler on its own: slots, reply priority, preemption, turns, the queue estimate."""

from __future__ import annotations

import asyncio

import pytest

from bot.model.scheduler import ModelScheduler, Overdue, Ticket


async def test_background_waits_for_a_running_reply_on_one_slot() -> None:
    scheduler = ModelScheduler(1)
    events: list[str] = []

    async def background_call() -> str:
        events.append("background")
        return "done"

    ticket = scheduler.enter(1)
    async with scheduler.reply(ticket):
        task = asyncio.create_task(scheduler.background(background_call))
        await asyncio.sleep(0.01)
        events.append("reply")
    scheduler.leave(ticket)
    assert await task == "done"
    assert events == ["reply", "background"]
    assert scheduler.idle()


async def test_a_reply_aborts_background_work_which_runs_again_later() -> None:
    scheduler = ModelScheduler(1)
    started = 0
    release = asyncio.Event()

    async def background_call() -> str:
        nonlocal started
        started += 1
        await release.wait()
        return f"attempt {started}"

    task = asyncio.create_task(scheduler.background(background_call))
    await asyncio.sleep(0.01)
    assert started == 1
    ticket = scheduler.enter(1)
    async with scheduler.reply(ticket):  # gets the slot: the background call is aborted
        assert scheduler.preemptions == 1
        await asyncio.sleep(0.01)
        assert started == 1  # not rerun while the reply holds the slot
    scheduler.leave(ticket)
    await asyncio.sleep(0.01)
    release.set()
    assert await task == "attempt 2"


async def test_a_cancelled_background_wait_leaves_nothing_behind() -> None:
    scheduler = ModelScheduler(1)
    ticket = scheduler.enter(1)
    async with scheduler.reply(ticket):
        task = asyncio.create_task(scheduler.background(lambda: asyncio.sleep(10)))
        await asyncio.sleep(0.01)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    scheduler.leave(ticket)
    assert scheduler.idle()


async def test_waiting_replies_take_turns_by_person() -> None:
    scheduler = ModelScheduler(1)
    order: list[str] = []
    first = scheduler.enter(0)

    async def reply(user: int, label: str) -> None:
        ticket = scheduler.enter(user)
        async with scheduler.reply(ticket):
            order.append(label)
        scheduler.leave(ticket)

    async with scheduler.reply(first):
        tasks = [asyncio.create_task(reply(1, f"a{n}")) for n in range(3)]
        await asyncio.sleep(0)
        tasks.append(asyncio.create_task(reply(2, "b0")))
        await asyncio.sleep(0.01)
    scheduler.leave(first)
    await asyncio.gather(*tasks)
    assert order == ["a0", "b0", "a1", "a2"]


async def test_expected_wait_counts_what_is_ahead_in_turns() -> None:
    scheduler = ModelScheduler(1)
    scheduler._note_latency(1.0)  # one reply takes a second
    assert scheduler.expected_wait(1) == 0.0  # the slot is free
    tickets = [scheduler.enter(1) for _ in range(4)]
    # Bob's first message is served after one of Alice's four: answered after two replies.
    assert scheduler.expected_wait(2) == 2.0
    # Alice's fifth waits behind her four: answered after five.
    assert scheduler.expected_wait(1) == 5.0
    assert ModelScheduler(2).expected_wait(1) == 0.0
    for ticket in tickets:
        scheduler.leave(ticket)


async def test_a_queued_reply_is_told_when_it_can_no_longer_be_answered_in_time() -> None:
    scheduler = ModelScheduler(1, deadline=3.0)
    running, queued = scheduler.enter(1), scheduler.enter(2)
    async with scheduler.reply(running):
        waiting = asyncio.create_task(_hold(scheduler, queued))
        await asyncio.sleep(0.01)
        scheduler._note_latency(1.0)  # quick replies: second in line is answered in time
        assert not queued.overdue
        scheduler._note_latency(10.0)  # replies got slow: it would wait far past 3 s
        assert queued.overdue
    with pytest.raises(Overdue):
        await waiting
    scheduler.leave(running)
    scheduler.leave(queued)
    assert scheduler.idle()


async def _hold(scheduler: ModelScheduler, ticket: Ticket) -> None:
    async with scheduler.reply(ticket):
        pass
