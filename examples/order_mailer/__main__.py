"""``python -m examples.order_mailer``: run the mailer against the configured NATS (Ctrl-C stops it)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from pathlib import Path

from prometheus_client import start_http_server

from libs.bus import connect, jetstream
from libs.config import load_settings
from libs.consumer import PullConsumer, per_message
from libs.durables import ensure_durable
from libs.logs import setup_logging
from libs.store import create_engine, database_url

from .mailer import CONSUMER, Maildir, OrderMailer, prepare_store


async def main() -> None:
    setup_logging()
    settings = load_settings()
    engine = create_engine(database_url(os.environ.get("MAILER_DATABASE_URL"), settings.data_dir, "order-mailer"))
    await prepare_store(engine)
    nc = await connect(settings.nats, "order-mailer")
    js = jetstream(nc)
    await ensure_durable(js, CONSUMER)
    mailer = OrderMailer(engine, Maildir(Path(settings.data_dir) / "mail"))
    consumer = PullConsumer(
        js,
        CONSUMER.stream,
        CONSUMER.durable,
        per_message(mailer.handle),
        max_deliver=CONSUMER.max_deliver,
        spec=CONSUMER,
    )
    start_http_server(int(os.environ.get("MAILER_METRICS_PORT", "9465")), addr="127.0.0.1")
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, consumer.stop)
    try:
        await consumer.run()
    finally:
        with contextlib.suppress(Exception):
            await nc.drain()
        await engine.dispose()


if __name__ == "__main__":
    asyncio.run(main())
