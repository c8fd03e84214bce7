"""The Stockwire services; each is its own process, runnable with ``python -m services.<name>``."""
