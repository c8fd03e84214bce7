"""``python -m services.outbox_relay``"""

from __future__ import annotations

from libs.config import load_service_config
from libs.server import serve

from .settings import OutboxRelaySettings


def main() -> None:
    shared, settings = load_service_config("outbox-relay", OutboxRelaySettings)
    # One process per replica: leadership is per process, extra workers would only stand by.
    serve(
        "services.outbox_relay.app:create_app",
        host=settings.host,
        port=settings.port,
        workers=1,
        data_dir=shared.data_dir,
        log_format=shared.logging.format,
    )


if __name__ == "__main__":
    main()
