"""``stockwire demo``: the stack, three demo channels, a flash sale, the invariants and the report."""
