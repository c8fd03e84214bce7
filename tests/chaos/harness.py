"""The chaos harness: one flash sale (signed webhooks with a known ground truth) under one fault schedule,
the recovery time of every fault, and a checker over the whole history.

What a run checks, besides the flash sale's own invariants (zero oversell, ledger = ground truth, channel
caches converged, nothing unexpected in DEADLETTER, ``stockwire ledger verify``):

- every webhook answered 2xx is in COMMERCE exactly once (nothing lost, nothing stored twice);
- inventory settled every one of them exactly once (an inbox row each, no ledger movement repeated);
- an event acknowledged earlier is published earlier: if ingress answered webhook A before it received
  webhook B, A's COMMERCE sequence is lower than B's;
- no message is dead-lettered twice.

Recovery of a fault: from the moment it is healed (the process back and healthy, the signal undone, the
disk freed) until everything that was waiting at that moment has gone through — the spool and the
inventory outbox published, COMMERCE consumed by inventory, INVENTORY consumed by the notifier.

``STOCKWIRE_CHAOS=long`` (``make chaos``) selects the long form: more orders, a faster rate, longer faults.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from nats.js import JetStreamContext
from nats.js import errors as js_errors

from libs.bus import connect, jetstream
from libs.config import NatsSettings, TopologySettings
from libs.topology import COMMERCE, DEADLETTER, INVENTORY, INVENTORY_CONSUMER, NOTIFIER_CONSUMER
from stockwire.demo.channels import SinkProcess, register_channels
from stockwire.demo.flash_sale import Fault, FlashSale, SaleOptions
from stockwire.demo.report import build_report
from stockwire.sim.config import CatalogueConfig, ProducerConfig, SimConfig
from stockwire.sim.runner import SimResult
from stockwire.stack import Stack, dev_source_secret
from tests.e2e.flash_sale.conftest import running_sinks, running_stack
from tests.support import NatsCluster, ce_body, ce_headers, eventually

from .store import StoreReader

__all__ = [
    "LONG",
    "ChaosRun",
    "Recovery",
    "Scenario",
    "acknowledged_out_of_order",
    "assert_survived",
    "load",
    "nats_for",
    "read_commerce",
    "record_row",
    "run_scenario",
    "send_webhook",
]

LONG = os.environ.get("STOCKWIRE_CHAOS", "").strip().lower() == "long"
RECOVERY_BOUND_S = 20.0
"""A generous bound on every recovery: the goal (issue 13, item 4) is 5 s after the process is healthy."""
TTL_S = 4.0
OUTBOXES = ("ingress", "inventory")
"""The SQLite outboxes the relay drains: ingress's spool and inventory's outbox, ``<name>.db`` in the data dir."""


@dataclass(frozen=True)
class Load:
    orders: int
    rate: float
    """Webhooks per second offered (steady; the sale has a burst at 3x)."""
    fault_s: float
    """How long a fault that lasts (an outage, a stopped process, a full disk) is held."""
    stop_s: float
    """How long inventory stays stopped (SIGSTOP)."""
    settle_s: float


def load() -> Load:
    if LONG:
        return Load(orders=2000, rate=180.0, fault_s=30.0, stop_s=60.0, settle_s=180.0)
    return Load(orders=200, rate=100.0, fault_s=4.0, stop_s=8.0, settle_s=60.0)


def sale_config(seed: int, chosen: Load) -> SimConfig:
    return SimConfig(
        seed=seed,
        orders=chosen.orders,
        run_id=f"chaos{seed}",
        # Stockwire's own dialect, on one source: the history checker finds each event in inventory's
        # inbox under that source (check_history), and the faults' figures stay comparable across runs.
        dialect="stockwire",
        catalogue=CatalogueConfig(skus=12, hot_skus=3, stocktakes=2, damaged=2),
        # Retries for as long as any fault lasts: a webhook given up on would be a lost one.
        producer=ProducerConfig(
            rate=chosen.rate, concurrency=24, burst_factor=3.0, backoff_max_s=0.5, max_attempts=2000
        ),
    )


@dataclass
class Recovery:
    """One fault's timeline (wall clock) and whatever it observed on the way."""

    fault: str
    injected: float | None = None
    healed: float | None = None
    recovered: float | None = None
    notes: dict[str, Any] = field(default_factory=dict)

    @property
    def seconds(self) -> float | None:
        if self.healed is None or self.recovered is None:
            return None
        return round(self.recovered - self.healed, 2)

    def as_dict(self) -> dict[str, Any]:
        down = None if self.injected is None or self.healed is None else round(self.healed - self.injected, 2)
        return {"fault": self.fault, "down_s": down, "recovery_s": self.seconds, **self.notes}


