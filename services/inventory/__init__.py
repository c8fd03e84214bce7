"""inventory: an append-only ledger fed by COMMERCE that never oversells, whatever order events arrive in."""
