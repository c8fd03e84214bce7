"""The outbox-relay's service layer: the use cases (handlers) and the unit of work they run in.

The publishing epoch and the relay's housekeeping call a handler with a unit of work; the handler
reads or changes the outbox table, each operation one transaction (or one snapshot read). The SQL
unit of work is the relay's store (:mod:`..store`); an in-memory one serves the unit tests.
"""