@dataclass(frozen=True)
class Marks:
    """What was waiting at one moment: stream sequences and unpublished outbox ids to get past."""

    commerce: int
    inventory: int
    outboxes: dict[str, int]


@dataclass
class Pipeline:
    """Where the pipeline stands: the two durable consumers and the two SQLite outboxes (spool, inventory)."""

    js: JetStreamContext
    store: StoreReader

    async def _ack_floor(self, stream: str, durable: str) -> int | None:
        try:
            info = await self.js.consumer_info(stream, durable, timeout=2)
        except Exception:
            return None
        return int(info.ack_floor.stream_seq or 0) if info.ack_floor else 0

    async def marks(self, timeout_s: float = 60.0) -> Marks:
        """Take the marks, waiting (while the server comes back) for JetStream to answer."""

        async def attempt() -> Marks | None:
            try:
                commerce = await asyncio.wait_for(self.js.stream_info(COMMERCE), 2)
                inventory = await asyncio.wait_for(self.js.stream_info(INVENTORY), 2)
            except Exception:
                return None
            outboxes = {
                name: await asyncio.to_thread(self.store.query, "outbox_mark", f"{name}.db") for name in OUTBOXES
            }
            return Marks(int(commerce.state.last_seq or 0), int(inventory.state.last_seq or 0), outboxes)

        return await eventually(attempt, timeout=timeout_s, interval=0.1, what="JetStream answering")

    async def behind(self, marks: Marks) -> list[str]:
        """What has not yet gone past ``marks`` (empty: caught up)."""
        out = []
        for name, mark in marks.outboxes.items():
            waiting = await asyncio.to_thread(self.store.query, "outbox_waiting", f"{name}.db", mark)
            if waiting:
                out.append(f"{waiting} rows of the {name} outbox unpublished")
        for stream, durable, mark in (
            (COMMERCE, INVENTORY_CONSUMER, marks.commerce),
            (INVENTORY, NOTIFIER_CONSUMER, marks.inventory),
        ):
            floor = await self._ack_floor(stream, durable)
            if floor is None or floor < mark:
                out.append(f"{stream}/{durable} acknowledged up to {floor}, not yet {mark}")
        return out

    async def recover(self, recovery: Recovery, marks: Marks | None = None, *, timeout_s: float) -> None:
        """Record when everything waiting at the heal (``marks``, or taken now) has gone through."""
        if recovery.healed is None:
            recovery.healed = time.time()
        marks = marks or await self.marks()
        deadline = time.monotonic() + timeout_s
        while True:
            behind = await self.behind(marks)
            if not behind:
                recovery.recovered = time.time()
                return
            if time.monotonic() > deadline:
                recovery.notes["not_recovered"] = "; ".join(behind)
                raise NotRecovered(f"{recovery.fault}: not recovered within {timeout_s:.0f} s: {'; '.join(behind)}")
            await asyncio.sleep(0.1)


class NotRecovered(AssertionError):
    pass


@dataclass
class ChaosContext:
    """What a fault acts on and where it records what it saw."""

    stack: Stack
    sinks: SinkProcess
    pipeline: Pipeline
    js: JetStreamContext
    load: Load
    files: Path
    """The services' data dir as this process reaches it (``/proc/<pid>/root/...`` in a private namespace)."""
    cluster: NatsCluster | None = None
    recoveries: list[Recovery] = field(default_factory=list)
    given_up: asyncio.Event = field(default_factory=asyncio.Event)
    failures: list[str] = field(default_factory=list)

    def record(self, fault: str) -> Recovery:
        recovery = Recovery(fault)
        self.recoveries.append(recovery)
        return recovery

    @property
    def recovery_timeout_s(self) -> float:
        # Long enough to measure today's slow paths (a 30 s ack wait), short enough to give up on a stall.
        return max(45.0, 2 * self.load.fault_s)

    async def send(self, event_type: str, event_id: str, **data: Any) -> int:
        """One signed webhook from outside the simulator (poison, probes); returns the status."""
        async with httpx.AsyncClient(timeout=5) as client:
            return (await send_webhook(self.stack, client, event_type, event_id, **data))[0]

    def process_group(self, service: str) -> int:
        pid = self.stack.children[service].pid
        assert pid is not None
        return pid

    def signal(self, service: str, signum: signal.Signals) -> None:
        os.killpg(self.process_group(service), signum)


