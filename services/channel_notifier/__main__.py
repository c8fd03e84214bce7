"""``python -m services.channel_notifier``"""

from __future__ import annotations

from libs.config import load_service_config
from libs.server import serve

from .settings import ChannelNotifierSettings


def main() -> None:
    shared, settings = load_service_config("channel-notifier", ChannelNotifierSettings)
    # One process: the workers and the consumer live in it (replicas scale out, on PostgreSQL).
    serve(
        "services.channel_notifier.app:create_app",
        host=settings.host,
        port=settings.port,
        data_dir=shared.data_dir,
        log_format=shared.logging.format,
    )


if __name__ == "__main__":
    main()
