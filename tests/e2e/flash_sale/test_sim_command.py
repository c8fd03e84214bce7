"""``stockwire sim`` as a user runs it: against a stack that is already up, checked against the ledger."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import running_stack

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]


async def test_stockwire_sim_sends_a_sale_and_finds_the_ledger_right(e2e_dir: Path) -> None:
    async with running_stack(e2e_dir, ttl_s=3.0) as stack:
        report = e2e_dir / "sim.json"
        args = [
            sys.executable, "-m", "stockwire", "sim",
            "--ingress-url", stack.url("ingress"),
            "--inventory-url", stack.url("inventory"),
            "--data-dir", str(stack.data_dir),
            "--orders", "150", "--skus", "8", "--hot-skus", "2", "--seed", "11",
            "--rate", "200", "--duplicates", "0.1", "--reorder", "0.1", "--forged", "0.05",
            "--wait-expiry", "--settle-timeout", "60", "--report", str(report),
        ]  # fmt: skip
        env = {**os.environ, "STOCKWIRE_NATS_URL": stack.nats_url or "", "STOCKWIRE_CONFIG": ""}
        done = await asyncio.to_thread(subprocess.run, args, env=env, capture_output=True, text=True, timeout=150)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "ledger equals the ground truth" in done.stdout
    result = json.loads(report.read_text())
    assert result["ok"] and not result["mismatches"]
    assert result["config"]["dialect"] == "commerce-engine" and "in the commerce-engine dialect" in done.stdout
    assert result["orders"]["reserved"] > 0 and result["orders"]["rejected"] > 0
    assert result["delivery"]["duplicate"] > 0 and result["delivery"]["forged_accepted"] == 0
    assert result["delivery"]["forged_refused"] > 0
    # Every abandoned cart has expired: nothing is left reserved.
    assert all(level["reserved"] == 0 for level in result["ledger"].values())
