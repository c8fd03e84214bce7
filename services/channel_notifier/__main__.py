"""``python -m services.channel_notifier``"""

from __future__ import annotations

from libs.config import load_raw, load_section, load_settings
from libs.server import serve

from .settings import ChannelNotifierSettings


def main() -> None:
    raw = load_raw()
    shared = load_settings(raw)
    settings = load_section(raw, "channel-notifier", ChannelNotifierSettings)
    # One process: the workers and the consumer live in it (replicas scale out, on PostgreSQL).
    serve("services.channel_notifier.app:create_app", host=settings.host, port=settings.port, data_dir=shared.data_dir)


if __name__ == "__main__":
    main()
