"""The operator console: server-rendered pages over the other services' admin APIs and JetStream."""