FaultPlan = Callable[[ChaosContext], Sequence[Fault]]


async def send_webhook(
    stack: Stack, client: httpx.AsyncClient, event_type: str, event_id: str, **data: Any
) -> tuple[int, str]:
    """POST one signed webhook of the dev source; returns the status and the answer's ``status`` field."""
    body = ce_body(event_type, event_id, **data)
    headers = ce_headers(dev_source_secret(stack.data_dir), body)
    try:
        answer = await client.post(f"{stack.url('ingress')}/webhooks/shop", content=body, headers=headers)
    except httpx.HTTPError as exc:
        return 0, type(exc).__name__
    try:
        outcome = str(answer.json().get("status", ""))
    except ValueError:
        outcome = ""
    return answer.status_code, outcome


@dataclass(frozen=True)
class Scenario:
    name: str
    plan: FaultPlan
    seed: int
    deadletter_allowed: int = 0
    private_store_mb: int = 0
    """Non-zero: the services' data dir is a tmpfs of this size in a private mount namespace."""
    recovery_bound_s: float | None = RECOVERY_BOUND_S

    def __str__(self) -> str:
        return self.name


@dataclass
class ChaosRun:
    scenario: Scenario
    report: dict[str, Any]
    problems: list[str]
    history: dict[str, Any]
    recoveries: list[Recovery]

    def record(self) -> None:
        record_row(
            self.scenario.name,
            orders=self.report.get("orders", {}).get("sent"),
            webhooks=self.report.get("webhooks", {}).get("events_delivered"),
            rate_offered=self.report.get("config", {}).get("producer", {}).get("rate"),
            webhooks_per_s=self.report.get("throughput", {}).get("webhooks_per_s"),
            faults=[r.as_dict() for r in self.recoveries],
            events_lost=self.history.get("lost"),
            applied_twice=self.history.get("applied_twice"),
            problems=self.problems[:10],
        )


# --- the checker ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Stored:
    seq: int
    event_id: str
    received_at: float


async def _headers(js: JetStreamContext, stream: str) -> AsyncIterator[tuple[int, dict[str, str]]]:
    """(sequence, headers) of every message the stream holds, oldest first."""
    info = await js.stream_info(stream)
    for seq in range(int(info.state.first_seq or 1), int(info.state.last_seq or 0) + 1):
        try:
            msg = await js.get_msg(stream, seq)
        except js_errors.NotFoundError:
            continue
        yield seq, dict(msg.headers or {})


async def read_commerce(js: JetStreamContext) -> list[Stored]:
    out = []
    async for seq, headers in _headers(js, COMMERCE):
        received = dt.datetime.fromisoformat(headers["Stockwire-Received-At"]).timestamp()
        out.append(Stored(seq, headers["Stockwire-Event-Id"], received))
    return out


async def deadletter_originals(js: JetStreamContext) -> Counter[tuple[str, str]]:
    """(consumer, original stream sequence) of every DEADLETTER message, counted."""
    seen: Counter[tuple[str, str]] = Counter()
    async for _seq, headers in _headers(js, DEADLETTER):
        seen[(headers.get("Stockwire-Consumer", "?"), headers.get("Stockwire-Original-Seq", "?"))] += 1
    return seen


def acknowledged_out_of_order(acked: dict[str, float], stored: Sequence[Stored]) -> list[str]:
    """Pairs (A, B) where ingress answered A before it received B, yet B is earlier in COMMERCE."""
    by_seq = sorted(stored, key=lambda s: s.seq)
    # Walk from the end: the earliest acknowledgement among everything stored after each message.
    earliest: tuple[float, str] | None = None
    out = []
    for entry in reversed(by_seq):
        if earliest is not None and earliest[0] < entry.received_at:
            out.append(
                f"{earliest[1]} was acknowledged {entry.received_at - earliest[0]:.3f} s before {entry.event_id} "
                f"was received, yet is stored after it (seq {entry.seq})"
            )
        ack = acked.get(entry.event_id)
        if ack is not None and (earliest is None or ack < earliest[0]):
            earliest = (ack, entry.event_id)
    return out


