"""ingress: signed webhooks in over HTTP, durable in JetStream (or the local spool) before we answer."""
