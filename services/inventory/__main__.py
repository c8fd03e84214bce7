"""``python -m services.inventory``"""

from __future__ import annotations

from libs.config import load_service_config
from libs.server import serve

from .settings import InventorySettings


def main() -> None:
    shared, settings = load_service_config("inventory", InventorySettings)
    # One worker: the consumer, the sweeper and the API share the process. Scale with replicas
    # (on PostgreSQL), each its own process.
    serve(
        "services.inventory.app:create_app",
        host=settings.host,
        port=settings.port,
        data_dir=shared.data_dir,
        log_format=shared.logging.format,
    )


if __name__ == "__main__":
    main()