def check_history(
    result: SimResult,
    stored: Sequence[Stored],
    inbox: set[str],
    ledger: Sequence[tuple[Any, ...]],
    parked: int,
    deadletters: Counter[tuple[str, str]],
    source: str,
) -> tuple[list[str], dict[str, Any]]:
    problems: list[str] = []
    acked = result.acknowledged_at
    counts = Counter(s.event_id for s in stored)
    lost = sorted(eid for eid in acked if counts[eid] == 0)
    twice = sorted(eid for eid in acked if counts[eid] > 1)
    if lost:
        problems.append(f"{len(lost)} webhooks answered 2xx are not in COMMERCE, e.g. {lost[:3]}")
    if twice:
        problems.append(f"{len(twice)} webhooks are in COMMERCE more than once, e.g. {twice[:3]}")
    unsettled = sorted(eid for eid in acked if f"{source}:{eid}" not in inbox)
    if unsettled:
        problems.append(f"{len(unsettled)} acknowledged webhooks were never settled by inventory, e.g. {unsettled[:3]}")
    if parked:
        problems.append(f"{parked} events still parked at the end")
    movements = Counter(row for row in ledger if row[0] in inbox)
    repeated = [row for row, n in movements.items() if n > 1]
    if repeated:
        problems.append(f"{len(repeated)} ledger movements applied more than once, e.g. {repeated[:2]}")
    overtaken = acknowledged_out_of_order(acked, stored)
    if overtaken:
        problems.append(f"{len(overtaken)} events published after one acknowledged later, e.g. {overtaken[:2]}")
    dead_twice = sorted(key for key, n in deadletters.items() if n > 1)
    if dead_twice:
        problems.append(f"{len(dead_twice)} messages dead-lettered more than once, e.g. {dead_twice[:3]}")
    figures = {
        "acknowledged": len(acked),
        "in_commerce": len(stored),
        "lost": len(lost) + len(unsettled),
        "stored_twice": len(twice),
        "applied_twice": len(repeated),
        "overtaken": len(overtaken),
        "dead_lettered_twice": len(dead_twice),
    }
    return problems, figures


def ledger_verify(store: StoreReader) -> dict[str, Any]:
    url = f"sqlite+aiosqlite:///{store.data_dir / 'inventory.db'}"
    done = store.run([sys.executable, "-m", "stockwire", "ledger", "verify", "--database-url", url])
    return {"ran": True, "ok": done.returncode == 0, "output": (done.stdout + done.stderr).strip()[-4000:]}


# --- running a scenario -------------------------------------------------------------------------------


