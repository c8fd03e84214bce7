"""Client CPU per message pulled and acknowledged: ``libs.pull.PullRequests`` against nats-py's
``PullSubscription.fetch`` (the baseline), same server, same stream, same run.

    python -m bench.pull [--messages 20000] [--batch 256] [--rounds 3] [--payload-bytes 1400]

A fresh nats-server on a free port (temporary store) holds ``--messages`` messages with the headers ingress
writes; each way drains them through a durable of its own in fetches of ``--batch``, acknowledging each
message, ``--rounds`` times alternately. The figure is this process's CPU (user + system) divided by the
messages, and the server's beside it; the ratio is against nats-py in the same round.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time
from collections.abc import Awaitable, Callable

import nats
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js import api as js_api

from bench.support import machine, median, on_fresh_nats_server, print_table
from libs.natsserver import NatsServer
from libs.pull import PullRequests
from stockwire.demo.cpu import process_cpu_s

_STREAM = "BENCH"
_HEADERS = {"Stockwire-Source": "shop", "Stockwire-Event-Type": "order.created", "Content-Type": "application/json"}


async def _fill(nc: Client, js: JetStreamContext, messages: int, payload: bytes) -> None:
    await js.add_stream(js_api.StreamConfig(name=_STREAM, subjects=["bench.>"]))
    for n in range(messages):
        await nc.publish(f"bench.{n % 16}", payload, headers={**_HEADERS, "Nats-Msg-Id": f"m{n}"})
        if n % 1000 == 999:
            await nc.flush()
    await nc.flush()
    deadline = time.monotonic() + 30
    while (await js.stream_info(_STREAM)).state.messages < messages:
        if time.monotonic() > deadline:
            raise RuntimeError("the stream did not take every message")
        await asyncio.sleep(0.05)


async def _drain(nc: Client, js: JetStreamContext, durable: str, lean: bool, messages: int, batch: int) -> None:
    await js.add_consumer(
        _STREAM,
        js_api.ConsumerConfig(durable_name=durable, ack_policy=js_api.AckPolicy.EXPLICIT, max_ack_pending=-1),
    )
    fetch: Callable[..., Awaitable[list[Msg]]]
    if lean:
        pull = await PullRequests.bind(js, _STREAM, durable)
        fetch, close = pull.fetch, pull.unsubscribe
    else:
        sub = await js.pull_subscribe_bind(durable=durable, stream=_STREAM)
        fetch, close = sub.fetch, sub.unsubscribe
    got = 0
    while got < messages:
        fetched = await fetch(batch, timeout=1.0)
        for msg in fetched:
            await msg.ack()
        got += len(fetched)
    await close()
    await nc.flush()


async def _run(args: argparse.Namespace, server: NatsServer) -> list[list[object]]:
    assert server.process is not None
    own, nats_server = os.getpid(), server.process.pid

    def cpu_s(pid: int) -> float:
        return process_cpu_s(pid, descendants=False)

    nc = await nats.connect(server.url)
    js = nc.jetstream()
    await _fill(nc, js, args.messages, b"x" * args.payload_bytes)
    figures: dict[bool, tuple[list[float], list[float]]] = {True: ([], []), False: ([], [])}
    for round_ in range(args.rounds):
        for lean in (False, True):
            client_0, server_0 = cpu_s(own), cpu_s(nats_server)
            await _drain(nc, js, f"{'lean' if lean else 'natspy'}-{round_}", lean, args.messages, args.batch)
            figures[lean][0].append((cpu_s(own) - client_0) / args.messages * 1e6)
            figures[lean][1].append((cpu_s(nats_server) - server_0) / args.messages * 1e6)
    await nc.close()
    baseline = median(figures[False][0])
    return [
        [
            "libs.pull.PullRequests" if lean else "nats-py fetch (baseline)",
            round(median(figures[lean][0]), 1),
            round(median(figures[lean][1]), 1),
            round(median(figures[lean][0]) / baseline, 2),
        ]
        for lean in (False, True)
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--messages", type=int, default=20_000)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--payload-bytes", type=int, default=1400)
    args = parser.parse_args()
    print(f"pull-consume + ack on {machine()}; {args.messages:,} messages of {args.payload_bytes} bytes a round")
    rows = on_fresh_nats_server(lambda server: _run(args, server))
    print_table(
        "CPU-microseconds per message fetched and acknowledged (median of the rounds)",
        ["way", "client", "nats-server", "client / baseline"],
        rows,
    )


if __name__ == "__main__":
    main()
