"""Stopping a service's background tasks: cancelled until they end, and never waited on for ever.

A shutdown that cancels its tasks once and then awaits them hangs when one of them does not end: a
driver or client library that turns the cancellation into another exception (asyncpg's invalidated
connection surfaced as SQLAlchemy's ``PendingRollbackError``; nats-py retrying a connect catches every
``Exception`` of a failed attempt; Python 3.11's ``asyncio.wait_for`` answers a cancel that arrives as
its inner call fails with that call's error), and a loop around it that logs the exception and carries
on. :func:`stop_tasks` cancels again at every ``recancel_s`` (as AnyIO's cancel scopes deliver a
cancellation at every ``await`` until the task leaves the scope), so such a task ends at its next
``await``, and gives up after ``timeout_s``, naming each task left running in the log.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from typing import Any

__all__ = ["RECANCEL_S", "STOP_TIMEOUT_S", "stop_tasks"]

RECANCEL_S = 0.5
"""Seconds between two cancellations of a task that has not ended."""
STOP_TIMEOUT_S = 10.0
"""The longest a service's shutdown waits for its cancelled tasks, unless it says otherwise."""


async def stop_tasks(
    tasks: Iterable[asyncio.Task[Any]],
    *,
    log: logging.Logger,
    timeout_s: float = STOP_TIMEOUT_S,
    recancel_s: float = RECANCEL_S,
) -> set[asyncio.Task[Any]]:
    """Cancel ``tasks`` (again every ``recancel_s`` seconds while any runs) and wait for them, at most
    ``timeout_s`` seconds in all.

    Returns the tasks still running then (empty when all ended), each logged at ERROR with its name.
    What the tasks that ended raised is retrieved and not raised here (a task logs its own failures), so
    asyncio reports no "exception was never retrieved" for them. Tasks already done are taken as they
    are. Cancelling the caller cancels the wait, not the tasks' cancellation."""
    tasks = list(tasks)
    running = {task for task in tasks if not task.done()}
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while running:
        for task in running:
            task.cancel()
        left = deadline - loop.time()
        if left <= 0:
            break
        _, running = await asyncio.wait(running, timeout=min(recancel_s, left))
    for task in tasks:
        if task in running:
            log.error("%s did not end within %.1f s of its cancellation", task.get_name(), timeout_s)
        elif not task.cancelled():
            task.exception()
    return running
