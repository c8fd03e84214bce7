"""The console's HTTP app: login, the pages (overview, events, SKUs, channels, dead letters, actions)
and the actions, each a POST carrying the session's CSRF token and recorded with who and when.

Pages are rendered on the server (Jinja, autoescaped); htmx (a static file served from here) refreshes
the overview. Every read goes through another service's HTTP API or JetStream, never a store."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import functools
import itertools
import json
import logging
import math
import sys
import time
from collections.abc import AsyncIterator, Callable, Coroutine, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

import msgspec
from jinja2 import Environment, FileSystemLoader, select_autoescape
from litestar import Litestar, Request, Response, Router, get, post
from litestar.datastructures import Cookie
from litestar.exceptions import NotFoundException, PermissionDeniedException
from litestar.response import Redirect
from litestar.static_files import create_static_files_router
from markupsafe import Markup
from nats.aio.client import Client
from nats.js import JetStreamContext

from libs.bus import close_connection, connect, jetstream
from libs.config import (
    ConfigError,
    SourceSettings,
    StockwireSettings,
    check_known,
    config_error_line,
    load_raw,
    load_section,
    load_settings,
)
from libs.http import create_service_app, exception_response, text_response
from libs.logs import setup_logging
from libs.profiles import MappingError, ProfileError, profile_name, source_profile
from libs.tasks import stop_tasks

from .auth import (
    COOKIE,
    CSRF_FIELD,
    CSRF_HEADER,
    LOGIN_COOKIE,
    ActionLog,
    LoginForms,
    LoginThrottle,
    Session,
    Sessions,
)
from .charts import availability_points, line_chart
from .peers import ApiAnswer, Health, MetricRates, Peers
from .settings import PEER_DEFAULTS, ConsoleSettings, with_peer_urls
from .stream import (
    EventFilter,
    StoredEvent,
    consumer_lag,
    could_be_stored,
    deadletter_count,
    emitted,
    read_event,
    redact,
    search,
)

__all__ = ["build_app", "create_app"]

log = logging.getLogger("stockwire.console")
HERE = Path(__file__).parent
HTMX = "htmx-2.0.11.min.js"
# The dev sources `stockwire up` configures when none is (as stockwire/dev_sources.py names them).
_DEV_SOURCES = {"shop": "stockwire", "store": "commerce-engine"}
_PUBLIC = ("/login", "/static/", "/healthz", "/readyz", "/metrics", "/schema")


class LoginRequired(Exception):
    """A page asked for without a session: answered with the login page."""


@dataclass
class Console:
    shared: StockwireSettings
    settings: ConsoleSettings
    peers: Peers
    sessions: Sessions
    actions: ActionLog
    templates: Environment
    login_forms: LoginForms = field(default_factory=LoginForms)
    login_throttle: LoginThrottle = field(default_factory=LoginThrottle)
    rates: MetricRates = field(default_factory=MetricRates)
    nc: Client | None = None
    connecting: asyncio.Task[None] | None = None
    overview_lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    overview_cache: tuple[float, dict[str, Any]] | None = None
    inflight: dict[str, asyncio.Task[Any]] = field(default_factory=dict)
    last: dict[str, Any] = field(default_factory=dict)
    last_rates: dict[str, float] = field(default_factory=dict)

    @property
    def js(self) -> JetStreamContext | None:
        return jetstream(self.nc, timeout=2.0) if self.nc is not None and self.nc.is_connected else None

    def sources(self) -> dict[str, SourceSettings]:
        if self.shared.sources:
            return dict(self.shared.sources)
        return {name: SourceSettings(profile=profile) for name, profile in _DEV_SOURCES.items()}

    def render(
        self, request: Request[Any, Any, Any], template: str, status: int = 200, **context: Any
    ) -> Response[str]:
        session = _current(request)
        html = self.templates.get_template(template).render(
            session=session,
            csrf=session.csrf if session else "",
            csrf_field=CSRF_FIELD,
            path=request.url.path,
            htmx=HTMX,
            refresh_s=self.settings.refresh_s,
            flash=request.query_params.get("flash"),
            flash_ok=request.query_params.get("ok") == "1",
            **context,
        )
        return text_response(html, "text/html; charset=utf-8", status_code=status)


def _console(request: Request[Any, Any, Any]) -> Console:
    return request.app.state.console  # type: ignore[no-any-return]


def _current(request: Request[Any, Any, Any]) -> Session | None:
    return _console(request).sessions.get(request.cookies.get(COOKIE))


def _session(request: Request[Any, Any, Any]) -> Session:
    session = _current(request)
    if session is None:
        raise LoginRequired
    return session


async def _action(request: Request[Any, Any, Any]) -> tuple[Session, Any]:
    """The session and form of a POST whose CSRF token (form field or header) is the session's; else 403."""
    session = _current(request)
    form = await request.form()
    if session is None:
        raise PermissionDeniedException("log in first")
    presented = form.get(CSRF_FIELD) or request.headers.get(CSRF_HEADER)
    if not Sessions.csrf_ok(session, presented):
        _console(request).actions.record(session.who, "refused", request.url.path, 403, "missing or wrong CSRF token")
        raise PermissionDeniedException("missing or wrong CSRF token")
    return session, form


