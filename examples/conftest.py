"""The examples' tests use the suite's fixtures: a real nats-server, JetStream reset per test, a data dir."""

from tests.conftest import data_dir, js, nats_server, nc, topology_settings

__all__ = ["data_dir", "js", "nats_server", "nc", "topology_settings"]
