"""The pure part of the channel-notifier: no I/O, every rule unit-testable without a broker or a database."""