def _login_redirect(request: Request[Any, Any, Any], _exc: Exception) -> Response[Any]:
    target = "/login?" + urlencode({"next": request.url.path})
    if request.headers.get("hx-request"):
        return Response("", status_code=200, headers={"HX-Redirect": target})
    return Redirect(target, status_code=303)


def _not_found(request: Request[Any, Any, Any], exc: NotFoundException) -> Response[Any]:
    """A path the console has no page for (``/events/abc`` too): a 404 page for a browser, the JSON of every
    service for any other client; logged as every service logs it."""
    answer = exception_response(request, exc)  # logged, as every service logs a 404
    if "text/html" not in request.headers.get("accept", ""):
        return answer
    message = f"The console has no page at {request.url.path}."
    return _console(request).render(request, "message.html", status=404, title="Not found", message=message)


def _back(target: str, message: str, ok: bool = True) -> Redirect:
    joiner = "&" if "?" in target else "?"
    return Redirect(f"{target}{joiner}{urlencode({'flash': message, 'ok': '1' if ok else '0'})}", status_code=303)


def _refused(
    request: Request[Any, Any, Any], session: Session, action: str, what: str, target: str, why: str
) -> Redirect:
    """An action the console refuses before asking any service (its form incomplete): recorded (400) like
    every other, and the form's page shown again saying why."""
    _console(request).actions.record(session.who, action, what, 400, why)
    return _back(target, why, False)


def _status(answer: ApiAnswer) -> int:
    """The status of a page built on ``answer``: 200 when it is one, the service's own 4xx (a 404 for what
    does not exist), 502 when the service failed or could not be asked."""
    if answer.ok:
        return 200
    return answer.status if answer.status < 500 else 502


def _int(text: Any, default: int | None = None) -> int | None:
    try:
        return int(str(text).strip())
    except (TypeError, ValueError):
        return default


def _clipped(text: str, limit: int = 64) -> str:
    return text if len(text) <= limit else text[:limit] + "…"


def _when(text: str | None) -> dt.datetime | None:
    if not text:
        return None
    try:
        value = dt.datetime.fromisoformat(text)
    except ValueError:
        return None
    return value if value.tzinfo else value.replace(tzinfo=dt.UTC)


def _skus_in(value: Any) -> list[str]:
    """Every SKU a canonical event names (a ``sku`` field at any depth)."""
    found: list[str] = []
    if isinstance(value, Mapping):
        for key, item in value.items():
            if key == "sku" and isinstance(item, str):
                found.append(item)
            else:
                found += _skus_in(item)
    elif isinstance(value, list | tuple):
        for item in value:
            found += _skus_in(item)
    return list(dict.fromkeys(found))


def _order_in(value: Any) -> str | None:
    if isinstance(value, Mapping):
        for key in ("order_key", "order_id", "order"):
            if isinstance(value.get(key), str | int) and not isinstance(value.get(key), bool):
                return str(value[key])
        for item in value.values():
            found = _order_in(item)
            if found:
                return found
    return None


# --- login ------------------------------------------------------------------------------------------------
def _login_form(
    request: Request[Any, Any, Any],
    target: str,
    status: int = 200,
    error: str | None = None,
    headers: Mapping[str, str] | None = None,
) -> Response[str]:
    """The login page, its form carrying the login CSRF token its cookie holds (the browser's own while
    valid, so several tabs may log in; else a new one)."""
    console = _console(request)
    now = time.time()
    token = request.cookies.get(LOGIN_COOKIE)
    if not console.login_forms.valid(token, now):
        token = console.login_forms.issue(now)
    response = console.render(
        request,
        "login.html",
        status=status,
        next=target,
        error=error,
        login_csrf=token,
        enabled=bool(console.shared.admin_token),
    )
    response.set_cookie(
        Cookie(
            key=LOGIN_COOKIE,
            value=token,
            httponly=True,
            samesite="strict",
            path="/login",
            max_age=int(console.login_forms.ttl_s),
        )
    )
    for name, value in (headers or {}).items():
        response.headers[name] = value
    return response


@get("/login", sync_to_thread=False)
def login_page(request: Request[Any, Any, Any], next: str = "/") -> Response[str]:
    return _login_form(request, next if next.startswith("/") and not next.startswith("//") else "/")


