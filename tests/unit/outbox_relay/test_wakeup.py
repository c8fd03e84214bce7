"""The SQLite change watcher: what it tells the relay and what it tells its schedule."""

from __future__ import annotations

import asyncio
from typing import Any, cast

from services.outbox_relay.schedule import ChangeCheck
from services.outbox_relay.wakeup import Wakeup, watch_sqlite


class _File:
    """A store whose data_version is scripted; a nudge may come with a version (the writer's NATS
    message after its commit)."""

    def __init__(self, wakeup: Wakeup, versions: list[tuple[int | None, bool]]) -> None:
        self.wakeup = wakeup
        self.versions = versions
        self.done = asyncio.Event()

    def data_version(self) -> int | None:
        version, nudge = self.versions.pop(0)
        if nudge:
            self.wakeup.nudge()
        if not self.versions:
            self.done.set()  # the watcher records this look, then sleeps: the test stops it there
        return version


class _Recorded(ChangeCheck):
    def __post_init__(self) -> None:
        super().__post_init__()
        self.looks: list[tuple[bool, bool]] = []

    def looked(self, *, changed: bool, nudged: bool) -> float:
        self.looks.append((changed, nudged))
        return super().looked(changed=changed, nudged=nudged)


async def _watch(versions: list[tuple[int | None, bool]]) -> tuple[_Recorded, Wakeup, list[bool]]:
    wakeup = Wakeup()
    store = _File(wakeup, versions)
    check = _Recorded(shortest_s=0.001, longest_s=0.002)
    woken: list[bool] = []
    original = wakeup.set

    def set_and_count() -> None:
        woken.append(True)
        original()

    wakeup.set = set_and_count  # type: ignore[method-assign]
    task = asyncio.create_task(watch_sqlite(cast(Any, store), wakeup, check))
    try:
        await asyncio.wait_for(store.done.wait(), 5)
    finally:
        task.cancel()
    return check, wakeup, woken


async def test_a_commit_without_a_nudge_wakes_the_relay_and_keeps_the_watch_close() -> None:
    check, _, woken = await _watch([(1, False), (1, False), (2, False), (3, False)])
    # The first version is the baseline; then: nothing new, a commit, a commit.
    assert check.looks == [(False, False), (True, False), (True, False)]
    assert len(woken) == 2
    assert check.pause_s == 0.001


async def test_commits_the_nudges_announce_thin_the_watch_out() -> None:
    check, wakeup, _ = await _watch([(1, False), (2, True), (3, True)])
    assert check.looks == [(True, True), (True, True)]
    assert wakeup.nudges == 2
    assert check.pause_s == 0.002


async def test_an_unreadable_file_wakes_the_relay() -> None:
    check, _, woken = await _watch([(1, False), (None, False)])
    assert check.looks == [(True, False)]
    assert woken == [True]
