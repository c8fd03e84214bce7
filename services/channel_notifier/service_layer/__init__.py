"""The channel-notifier's service layer: the use cases (handlers) and the unit of work they run in.

Entry points (the INVENTORY batch handler, the registry behind the admin API and the start-up
configuration, the delivery workers and their results writer) call a handler with a unit of work; the
handler runs one transaction that loads what the use case touches, lets the domain decide, and writes.
The SQL unit of work lives in :mod:`..store`; an in-memory one serves the unit tests.
"""
