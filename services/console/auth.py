"""Sessions (the admin token exchanged for an HttpOnly, SameSite=Strict cookie), CSRF tokens (the
session's, and the login form's own before there is a session), the limit on failed logins per client
address, and the record of every action: who (the session, from which address), when, what and the
answer."""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import logging
import secrets
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = [
    "COOKIE",
    "CSRF_FIELD",
    "CSRF_HEADER",
    "LOGIN_COOKIE",
    "ActionLog",
    "LoginForms",
    "LoginThrottle",
    "Session",
    "Sessions",
]

COOKIE = "stockwire_console"
LOGIN_COOKIE = "stockwire_console_login"
"""The login form's CSRF token, before there is a session (a signed double-submit cookie)."""
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
class LoginForms:
    """The login form's CSRF protection: a signed double-submit token. ``GET /login`` sets it as a cookie
    (HttpOnly, SameSite=Strict) and puts the same value in the form; ``POST /login`` is taken only when
    both are present, equal, signed with this process's key and younger than ``ttl_s``. The signature
    keeps a cookie planted by another site (a sibling domain can set cookies) from being accepted."""

    ttl_s: float = 3600.0
    key: bytes = field(default_factory=lambda: secrets.token_bytes(32), repr=False)

    def _sign(self, body: str) -> str:
        return hmac.new(self.key, body.encode(), hashlib.sha256).hexdigest()

    def issue(self, now: float) -> str:
        """A new token: issued-at, a random part and their signature."""
        body = f"{int(now)}.{secrets.token_urlsafe(24)}"
        return f"{body}.{self._sign(body)}"

    def valid(self, token: str | None, now: float) -> bool:
        """Whether ``token`` is one this process issued less than ``ttl_s`` ago."""
        if not token or len(token) > 200:
            return False
        body, _, signature = token.rpartition(".")
        issued, _, _nonce = body.partition(".")
        if not issued.isdigit() or not hmac.compare_digest(signature.encode(), self._sign(body).encode()):
            return False
        return 0 <= now - int(issued) < self.ttl_s

    def accepts(self, cookie: str | None, presented: str | None, now: float) -> bool:
        """The double submit: the form's token is the cookie's, and it is valid."""
        if not cookie or not presented:
            return False
        return hmac.compare_digest(cookie.encode(), presented.encode()) and self.valid(cookie, now)


@dataclass
class LoginThrottle:
    """At most ``limit`` failed logins per client address within ``window_s`` seconds; beyond, every login
    from that address (right token or not) is refused until the oldest failure leaves the window."""

    limit: int = 5
    window_s: float = 60.0
    max_addresses: int = 10_000
    """Addresses tracked at most: when more fail at once, the ones that failed longest ago are forgotten."""
    failures: dict[str, deque[float]] = field(default_factory=dict)

    def _recent(self, address: str, now: float) -> deque[float]:
        times = self.failures.get(address)
        if times is None:
            return deque()
        while times and times[0] <= now - self.window_s:
            times.popleft()
        if not times:
            del self.failures[address]
        return times

    def retry_after(self, address: str, now: float) -> float | None:
        """Seconds until ``address`` may try again, or None when it may now."""
        times = self._recent(address, now)
        if self.limit > 0 and len(times) >= self.limit:
            return max(0.0, times[-self.limit] + self.window_s - now)
        return None

    def failed(self, address: str, now: float) -> int:
        """Count a failed login; returns how many ``address`` has within the window."""
        times = self._recent(address, now)
        if address not in self.failures:
            if len(self.failures) >= self.max_addresses:
                for stale in [a for a, t in self.failures.items() if not t or t[-1] <= now - self.window_s]:
                    del self.failures[stale]
                while len(self.failures) >= self.max_addresses:
                    oldest = min(self.failures, key=lambda a: self.failures[a][-1])
                    del self.failures[oldest]
            self.failures[address] = times
        times.append(now)
        return len(times)

    def forget(self, address: str) -> None:
        """A successful login clears the address's failures."""
        self.failures.pop(address, None)


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
