"""Ingress's service layer: the spool's use cases (handlers) and the unit of work they run in.

The durable writer (:mod:`..publisher`) calls a handler with a unit of work: spool an event, or ask
whether a new event must be spooled behind rows the relay has not published yet. The SQL unit of
work lives in :mod:`..spool`; an in-memory one serves the unit tests.
"""