@post("/login")
async def login(request: Request[Any, Any, Any]) -> Response[Any]:
    """The admin token for a session: only with the login form's CSRF token, and only while the client's
    address has not failed ``[console] login_failures`` times within ``login_window_s`` (then 429)."""
    console = _console(request)
    form = await request.form()
    address = request.client.host if request.client else "?"
    target = str(form.get("next") or "/")
    if not target.startswith("/") or target.startswith("//"):
        target = "/"
    who, now = f"unknown ({address})", time.time()
    wait = console.login_throttle.retry_after(address, now)
    if wait is not None:
        seconds = max(1, math.ceil(wait))
        console.actions.record(who, "login", "/login", 429, f"too many failed logins; refused for {seconds} s")
        error = f"Too many failed logins from {address}: try again in {seconds} s."
        return _login_form(request, target, 429, error, {"Retry-After": str(seconds)})
    if not console.login_forms.accepts(request.cookies.get(LOGIN_COOKIE), str(form.get(CSRF_FIELD) or ""), now):
        console.actions.record(who, "refused", "/login", 403, "missing or wrong login CSRF token")
        error = "This login form expired or did not come from this console: try again."
        return _login_form(request, target, 403, error)
    session = console.sessions.login(str(form.get("token") or ""), address)
    if session is None:
        failures = console.login_throttle.failed(address, now)
        console.actions.record(who, "login", "/login", 401, f"wrong admin token ({failures} within the window)")
        if failures >= console.settings.login_failures:
            log.warning("console: %d failed logins from %s; it waits before trying again", failures, address)
        return _login_form(request, target, 401, "That is not the admin token.")
    console.login_throttle.forget(address)
    console.actions.record(session.who, "login", "/login", 200)
    response: Response[Any] = Redirect(target, status_code=303)
    _expire(response, LOGIN_COOKIE, "/login")
    response.set_cookie(
        Cookie(
            key=COOKIE,
            value=session.id,
            httponly=True,
            samesite="strict",
            path="/",
            max_age=int(console.settings.session_ttl_s),
        )
    )
    return response


@post("/logout")
async def logout(request: Request[Any, Any, Any]) -> Response[Any]:
    session, _form = await _action(request)
    console = _console(request)
    console.sessions.logout(session.id)
    console.actions.record(session.who, "logout", "/logout", 200)
    response: Response[Any] = Redirect("/login", status_code=303)
    _expire(response, COOKIE, "/")
    return response


def _expire(response: Response[Any], key: str, path: str) -> None:
    """Remove a cookie with the attributes it was set with (``delete_cookie`` sends SameSite=Lax and no
    HttpOnly: every cookie of the console is HttpOnly and SameSite=Strict, its removal too)."""
    response.set_cookie(Cookie(key=key, value="", httponly=True, samesite="strict", path=path, max_age=0, expires=0))


# --- overview ---------------------------------------------------------------------------------------------
async def _overview(console: Console) -> dict[str, Any]:
    """What the overview shows; computed once per half a refresh interval however many pages poll."""
    async with console.overview_lock:
        cached = console.overview_cache
        if cached is not None and time.monotonic() - cached[0] < console.settings.refresh_s / 2:
            return cached[1]
        result = await _read_overview(console)
        console.overview_cache = (time.monotonic(), result)
        return result


async def _within(console: Console, key: str, make: Callable[[], Coroutine[Any, Any, Any]]) -> tuple[Any, bool]:
    """The answer of ``make()`` if it comes within the overview's budget, else the last one (and False).

    A call that overruns is left to finish, and its answer kept for the next refresh; no second call to
    the same place starts while one is in flight, so a busy service is never asked more often."""
    task = console.inflight.get(key)
    if task is None or task.done():
        task = asyncio.create_task(make())
        console.inflight[key] = task

        def keep(done: asyncio.Task[Any]) -> None:
            if not done.cancelled() and done.exception() is None:
                console.last[key] = done.result()

        task.add_done_callback(keep)
    try:
        return await asyncio.wait_for(asyncio.shield(task), console.settings.overview_budget_s), True
    except Exception as exc:  # slow or failed: the overview shows the last answer, marked
        if not isinstance(exc, TimeoutError):
            log.warning("overview: %s: %s", key, exc)
        return console.last.get(key), False


