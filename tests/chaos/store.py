"""Read-only looks into the services' SQLite files, in this process or inside their mount namespace.

SQLite resolves symbolic links in a database path itself, so ``/proc/<pid>/root/...`` does not reach a
file in another mount namespace; there the query runs as ``python tests/chaos/store.py`` under
``nsenter`` and answers in JSON. Only the standard library here: each such call starts a fresh interpreter.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

OUTBOX_TABLE = "outbox"
"""libs.outbox.OUTBOX_TABLE (not imported: this module stays light for the calls through ``nsenter``)."""

__all__ = ["StoreReader"]


def _open(path: str) -> sqlite3.Connection:
    return sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10)


def outbox_mark(path: str) -> int:
    """The highest unpublished row of a SQLite outbox (0 when none, or no file or table yet)."""
    if not Path(path).exists():
        return 0
    with contextlib.closing(_open(path)) as db:
        try:
            row = db.execute(f"SELECT max(id) FROM {OUTBOX_TABLE} WHERE published_at IS NULL").fetchone()
        except sqlite3.OperationalError:
            return 0
    return int(row[0] or 0)


def outbox_waiting(path: str, mark: int) -> int:
    """Rows up to ``mark`` still unpublished."""
    if mark == 0 or not Path(path).exists():
        return 0
    with contextlib.closing(_open(path)) as db:
        row = db.execute(f"SELECT count(*) FROM {OUTBOX_TABLE} WHERE published_at IS NULL AND id <= ?", (mark,))
        return int(row.fetchone()[0])


def inventory_history(path: str) -> dict[str, Any]:
    """Inbox msg ids, ledger movements (source, sku, kind, qty, reservation), events still parked."""
    with contextlib.closing(_open(path)) as db:
        return {
            "inbox": [row[0] for row in db.execute("SELECT msg_id FROM inbox")],
            "ledger": [list(row) for row in db.execute("SELECT source, sku, kind, qty, reservation FROM ledger")],
            "parked": int(db.execute("SELECT count(*) FROM parked WHERE dead_lettering = 0").fetchone()[0]),
        }


_QUERIES = {"outbox_mark": outbox_mark, "outbox_waiting": outbox_waiting, "inventory_history": inventory_history}


class StoreReader:
    """Runs the queries above on ``<data_dir>/<file>``, through ``launcher`` (e.g. ``nsenter``) when given."""

    def __init__(self, data_dir: Path, launcher: Sequence[str] = ()) -> None:
        self.data_dir = data_dir
        self.launcher = list(launcher)

    def query(self, name: str, file: str, *args: Any) -> Any:
        path = str(self.data_dir / file)
        if not self.launcher:
            return _QUERIES[name](path, *args)
        # By path, not ``-m``: entering a mount namespace moves the working directory to its root.
        command = [*self.launcher, sys.executable, str(Path(__file__).resolve()), name, path, *map(json.dumps, args)]
        done = subprocess.run(command, capture_output=True, text=True, timeout=60)
        if done.returncode != 0:
            raise RuntimeError(f"{name} on {path} failed: {done.stderr.strip()[-2000:]}")
        return json.loads(done.stdout)

    def run(self, args: Sequence[str]) -> subprocess.CompletedProcess[str]:
        """A command inside the services' mount namespace (or here)."""
        return subprocess.run([*self.launcher, *args], capture_output=True, text=True, timeout=300)


if __name__ == "__main__":
    query, target, *rest = sys.argv[1:]
    print(json.dumps(_QUERIES[query](target, *map(json.loads, rest))))
