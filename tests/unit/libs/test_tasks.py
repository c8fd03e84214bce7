"""A shutdown's tasks end, or are named, within the bound: ``libs.tasks.stop_tasks``."""

from __future__ import annotations

import asyncio
import gc
import logging

import pytest

from libs.tasks import stop_tasks

log = logging.getLogger("test.tasks")


class DriverError(Exception):
    """What a client library raised in place of the cancellation it received."""


async def _swallows_one_cancellation(started: asyncio.Event, passes: list[int]) -> None:
    # A retrying loop over a call that turns its cancellation into another exception (logged, retried).
    while True:
        passes.append(1)
        started.set()
        try:
            try:
                await asyncio.sleep(60)
            except asyncio.CancelledError:
                if len(passes) == 1:
                    raise DriverError("connection invalidated") from None
                raise
        except DriverError:
            await asyncio.sleep(0.01)


async def test_a_task_that_swallowed_its_cancellation_is_cancelled_again_and_ends() -> None:
    started, passes = asyncio.Event(), []
    task = asyncio.create_task(_swallows_one_cancellation(started, passes), name="retrying-loop")
    await asyncio.wait_for(started.wait(), 5)
    left = await stop_tasks([task], timeout_s=5.0, log=log, recancel_s=0.05)
    assert left == set()
    assert task.cancelled()
    assert len(passes) == 2  # the first cancellation was swallowed, the second ended it


async def test_a_task_cancelled_once_only_would_run_on() -> None:
    # The fault the helper exists for: one cancel, and the loop carries on.
    started, passes = asyncio.Event(), []
    task = asyncio.create_task(_swallows_one_cancellation(started, passes))
    await asyncio.wait_for(started.wait(), 5)
    task.cancel()
    done, _ = await asyncio.wait([task], timeout=0.3)
    assert not done and len(passes) == 2
    await stop_tasks([task], timeout_s=5.0, log=log)
    assert task.cancelled()


async def test_a_task_that_never_ends_is_left_after_the_bound_and_named(caplog: pytest.LogCaptureFixture) -> None:
    release = asyncio.Event()

    async def stubborn() -> None:
        while not release.is_set():
            try:
                await asyncio.sleep(0.01)
            except asyncio.CancelledError:
                continue

    task = asyncio.create_task(stubborn(), name="stubborn-loop")
    await asyncio.sleep(0)
    with caplog.at_level(logging.ERROR, logger="test.tasks"):
        left = await asyncio.wait_for(stop_tasks([task], timeout_s=0.3, log=log, recancel_s=0.05), 5)
    assert left == {task} and not task.done()
    assert "stubborn-loop did not end within 0.3 s of its cancellation" in caplog.text
    release.set()
    await asyncio.wait_for(task, 5)


async def test_ended_tasks_are_taken_as_they_are_and_their_errors_retrieved() -> None:
    async def fails() -> None:
        raise DriverError("boom")

    async def returns() -> int:
        return 1

    failed, returned = asyncio.create_task(fails()), asyncio.create_task(returns())
    await asyncio.wait([failed, returned])
    reported: list[dict[str, object]] = []
    asyncio.get_running_loop().set_exception_handler(lambda _loop, context: reported.append(context))
    assert await stop_tasks([failed, returned], timeout_s=1.0, log=log) == set()
    assert failed.done() and not failed.cancelled() and returned.done()
    del failed, returned
    gc.collect()
    assert not reported  # no "Task exception was never retrieved"