@contextlib.contextmanager
def private_store(data_dir: Path, size_mb: int) -> Iterator[int]:
    """A process holding a private mount namespace where ``data_dir`` is a tmpfs of ``size_mb``; yields its pid.

    The services run inside it (``nsenter``), so the machine's own mounts never change; this process
    reaches the files through ``/proc/<pid>/root``. Skips with the reason where the machine refuses.
    """
    if os.geteuid() != 0 or not (shutil.which("unshare") and shutil.which("nsenter")):
        pytest.skip("a private tmpfs needs root, unshare and nsenter")
    data_dir.mkdir(parents=True, exist_ok=True)
    mount = f"mount -t tmpfs -o size={size_mb}m stockwire-chaos '{data_dir.resolve()}'"
    holder = subprocess.Popen(
        ["unshare", "-m", "--propagation", "private", "sh", "-c", f"{mount} && echo mounted && exec sleep 86400"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert holder.stdout is not None and holder.stderr is not None
    try:
        # Either the line comes, or sh exits (and the pipe closes) because the mount was refused.
        if holder.stdout.readline().strip() != b"mounted":
            reason = holder.stderr.read().decode(errors="replace").strip()
            pytest.skip(f"cannot mount a tmpfs in a private mount namespace here: {reason or 'no reason given'}")
        yield holder.pid
    finally:
        holder.kill()
        holder.wait()


@contextlib.asynccontextmanager
async def nats_for(stack: Stack) -> AsyncIterator[JetStreamContext]:
    assert stack.nats_url is not None
    nc = await connect(NatsSettings(servers=stack.nats_url.split(",")), "stockwire-chaos")
    try:
        yield jetstream(nc)
    finally:
        await nc.close()


async def run_scenario(tmp_path: Path, scenario: Scenario, cluster: NatsCluster | None = None) -> ChaosRun:
    chosen = load()
    data_dir = tmp_path / "stack"
    options: dict[str, Any] = {}
    env: dict[str, str] = {}
    if cluster is not None:
        options.update(nats_url=cluster.url, topology=TopologySettings(replicas=3))
        env["STOCKWIRE__TOPOLOGY__REPLICAS"] = "3"
    async with contextlib.AsyncExitStack() as exits:
        files = data_dir
        if scenario.private_store_mb:
            holder = exits.enter_context(private_store(data_dir, scenario.private_store_mb))
            options["launcher"] = ["nsenter", "-t", str(holder), "-m", "--"]
            files = Path(f"/proc/{holder}/root") / data_dir.resolve().relative_to("/")
        store = StoreReader(data_dir.resolve(), options.get("launcher", ()))
        stack = await exits.enter_async_context(running_stack(data_dir, ttl_s=TTL_S, env=env, **options))
        sinks = await exits.enter_async_context(running_sinks(tmp_path))
        js = await exits.enter_async_context(nats_for(stack))
        await asyncio.to_thread(register_channels, stack.url("channel-notifier"), stack.admin_token, sinks)
        context = ChaosContext(stack, sinks, Pipeline(js, store), js, chosen, files, cluster)
        sale = FlashSale(
            stack,
            sinks,
            SaleOptions(
                sim=sale_config(scenario.seed, chosen),
                settle_timeout_s=chosen.settle_s,
                faults=_guarded(context, scenario.plan(context)),
                deadletter_allowed=scenario.deadletter_allowed,
                verify_ledger=False,
            ),
        )
        running = asyncio.create_task(sale.run())
        giving_up = asyncio.create_task(context.given_up.wait())
        await asyncio.wait({running, giving_up}, return_when=asyncio.FIRST_COMPLETED)
        giving_up.cancel()
        if not running.done():
            # A fault did not recover: waiting out every settle deadline would only burn minutes.
            running.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await running
            return ChaosRun(scenario, {}, context.failures, {}, context.recoveries)
        observation = running.result()
        observation.ledger_verify = await asyncio.to_thread(ledger_verify, store)
        report = build_report(observation, title=f"chaos: {scenario.name}")
        (tmp_path / "report.json").write_text(json.dumps(report, indent=2, default=str))
        stored = await read_commerce(js)
        found = await asyncio.to_thread(store.query, "inventory_history", "inventory.db")
        inbox, ledger = set(found["inbox"]), [tuple(row) for row in found["ledger"]]
        problems, history = check_history(
            observation.result,
            stored,
            inbox,
            ledger,
            found["parked"],
            await deadletter_originals(js),
            observation.config.source,
        )
        problems = [f"{i['name']}: {i['detail']}" for i in report["invariants"] if not i["ok"]] + problems
        problems += context.failures
        return ChaosRun(scenario, report, problems, history, context.recoveries)
    raise AssertionError("unreachable")


def _guarded(context: ChaosContext, faults: Sequence[Fault]) -> list[Fault]:
    """Each fault's action, with a failure (a stall above all) recorded and the run cut short."""

    def wrap(action: Callable[[], Awaitable[None]]) -> Callable[[], Awaitable[None]]:
        async def guarded() -> None:
            try:
                await action()
            except Exception as exc:
                context.failures.append(f"{type(exc).__name__}: {exc}")
                if isinstance(exc, NotRecovered):
                    context.given_up.set()
                raise

        return guarded

    return [Fault(f.name, f.at, wrap(f.action)) for f in faults]


def results_path() -> Path:
    configured = os.environ.get("STOCKWIRE_CHAOS_RESULTS")
    if configured:
        return Path(configured)
    return Path(__file__).resolve().parents[2] / ".data" / "chaos" / f"{'long' if LONG else 'bounded'}.jsonl"


def record_row(scenario: str, **figures: Any) -> None:
    """Append one run's row to the results file (``python -m tests.chaos.table`` renders them)."""
    row = {
        "scenario": scenario,
        "mode": "long" if LONG else "bounded",
        "at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "cpus": os.cpu_count(),
        **figures,
    }
    row.setdefault("ok", not figures.get("problems"))
    path = results_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as out:
        out.write(json.dumps(row, default=str) + "\n")


def assert_survived(run: ChaosRun) -> None:
    run.record()
    assert not run.problems, run.problems
    for recovery in run.recoveries:
        assert recovery.seconds is not None, f"{recovery.fault}: no recovery recorded"
        bound = run.scenario.recovery_bound_s
        if bound is not None:
            assert recovery.seconds < bound, f"{recovery.fault}: recovered in {recovery.seconds} s, over {bound} s"
