"""The pure core of inventory: events, the ledger rules, the per-order state machine, the hash chain.

Nothing here touches a database or a broker; the store and the consumer call into it.
"""
