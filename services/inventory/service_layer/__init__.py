"""Inventory's service layer: the use cases (handlers) and the unit of work they run in.

Entry points (the COMMERCE consumer, the HTTP API, the sweeper) call a handler with a unit of work; the
handler loads what the use case touches, lets the domain decide, and commits. The SQL unit of work lives
in :mod:`..store`; an in-memory one serves the unit tests.
"""