async def _read_overview(console: Console) -> dict[str, Any]:
    started = time.perf_counter()
    services = list(PEER_DEFAULTS)
    js = console.js
    budget_ms = console.settings.overview_budget_s * 1000
    answers = await asyncio.gather(
        *(_within(console, f"health:{s}", functools.partial(console.peers.health, s)) for s in services),
        _within(console, "lag", lambda: consumer_lag(js)) if js else _none(([], False)),
        _within(console, "deadletters", lambda: deadletter_count(js)) if js else _none((None, False)),
    )
    healths: list[Health] = []
    fresh: list[Health] = []
    for service, (health, on_time) in zip(services, answers[: len(services)], strict=True):
        if health is None:
            health = Health(service, console.peers.urls[service], False, False, {}, {}, "no answer yet")
        if on_time:
            fresh.append(health)
        else:
            health = replace(health, error=f"slower than {budget_ms:.0f} ms: its previous answer is shown")
        healths.append(health)
    (lag, _), (dead, _) = answers[len(services) :]
    lag = lag or []
    totals: dict[str, float] = {}
    for health in healths:
        totals.update({k: v for k, v in health.metrics.items() if "_total" in k})
    # Rates from the answers that came now; a late service keeps the rates of its last answer.
    console.last_rates.update(console.rates.rates({k: v for h in fresh for k, v in h.metrics.items() if "_total" in k}))
    rates = console.last_rates
    channels: dict[str, dict[str, float]] = {}
    for key, value in totals.items():
        if key.startswith("channel_notifier_deliveries_total{"):
            channel, _, outcome = key[key.index("{") + 1 : -1].rpartition(",")
            row = channels.setdefault(channel, {"sent": 0.0, "sent_rate": 0.0, "failed": 0.0, "failed_rate": 0.0})
            kind = "sent" if outcome == "delivered" else "failed"
            row[kind] += value
            row[f"{kind}_rate"] += rates.get(key, 0.0)
    gauges = [(_gauge_label(k), v) for h in healths for k, v in sorted(h.metrics.items()) if "_total" not in k]
    return {
        "healths": healths,
        "webhooks_rate": sum(v for k, v in rates.items() if k.startswith("ingress_webhooks_received_total")),
        "applied_rate": sum(v for k, v in rates.items() if k.startswith("inventory_events_applied_total")),
        "channels": dict(sorted(channels.items())),
        "lag": lag,
        "deadletters": dead,
        "gauges": gauges,
        "nats": console.nc is not None and console.nc.is_connected,
        "took_ms": (time.perf_counter() - started) * 1000,
        "now": dt.datetime.now(dt.UTC).strftime("%H:%M:%S UTC"),
    }


_GAUGES = {
    "ingress_spool_depth": "webhooks spooled (JetStream away)",
    "inventory_parked_events": "events parked (awaiting a predecessor)",
    "outbox_relay_backlog_rows": "outbox rows not yet published",
    "channel_notifier_pending_deliveries": "deliveries pending",
}


def _gauge_label(key: str) -> str:
    name, _, labels = key.partition("{")
    label = _GAUGES.get(name, name)
    return f"{label}: {labels.rstrip('}')}" if labels else label


async def _none(value: Any) -> Any:
    return value


@get("/")
async def overview(request: Request[Any, Any, Any]) -> Response[str]:
    _session(request)
    console = _console(request)
    return console.render(request, "overview.html", **await _overview(console))


@get("/overview/panel")
async def overview_panel(request: Request[Any, Any, Any]) -> Response[str]:
    _session(request)
    console = _console(request)
    started = time.perf_counter()
    response = console.render(request, "overview_panel.html", **await _overview(console))
    response.headers["Server-Timing"] = f"render;dur={(time.perf_counter() - started) * 1000:.1f}"
    return response


# --- events -----------------------------------------------------------------------------------------------
@get("/events")
async def events(
    request: Request[Any, Any, Any],
    source: str = "",
    type: str = "",
    order: str = "",
    sku: str = "",
    since: str = "",
    until: str = "",
) -> Response[str]:
    _session(request)
    console = _console(request)
    js = console.js
    form = {"source": source, "type": type, "order": order, "sku": sku, "since": since, "until": until}
    context: dict[str, Any] = {"form": form, "sources": sorted(console.sources()), "found": [], "scanned": 0}
    unreadable = [
        f"{name} {_clipped(text.strip())!r} is not a date and time (ISO 8601, e.g. 2026-12-08T10:00, UTC unless "
        "it says)"
        for name, text in (("since", since), ("until", until))
        if text.strip() and _when(text.strip()) is None
    ]
    if unreadable:
        # What cannot be a time is shown back clipped: the page does not grow with the query.
        form.update({name: _clipped(form[name]) for name in ("since", "until") if _when(form[name].strip()) is None})
        # Searching without the bound would answer a question nobody asked.
        return console.render(request, "events.html", status=400, error="; ".join(unreadable), **context)
    if js is None:
        return console.render(request, "events.html", error="JetStream is not connected yet.", **context)
    if order.strip():
        answer = await console.peers.order(order.strip(), source or None)
        context["order"] = answer
        if answer.ok:
            body = answer.body
            seqs = [e["stream_seq"] for e in body.get("events", []) if e.get("stream_seq")]
            seqs += [e["stream_seq"] for e in body.get("parked", []) if e.get("stream_seq")]
            stored = await asyncio.gather(*(read_event(js, int(s)) for s in sorted(set(seqs))))
            # The order's events, through the form's other fields as a search would take them.
            among = EventFilter(
                event_type=type.strip() or None,
                text=f'"{sku.strip()}"' if sku.strip() else None,
                since=_when(since.strip()),
                until=_when(until.strip()),
            )
            context["found"] = [e for e in stored if e is not None and among.admits(e)]
            context["order_ledger"] = await _order_ledger(console, body)
            return console.render(request, "events.html", **context)
    wanted = EventFilter(
        source=source or None,
        event_type=type.strip() or None,
        text=(f'"{sku.strip()}"' if sku.strip() else None) or (order.strip() or None),
        since=_when(since.strip()),
        until=_when(until.strip()),
    )
    found, scanned = await search(js, wanted, limit=100, scan=console.settings.search_scan)
    context.update(found=found, scanned=scanned)
    return console.render(request, "events.html", **context)


