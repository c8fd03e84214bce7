"""The ``stockwire`` command: the composition root that starts, inspects and exercises the services."""
