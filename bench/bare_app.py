"""The baseline for the ingress benchmark: a Litestar handler that only verifies the HMAC."""

from __future__ import annotations

import hashlib
import hmac
import os
from typing import Any

from litestar import Litestar, Request, Response, post

SECRET = os.environ.get("BENCH_SECRET", "bench-secret").encode()


@post("/webhooks/{source:str}")
async def receive(source: str, request: Request[Any, Any, Any]) -> Response[dict[str, str]]:
    body = await request.body()
    expected = hmac.new(SECRET, body, hashlib.sha256).hexdigest().encode()
    presented = request.headers.get("x-webhook-signature", "").encode()
    if not hmac.compare_digest(expected, presented):
        return Response({"error": "invalid_signature"}, status_code=401)
    return Response({"status": "verified"}, status_code=200)




def create_app() -> Litestar:
    from litestar import get

    @get("/healthz", sync_to_thread=False)
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    return Litestar([receive, healthz], logging_config=None)
