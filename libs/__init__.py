"""Shared building blocks of the Stockwire services: contracts, bus, store, config and metrics."""
