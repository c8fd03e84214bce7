"""``python -m services.ingress``"""

from __future__ import annotations

from libs.config import load_service_config
from libs.server import serve

from .settings import IngressSettings


def main() -> None:
    shared, settings = load_service_config("ingress", IngressSettings)
    serve(
        "services.ingress.app:create_app",
        host=settings.host,
        port=settings.port,
        workers=settings.workers,
        data_dir=shared.data_dir,
        log_format=shared.logging.format,
    )


if __name__ == "__main__":
    main()