async def _order_ledger(console: Console, order: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The ledger rows of the order's reservation (``order:<source>:<id>``) over the SKUs of its lines."""
    key = f"order:{order.get('source')}:{order.get('order_id')}"
    skus = list(dict.fromkeys(str(line["sku"]) for line in order.get("lines", []) if "sku" in line))
    rows: list[dict[str, Any]] = []
    answers = await asyncio.gather(*(console.peers.ledger(sku) for sku in skus))
    for sku, answer in zip(skus, answers, strict=True):
        if answer.ok:
            rows += [{"sku": sku, **e} for e in answer.body.get("entries", []) if e.get("reservation") == key]
    return sorted(rows, key=lambda r: (str(r.get("occurred_at")), r["sku"], r["version"]))


def _mapping(console: Console, event: StoredEvent) -> tuple[dict[str, Any] | None, str | None]:
    """How the source's profile maps the event (what `stockwire sources check` prints), or why not."""
    source = console.sources().get(event.source)
    if source is None:
        return None, f"no source {event.source!r} is configured here"
    try:
        profile = source_profile(event.source, source)
        mapped = profile.map_body(
            event.body, event_type=event.event_type or None, event_id=event.event_id or None, headers=event.headers
        )
    except ProfileError as exc:
        return None, str(exc)
    except MappingError as exc:
        return None, f"does not fit profile {profile_name(source)!r}: {exc.field}: {exc.detail}"
    return {
        "profile": profile.name,
        "event_type": mapped.event_type,
        "event_id": mapped.event_id,
        "occurred_at": mapped.occurred_at,
        "kind": profile.kind_of(mapped.event_type),
        "event": redact(msgspec.to_builtins(mapped.event)),
    }, None


@get("/events/{seq:int}")
async def event_page(request: Request[Any, Any, Any], seq: int) -> Response[str]:
    _session(request)
    console = _console(request)
    js = console.js
    # A sequence no stream could hold is missing whether JetStream is there or not (read_event never asks).
    if js is None and could_be_stored(seq):
        return console.render(request, "message.html", status=503, title="Event", message="JetStream is not connected.")
    event = None if js is None else await read_event(js, seq)
    if js is None or event is None:
        return console.render(request, "message.html", status=404, title="Event", message=f"No COMMERCE event {seq}.")
    mapped, mapping_error = _mapping(console, event)
    skus = _skus_in(mapped["event"]) if mapped else []
    order_id = _order_in(mapped["event"]) if mapped else None
    source = console.sources().get(event.source)
    orders_source = (source.orders_source if source else None) or event.source
    ledger_answers = await asyncio.gather(*(console.peers.ledger(sku) for sku in skus))
    caused = [
        {"sku": sku, **e}
        for sku, answer in zip(skus, ledger_answers, strict=True)
        if answer.ok
        for e in answer.body.get("entries", [])
        if e.get("source") == event.msg_id
    ]
    messages = await asyncio.gather(
        *(
            emitted(js, kind, row["sku"], int(row["version"]))
            for row in caused
            for kind in (row["kind"], "availability")
        )
    )
    order = await console.peers.order(order_id, orders_source) if order_id else None
    deliveries = await _deliveries_for(console, skus)
    return console.render(
        request,
        "event.html",
        event=event,
        mapped=json.dumps(mapped, indent=2, ensure_ascii=False) if mapped else None,
        mapping_error=mapping_error,
        caused=caused,
        order=order,
        order_id=order_id,
        orders_source=orders_source,
        deliveries=deliveries,
        skus=skus,
        emitted=[m for m in messages if m is not None],
    )


async def _deliveries_for(console: Console, skus: list[str]) -> list[dict[str, Any]]:
    if not skus:
        return []
    answer = await console.peers.channels()
    if not answer.ok:
        return []
    names = [str(c["name"]) for c in answer.body.get("channels", [])]
    pages = await asyncio.gather(*(console.peers.deliveries(name, limit=1000) for name in names))
    return [
        {"channel": name, **d}
        for name, page in zip(names, pages, strict=True)
        if page.ok
        for d in page.body.get("deliveries", [])
        if d.get("sku") in skus
    ]


# --- SKUs -------------------------------------------------------------------------------------------------
@get("/skus")
async def sku_search(request: Request[Any, Any, Any], sku: str = "") -> Response[Any]:
    _session(request)
    if sku.strip():
        return Redirect(f"/skus/{quote(sku.strip(), safe='')}", status_code=303)
    return _console(request).render(request, "sku.html", view=None, sku="")


@get("/skus/{sku:str}")
async def sku_page(request: Request[Any, Any, Any], sku: str) -> Response[str]:
    _session(request)
    console = _console(request)
    view = await console.peers.sku(sku)
    if not view.ok:
        return console.render(request, "sku.html", status=_status(view), view=view, sku=sku)
    latest = int(view.body.get("version") or 0)
    shown = 500
    after = max(0, latest - shown)
    trail = await console.peers.ledger(sku, after=after, limit=1000)
    entries: list[dict[str, Any]] = trail.body.get("entries", []) if trail.ok else []
    start = None
    if after and entries:
        # The chart starts from the state before the first row shown: the current state less the deltas.
        start = {
            "on_hand": int(view.body["on_hand"]) - sum(int(e["on_hand_delta"]) for e in entries),
            "reserved": int(view.body["reserved"]) - sum(int(e["reserved_delta"]) for e in entries),
            "committed": int(view.body["committed"]) - sum(int(e["committed_delta"]) for e in entries),
        }
    chain = _chain_status(entries)
    chart = Markup(line_chart(availability_points(entries, start), title=f"Available units of {sku}"))
    return console.render(
        request, "sku.html", view=view, sku=sku, entries=list(reversed(entries)), chain=chain, chart=chart, after=after
    )


def _chain_status(entries: list[dict[str, Any]]) -> tuple[bool, str]:
    """Whether each row names the previous row's hash (the links; `stockwire ledger verify` recomputes)."""
    for before, after in itertools.pairwise(entries):
        if after.get("prev_hash") != before.get("hash"):
            return (
                False,
                f"broken at version {after.get('version')}: its prev_hash is not the hash of version "
                f"{before.get('version')}",
            )
    return True, f"{len(entries)} rows linked, each naming the hash of the one before"


# --- channels ---------------------------------------------------------------------------------------------
@get("/channels")
async def channels_page(request: Request[Any, Any, Any]) -> Response[str]:
    _session(request)
    console = _console(request)
    answer = await console.peers.channels()
    return console.render(request, "channels.html", answer=answer)


_ATTEMPTS_SHOWN = 5
"""A delivery's newest attempts on its channel's page."""


@get("/channels/{name:str}")
async def channel_page(request: Request[Any, Any, Any], name: str, status: str = "") -> Response[str]:
    _session(request)
    console = _console(request)
    channel, deliveries = await asyncio.gather(
        console.peers.channel(name), console.peers.deliveries(name, status or None, attempts=_ATTEMPTS_SHOWN)
    )
    return console.render(
        request,
        "channel.html",
        status=_status(channel),
        channel=channel,
        deliveries=deliveries,
        name=name,
        status_filter=status,
    )


@post("/channels/{name:str}/enabled")
async def set_channel_enabled(request: Request[Any, Any, Any], name: str) -> Redirect:
    session, form = await _action(request)
    console = _console(request)
    enabled = str(form.get("enabled")) == "true"
    answer = await console.peers.set_enabled(name, enabled)
    what = "enable" if enabled else "disable"
    console.actions.record(session.who, f"channel.{what}", name, answer.status, "" if answer.ok else answer.detail)
    return _back(f"/channels/{quote(name, safe='')}", f"{what}d" if answer.ok else answer.detail, answer.ok)


@post("/channels/{name:str}/settings")
async def change_channel(request: Request[Any, Any, Any], name: str) -> Redirect:
    session, form = await _action(request)
    console = _console(request)
    target = f"/channels/{quote(name, safe='')}"
    buffer = _int(form.get("buffer"))
    if buffer is None or buffer < 0:
        return _refused(
            request, session, "channel.change", name, target, "the buffer is a whole number of units, 0 or more"
        )

    def listed(field: str) -> list[str]:
        return [part.strip() for part in str(form.get(field) or "").split(",") if part.strip()]

    changes = {"buffer": buffer, "filters": {"skus": listed("skus"), "kinds": listed("kinds") or ["availability"]}}
    answer = await console.peers.change_channel(name, changes)
    console.actions.record(
        session.who, "channel.change", name, answer.status, json.dumps(changes) if answer.ok else answer.detail
    )
    return _back(target, "buffer and filters saved" if answer.ok else answer.detail, answer.ok)


@post("/channels/{name:str}/replay")
async def replay_channel(request: Request[Any, Any, Any], name: str) -> Redirect:
    session, form = await _action(request)
    console = _console(request)
    since = _when(str(form.get("since") or ""))
    target = f"/channels/{quote(name, safe='')}"
    if since is None:
        return _refused(
            request, session, "channel.replay", name, target, "give the time to replay from (YYYY-MM-DDTHH:MM)"
        )
    answer = await console.peers.replay_channel(name, since.isoformat())
    console.actions.record(session.who, "channel.replay", name, answer.status, json.dumps(answer.body)[:300])
    if not answer.ok:
        return _back(target, answer.detail, False)
    return _back(target, _replayed(since, answer.body))


def _replayed(since: dt.datetime, counts: Mapping[str, Any]) -> str:
    """What a channel's replay did, as its page says it."""
    messages, skus = int(counts.get("messages") or 0), int(counts.get("skus") or 0)
    return (
        f"replay since {since.strftime('%Y-%m-%d %H:%M:%S')} UTC: {messages} INVENTORY "
        f"message{'' if messages == 1 else 's'} read, {skus} SKU{'' if skus == 1 else 's'} queued again "
        "at the newest version"
    )


@post("/deliveries/{delivery_id:int}/retry")
async def retry_delivery(request: Request[Any, Any, Any], delivery_id: int) -> Redirect:
    session, form = await _action(request)
    console = _console(request)
    answer = await console.peers.retry_delivery(delivery_id)
    console.actions.record(
        session.who, "delivery.retry", str(delivery_id), answer.status, "" if answer.ok else answer.detail
    )
    channel = str(form.get("channel") or "")
    target = f"/channels/{quote(channel, safe='')}" if channel else "/channels"
    return _back(target, f"delivery {delivery_id} queued again" if answer.ok else answer.detail, answer.ok)


# --- dead letters -----------------------------------------------------------------------------------------
_DL_FILTERS = ("consumer", "subject", "reason", "since", "until")


@get("/deadletters")
async def deadletters_page(
    request: Request[Any, Any, Any],
    consumer: str = "",
    subject: str = "",
    reason: str = "",
    since: str = "",
    until: str = "",
    start_seq: int = 1,
) -> Response[str]:
    _session(request)
    console = _console(request)
    filters = {"consumer": consumer, "subject": subject, "reason": reason, "since": since, "until": until}
    params: dict[str, Any] = {k: v for k, v in filters.items() if v}
    for key in ("since", "until"):
        if key in params:
            when = _when(params[key])
            params[key] = when.isoformat() if when else params[key]
    answer = await console.peers.deadletters({**params, "start_seq": start_seq, "limit": 200, "scan": 10000})
    return console.render(
        request, "deadletters.html", status=_status(answer), answer=answer, filters=filters, start_seq=start_seq
    )


@get("/deadletters/{seq:int}")
async def deadletter_page(request: Request[Any, Any, Any], seq: int) -> Response[str]:
    _session(request)
    console = _console(request)
    if not could_be_stored(seq):
        detail = f"no dead letter at sequence {seq}"
        answer = ApiAnswer(404, {"error": "not_found", "detail": detail})
    else:
        answer = await console.peers.deadletter(seq)
    body = None
    if answer.ok and isinstance(answer.body, Mapping) and answer.body.get("body") is not None:
        try:
            body = json.dumps(redact(json.loads(answer.body["body"])), indent=2, ensure_ascii=False)
        except ValueError:
            body = str(answer.body["body"])
    headers = redact(answer.body.get("headers", {})) if answer.ok and isinstance(answer.body, Mapping) else {}
    return console.render(
        request, "deadletter.html", status=_status(answer), answer=answer, seq=seq, body=body, headers=headers
    )


@post("/deadletters/replay")
async def replay_deadletters(request: Request[Any, Any, Any]) -> Response[Any]:
    session, form = await _action(request)
    console = _console(request)
    seqs = [s for s in (_int(v) for v in form.getall("seq", [])) if s]
    dry_run = str(form.get("dry_run") or "") == "true"
    if seqs:
        body: dict[str, Any] = {"seqs": seqs, "dry_run": dry_run}
        target = "/deadletters" if len(seqs) > 1 else f"/deadletters/{seqs[0]}"
    elif str(form.get("all") or "") == "true":
        body = {"all": True, "dry_run": dry_run, "limit": 1000, "scan": 10000}
        for key in _DL_FILTERS:
            value = str(form.get(key) or "").strip()
            if value:
                when = _when(value) if key in ("since", "until") else None
                body[key] = when.isoformat() if when else value
        target = "/deadletters?" + urlencode({k: str(form.get(k) or "") for k in _DL_FILTERS if form.get(k)})
    else:
        why = "choose dead letters, or replay the filtered set"
        return _refused(request, session, "deadletter.replay", "none chosen", "/deadletters", why)
    answer = await console.peers.replay(body)
    summary = answer.body.get("summary") if answer.ok and isinstance(answer.body, Mapping) else None
    what = "deadletter.dry_run" if dry_run else "deadletter.replay"
    console.actions.record(
        session.who,
        what,
        ",".join(map(str, seqs)) or "filtered set",
        answer.status,
        json.dumps(summary) if summary is not None else answer.detail,
        request=body,
    )
    if not answer.ok:
        return _back(target, answer.detail, False)
    return console.render(request, "replayed.html", answer=answer.body, dry_run=dry_run, back=target)


@post("/deadletters/discard")
async def discard_deadletters(request: Request[Any, Any, Any]) -> Redirect:
    session, form = await _action(request)
    console = _console(request)
    seqs = [s for s in (_int(v) for v in form.getall("seq", [])) if s]
    reason = str(form.get("discard_reason") or "").strip()
    back = f"/deadletters/{seqs[0]}" if len(seqs) == 1 else "/deadletters"
    if not seqs:
        return _refused(
            request, session, "deadletter.discard", "none chosen", "/deadletters", "choose the dead letters to discard"
        )
    if not reason:
        why = "give the reason for discarding (it is kept with each record)"
        return _refused(request, session, "deadletter.discard", ",".join(map(str, seqs)), back, why)
    answer = await console.peers.discard(seqs, reason)
    console.actions.record(
        session.who,
        "deadletter.discard",
        ",".join(map(str, seqs)),
        answer.status,
        json.dumps(answer.body) if answer.ok else answer.detail,
        request={"seqs": seqs, "reason": reason},
    )
    if not answer.ok:
        return _back(back, answer.detail, False)
    discarded = answer.body.get("discarded", []) if isinstance(answer.body, Mapping) else []
    missing = answer.body.get("missing", []) if isinstance(answer.body, Mapping) else []
    message = f"discarded {len(discarded)}: {', '.join(map(str, discarded)) or 'none'}"
    if missing:
        message += f"; no dead letter at {', '.join(map(str, missing))}"
    return _back("/deadletters", message, not missing)


# --- actions ----------------------------------------------------------------------------------------------
@get("/actions")
async def actions_page(request: Request[Any, Any, Any]) -> Response[str]:
    _session(request)
    console = _console(request)
    return console.render(request, "actions.html", actions=list(console.actions.recent), path_file=console.actions.path)


def _environment() -> Environment:
    env = Environment(
        loader=FileSystemLoader(HERE / "templates"),
        autoescape=select_autoescape(["html"]),
        trim_blocks=True,
        lstrip_blocks=True,
    )

    def when(value: Any) -> str:
        if value in (None, ""):
            return ""
        if isinstance(value, int | float):
            return dt.datetime.fromtimestamp(float(value), dt.UTC).strftime("%Y-%m-%d %H:%M:%S")
        return str(value).replace("T", " ")[:19]

    env.filters["when"] = when
    env.filters["rate"] = lambda value: f"{float(value or 0):,.1f}/s"
    env.filters["q"] = lambda value: quote(str(value), safe="")
    return env


def build_app(shared: StockwireSettings, settings: ConsoleSettings) -> Litestar:
    console = Console(
        shared=shared,
        settings=settings,
        peers=Peers(settings, shared.admin_token),
        sessions=Sessions(shared.admin_token, settings.session_ttl_s),
        actions=ActionLog(Path(shared.data_dir) / "console-actions.jsonl"),
        templates=_environment(),
        login_throttle=LoginThrottle(settings.login_failures, settings.login_window_s),
    )

    async def connect_nats() -> None:
        console.nc = await connect(shared.nats, "stockwire-console")

    @contextlib.asynccontextmanager
    async def lifespan(_app: Litestar) -> AsyncIterator[None]:
        console.connecting = asyncio.create_task(connect_nats(), name="console-connect")
        try:
            yield
        finally:
            await stop_tasks([console.connecting], log=log)
            if console.nc is not None:
                await close_connection(console.nc, drain=False)
            await console.peers.close()

    async def nats_connected() -> bool:
        return console.nc is not None and console.nc.is_connected

    pages = Router(
        path="/",
        route_handlers=[
            login_page,
            login,
            logout,
            overview,
            overview_panel,
            events,
            event_page,
            sku_search,
            sku_page,
            channels_page,
            channel_page,
            set_channel_enabled,
            change_channel,
            replay_channel,
            retry_delivery,
            deadletters_page,
            deadletter_page,
            replay_deadletters,
            discard_deadletters,
            actions_page,
        ],
        exception_handlers={LoginRequired: _login_redirect},
        include_in_schema=False,
    )
    static = create_static_files_router(path="/static", directories=[HERE / "static"], include_in_schema=False)
    app = create_service_app(
        "console",
        [pages, static],
        readiness={"nats_connected": nats_connected},
        lifespan=[lifespan],
        request_max_body_size=256 * 1024,
        description="The operator console: pages over the other services' admin APIs and JetStream.",
        exception_handlers={NotFoundException: _not_found},
    )
    app.state.console = console
    return app


def load_console_config() -> tuple[StockwireSettings, ConsoleSettings]:
    """The shared settings and ``[console]`` (its peers' URLs filled from their sections); a configuration
    that cannot be used ends the process with status 2 and one line on stderr."""
    try:
        raw = load_raw()
        check_known(raw, {"console": ConsoleSettings})
        settings = with_peer_urls(load_section(raw, "console", ConsoleSettings), raw)
        return load_settings(raw), settings
    except ConfigError as exc:
        print(config_error_line(exc, "console"), file=sys.stderr, flush=True)
        raise SystemExit(2) from None


def create_app() -> Litestar:
    """The uvicorn factory: reads configuration from the file and the environment."""
    setup_logging()
    return build_app(*load_console_config())
