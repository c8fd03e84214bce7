"""nats-server CPU per message: JetStream atomic batches of k messages against the same k messages
published pipelined (each with its own PubAck), on one single-replica file stream, same run.

    python -m bench.atomic_batches [--messages 1000] [--sizes 1,2,4,8,16,32,64,128] [--rounds 2]
                                   [--nats-sync always|default] [--payload-bytes 600]

A fresh nats-server on a free port (temporary store). Each size runs ``--messages`` messages both ways,
``--rounds`` times alternately; the figure is the server process's CPU (user + system, from the OS)
divided by the messages. On a single-replica file stream nats-server stages each atomic batch in a
file store of its own (a directory, its metadata and a block, each written and synced, then removed),
so a batch has a fixed cost that only enough messages pay back: the smallest size whose median ratio
is at most 1.0 is printed as the break-even (``libs.bus.ATOMIC_MIN_BATCH`` is set from it).
"""

from __future__ import annotations

import argparse
import asyncio

import nats
from nats.js import api as js_api

from bench.support import machine, median, on_fresh_nats_server, print_table
from libs.bus import publish_atomic
from libs.natsserver import NatsServer
from stockwire.demo.cpu import process_cpu_s


async def _run(args: argparse.Namespace, server: NatsServer) -> list[list[object]]:
    assert server.process is not None
    pid = server.process.pid

    def cpu_s() -> float:
        return process_cpu_s(pid, descendants=False)

    nc = await nats.connect(server.url)
    js = nc.jetstream()
    await js.add_stream(
        js_api.StreamConfig(name="BENCH", subjects=["bench.>"], allow_atomic=True, allow_direct=True, num_replicas=1)
    )
    payload = b"x" * args.payload_bytes
    sizes = [int(size) for size in args.sizes.split(",")]
    figures: dict[int, tuple[list[float], list[float]]] = {size: ([], []) for size in sizes}
    for round_ in range(args.rounds):
        for size in sizes:
            for atomic in (True, False):
                sent = 0
                started = cpu_s()
                while sent < args.messages:
                    ids = [f"{round_}-{size}-{atomic}-{sent + i}" for i in range(size)]
                    if atomic:
                        messages = [
                            (f"bench.{i % 16}", payload, {"Nats-Msg-Id": msg_id}) for i, msg_id in enumerate(ids)
                        ]
                        await (await publish_atomic(nc, messages, timeout_s=10))
                    else:
                        await asyncio.gather(
                            *(
                                js.publish(f"bench.{i % 16}", payload, headers={"Nats-Msg-Id": msg_id}, timeout=10)
                                for i, msg_id in enumerate(ids)
                            )
                        )
                    sent += size
                figures[size][0 if atomic else 1].append((cpu_s() - started) / sent * 1000)
    await nc.close()
    rows: list[list[object]] = []
    for size in sizes:
        atomic_ms, pipelined_ms = (median(values) for values in figures[size])
        rows.append([size, round(atomic_ms, 3), round(pipelined_ms, 3), round(atomic_ms / pipelined_ms, 2)])
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--messages", type=int, default=1000, help="messages per size, way and round")
    parser.add_argument("--sizes", default="1,2,4,8,16,32,64,128", help="comma-separated batch sizes")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--payload-bytes", type=int, default=600)
    parser.add_argument("--nats-sync", choices=("always", "default"), default="always")
    args = parser.parse_args()
    print(f"atomic batches against pipelined publishes on {machine()}; NATS sync {args.nats_sync}")
    sync = "always" if args.nats_sync == "always" else "2m"
    rows = on_fresh_nats_server(lambda server: _run(args, server), sync)
    print_table(
        "nats-server CPU-milliseconds per message (median of the rounds)",
        ["batch size", "atomic", "pipelined", "atomic / pipelined"],
        rows,
    )
    paying = [row[0] for row in rows if float(str(row[3])) <= 1.0]
    print(f"  smallest size where an atomic batch costs no more: {paying[0] if paying else 'none measured'}")


if __name__ == "__main__":
    main()
