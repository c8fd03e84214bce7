"""outbox-relay: every committed outbox row reaches JetStream, once, in order (design §5)."""
