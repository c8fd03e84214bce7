"""One module per ``stockwire`` command; each exposes ``register(subparsers)``."""
