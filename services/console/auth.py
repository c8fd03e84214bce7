"""Sessions (the admin token exchanged for an HttpOnly, SameSite=Strict cookie), CSRF tokens, and the
record of every action: who (the session, from which address), when, what and the answer."""

from __future__ import annotations

import datetime as dt
import hmac
import json
import logging
import secrets
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["COOKIE", "CSRF_FIELD", "CSRF_HEADER", "ActionLog", "Session", "Sessions"]

COOKIE = "stockwire_console"
CSRF_FIELD = "csrf"
CSRF_HEADER = "x-csrf-token"

audit = logging.getLogger("stockwire.console.actions")


@dataclass(frozen=True)
class Session:
    id: str
    csrf: str
    expires: float
    address: str
    started_at: str

    @property
    def who(self) -> str:
        """The admin token is the one identity; a session is named by its first characters and address."""
        return f"admin (session {self.id[:8]}, {self.address})"


@dataclass
class Sessions:
    admin_token: str | None
    ttl_s: float
    by_id: dict[str, Session] = field(default_factory=dict)

    def login(self, presented: str, address: str) -> Session | None:
        if not self.admin_token or not hmac.compare_digest(presented.strip().encode(), self.admin_token.encode()):
            return None
        now = time.time()
        self.by_id = {k: s for k, s in self.by_id.items() if s.expires > now}
        session = Session(
            secrets.token_urlsafe(32),
            secrets.token_urlsafe(32),
            now + self.ttl_s,
            address,
            dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        )
        self.by_id[session.id] = session
        return session

    def get(self, session_id: str | None) -> Session | None:
        if not session_id:
            return None
        session = self.by_id.get(session_id)
        if session is None or session.expires <= time.time():
            self.by_id.pop(session_id, None)
            return None
        return session

    def logout(self, session_id: str) -> None:
        self.by_id.pop(session_id, None)

    @staticmethod
    def csrf_ok(session: Session, presented: str | None) -> bool:
        return bool(presented) and hmac.compare_digest(str(presented).encode(), session.csrf.encode())


@dataclass
class ActionLog:
    """Every action, in the service log and appended to a JSON-lines file; the newest kept in memory."""

    path: Path | None
    recent: deque[dict[str, Any]] = field(default_factory=lambda: deque(maxlen=500))

    def record(self, who: str, action: str, target: str, status: int, detail: str = "", **extra: Any) -> None:
        entry = {
            "at": dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds"),
            "who": who,
            "action": action,
            "target": target,
            "status": status,
            "detail": detail[:500],
            **extra,
        }
        self.recent.appendleft(entry)
        audit.info("action %s %s by %s: %s %s", action, target, who, status, detail[:200])
        if self.path is not None:
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                with self.path.open("a", encoding="utf-8") as out:
                    out.write(json.dumps(entry, ensure_ascii=False) + "\n")
            except OSError as exc:
                audit.warning("cannot append to %s: %s", self.path, exc)
