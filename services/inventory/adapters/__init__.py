"""Inventory's adapters: reading the wire into the domain's events."""
