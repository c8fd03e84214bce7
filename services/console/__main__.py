"""``python -m services.console``"""

from __future__ import annotations

from libs.server import serve

from .app import load_console_config


def main() -> None:
    shared, settings = load_console_config()
    serve("services.console.app:create_app", host=settings.host, port=settings.port, data_dir=shared.data_dir)


if __name__ == "__main__":
    main()
