"""Channel management: what the admin API and the start-up configuration do to channels.

Every change is validated first (names, secrets, filters, buffer, the outbound URL policy with the
name resolved), then written; a jetstream channel's consumer is provisioned inside the same store
transaction, so a channel never exists without its consumer (or the other way round for long).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from nats.aio.msg import Msg
from nats.js import JetStreamContext

from libs.contracts import AvailabilityChanged, decode_availability
from libs.signing import generate_standard_secret
from libs.tasks import stop_tasks
from libs.topology import INVENTORY
from libs.urlpolicy import Resolver, UrlPolicy, UrlRefused, system_resolver, vet_url

from .domain.channel import (
    Channel,
    ChannelError,
    ChannelFilters,
    KindMismatch,
    validate_buffer,
    validate_kind_filters,
    validate_name,
    validate_secret,
)
from .domain.records import DeliveryAttempt, DeliveryRecord
from .jetstream import (
    availability_kv_stream,
    provision_channel_consumer,
    read_stream,
    remove_channel_consumer,
)
from .metrics import forget_channel
from .service_layer import handlers
from .service_layer.unit_of_work import NewChannel, UnitOfWork
from .settings import DeclaredChannel

__all__ = ["ChannelChanges", "ChannelRegistry", "NotFound", "Unavailable"]

log = logging.getLogger("stockwire.channel_notifier.registry")


class NotFound(LookupError):
    pass


class Unavailable(RuntimeError):
    """JetStream is needed for this and cannot be reached now."""


@dataclass(frozen=True)
class ChannelChanges:
    url: str | None = None
    secrets: list[str] | None = None
    generate_secret: bool = False
    filters: ChannelFilters | None = None
    buffer: int | None = None
    enabled: bool | None = None


@dataclass
class CreatedChannel:
    channel: Channel
    generated_secret: str | None = None


@dataclass
class ChannelRegistry:
    uow: UnitOfWork
    policy: UrlPolicy
    resolve: Resolver = system_resolver
    js: JetStreamContext | None = None
    replay_max_messages: int = 1_000_000
    reseed_after_s: float | None = None
    """Seed a new channel from the bucket once more after this long: by then every replica has
    refreshed its channel list, so an update another replica recorded without the channel is in the
    bucket (the consumer writes the bucket before it reads the channel list)."""
    on_change: Callable[[Sequence[Channel]], Any] | None = None
    _channels: list[Channel] = field(default_factory=list)
    _lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    _background: set[asyncio.Task[Any]] = field(default_factory=set)

    # -- the snapshot the consumer and the workers read -----------------------------------------

    @property
    def channels(self) -> list[Channel]:
        return self._channels

    async def refresh(self) -> list[Channel]:
        self._channels = await self.uow.run(lambda tx: tx.channels())
        if self.on_change is not None:
            result = self.on_change(self._channels)
            if asyncio.iscoroutine(result):
                await result
        return self._channels

    # -- validation -------------------------------------------------------------------------------

    async def _check_url(self, kind: str, url: str | None) -> str | None:
        if kind != "webhook":
            if url:
                raise KindMismatch("invalid_url", "a jetstream channel has no URL; it pulls its consumer")
            return None
        if not url:
            raise ChannelError("invalid_url", "a webhook channel needs a url")
        try:
            await vet_url(url, self.policy, self.resolve)
        except UrlRefused as exc:
            raise ChannelError("url_refused", exc.detail, reason=exc.reason) from None
        return url

    def _require_js(self) -> JetStreamContext:
        if self.js is None:
            raise Unavailable("JetStream is not connected yet; try again")
        return self.js

    # -- create / update / delete -----------------------------------------------------------------

    async def create(
        self,
        *,
        name: str,
        kind: str = "webhook",
        url: str | None = None,
        secrets: Sequence[str] = (),
        filters: ChannelFilters | None = None,
        buffer: int = 0,
        enabled: bool = True,
    ) -> CreatedChannel:
        validate_name(name)
        filters = filters or ChannelFilters()
        validate_kind_filters(kind, filters)
        validate_buffer(buffer, kind)
        url = await self._check_url(kind, url)
        generated = None
        if kind == "webhook":
            secrets = [validate_secret(s) for s in secrets]
            if not secrets:
                generated = generate_standard_secret()
                secrets = [generated]
        elif secrets:
            raise KindMismatch("invalid_secret", "a jetstream channel has no secret")
        async with self._lock:
            js = self._require_js() if kind == "jetstream" else None
            new = NewChannel(name, kind, url, secrets, filters, buffer, enabled)
            channel = await handlers.create_channel(self.uow, new, time.time())
            if js is not None:
                try:
                    await provision_channel_consumer(js, channel)
                except Exception as exc:
                    # No channel without its consumer: take the row back out.
                    await handlers.delete_channel(self.uow, channel.id)
                    raise Unavailable(f"could not create the channel's consumer on JetStream: {exc}") from exc
            await self.refresh()
        log.info("channel %s (%s) created", name, kind)
        if channel.is_webhook:
            await self.seed_from_kv(channel)
            self._reseed_later(channel)
        return CreatedChannel(channel, generated)

    async def update(self, name: str, changes: ChannelChanges) -> CreatedChannel:
        current = await self.get(name)
        values: dict[str, Any] = {}
        filters = changes.filters or current.filters
        validate_kind_filters(current.kind, filters)
        if changes.filters is not None and changes.filters != current.filters:
            values["filters"] = changes.filters
        if changes.buffer is not None and changes.buffer != current.buffer:
            values["buffer"] = validate_buffer(changes.buffer, current.kind)
        if changes.url is not None and changes.url != current.url:
            values["url"] = await self._check_url(current.kind, changes.url)
        generated = None
        if changes.secrets is not None or changes.generate_secret:
            if current.kind != "webhook":
                raise KindMismatch("invalid_secret", "a jetstream channel has no secret")
            given = changes.secrets if changes.secrets is not None else current.secrets
            secrets = [validate_secret(s) for s in given]
            if changes.generate_secret:
                generated = generate_standard_secret()
                secrets = [generated, *secrets]
            if not secrets:
                raise ChannelError("invalid_secret", "a webhook channel needs at least one secret")
            if tuple(secrets) != current.secrets:
                values["secrets"] = secrets
        if changes.enabled is not None and changes.enabled != current.enabled:
            values["enabled"] = changes.enabled
            values["disabled_reason"] = None if changes.enabled else "disabled by an operator"
        if not values:
            return CreatedChannel(current)
        async with self._lock:
            if current.kind == "jetstream" and "filters" in values:
                # The consumer first: if JetStream refuses, the channel is left as it was.
                await provision_channel_consumer(self._require_js(), replace(current, filters=values["filters"]))
            channel = await handlers.change_channel(self.uow, current, values, time.time())
            if channel is None:
                raise NotFound(name)
            await self.refresh()
        log.info("channel %s updated (%s)", name, ", ".join(sorted(values)))
        if channel.is_webhook:
            if "filters" in values:
                await handlers.drop_unwanted(self.uow, channel)
                await self.seed_from_kv(channel)
                self._reseed_later(channel)
            if "buffer" in values:
                # Every SKU's visible availability changed without a new version: send them all again.
                await handlers.resend_channel(self.uow, channel.id, time.time())
        return CreatedChannel(channel, generated)

    async def set_enabled(self, channel: Channel, enabled: bool, reason: str | None) -> None:
        async with self._lock:
            values = {"enabled": enabled, "disabled_reason": None if enabled else reason}
            await handlers.change_channel(self.uow, channel, values, time.time())
            await self.refresh()

    async def delete(self, name: str) -> None:
        current = await self.get(name)
        async with self._lock:
            if current.kind == "jetstream":
                await remove_channel_consumer(self._require_js(), current.name)
            await handlers.delete_channel(self.uow, current.id)
            await self.refresh()
        forget_channel(current.name)
        log.info("channel %s deleted", name)

    async def get(self, name: str) -> Channel:
        channel = await self.uow.run(lambda tx: tx.channel(name))
        if channel is None:
            raise NotFound(name)
        return channel

    async def declare(self, declared: Sequence[DeclaredChannel]) -> None:
        """Channels from the configuration: created when missing, brought in line when they differ.

        Each is applied on its own; the ones that cannot be are named together in one ChannelError.
        """
        problems = []
        for spec in declared:
            try:
                await self._declare_one(spec)
            except ChannelError as exc:
                problems.append(f"{spec.name}: {exc.detail}")
        if problems:
            raise ChannelError("invalid_declared_channels", "[[channel-notifier.channels]] " + "; ".join(problems))

    async def _declare_one(self, spec: DeclaredChannel) -> None:
        filters = ChannelFilters.build(spec.filters.skus, spec.filters.kinds)
        secrets = spec.all_secrets()
        if spec.kind == "webhook" and not secrets:
            raise ChannelError("invalid_secret", "a declared webhook channel needs a secret")
        existing = await self.uow.run(lambda tx: tx.channel(spec.name))
        if existing is None:
            await self.create(
                name=spec.name,
                kind=spec.kind,
                url=spec.url,
                secrets=secrets,
                filters=filters,
                buffer=spec.buffer,
                enabled=spec.enabled,
            )
            return
        if existing.kind != spec.kind:
            raise ChannelError("invalid_kind", f"it exists as a {existing.kind} channel; delete it to change its kind")
        await self.update(
            spec.name,
            ChannelChanges(
                url=spec.url,
                secrets=secrets if spec.kind == "webhook" else None,
                filters=filters,
                buffer=spec.buffer,
                # An operator's (or a 410's) disable survives a restart unless the config disables it.
                enabled=False if not spec.enabled else None,
            ),
        )

    # -- deliveries -----------------------------------------------------------------------------------

    async def deliveries(
        self, name: str, status: str | None, limit: int, after_id: int, per_delivery: int = 0
    ) -> tuple[list[DeliveryRecord], dict[int, list[DeliveryAttempt]]]:
        """A page of the channel's deliveries and the newest ``per_delivery`` attempts of each (by row id)."""
        channel = await self.get(name)
        return await handlers.deliveries_of(self.uow, channel.id, status, limit, after_id, per_delivery)

    async def attempts(self, name: str, delivery_id: int, limit: int) -> list[DeliveryAttempt]:
        """The newest ``limit`` kept attempts of one of the channel's deliveries."""
        channel = await self.get(name)
        found = await handlers.attempts_of(self.uow, channel.id, delivery_id, limit)
        if found is None:
            raise NotFound(f"delivery {delivery_id} of channel {name}")
        return found

    async def retry(self, delivery_id: int) -> DeliveryRecord:
        record = await handlers.retry(self.uow, delivery_id, time.time())
        if record is None:
            raise NotFound(str(delivery_id))
        return record

    async def replay(self, name: str, since: dt.datetime) -> dict[str, int]:
        """Send the channel again what changed since ``since`` (newest version per SKU), read from INVENTORY."""
        channel = await self.get(name)
        js = self._require_js()
        if channel.kind == "jetstream":
            await provision_channel_consumer(js, channel, start=since)
            return {"messages": 0, "skus": 0}
        newest: dict[str, tuple[int, bytes]] = {}

        def visit(msg: Msg) -> None:
            _keep_newest(channel, msg, newest)

        read = await read_stream(
            js, INVENTORY, "inventory.availability.>", visit, since=since, max_messages=self.replay_max_messages
        )
        await handlers.replay(self.uow, channel, newest, time.time())
        log.info("channel %s: replay since %s: %d messages, %d SKUs", name, since.isoformat(), read, len(newest))
        return {"messages": read, "skus": len(newest)}

    async def seed_from_kv(self, channel: Channel) -> int:
        """Give a new (or re-filtered) channel the current availability of every SKU it wants."""
        if self.js is None:
            return 0
        stream, subject = availability_kv_stream()
        newest: dict[str, tuple[int, bytes]] = {}

        def visit(msg: Msg) -> None:
            if msg.data:
                _keep_newest(channel, msg, newest)

        try:
            await read_stream(self.js, stream, subject, visit, last_per_subject=True)
        except Exception as exc:
            log.warning(
                "channel %s: could not read the availability bucket (%s); it gets updates from now on",
                channel.name,
                exc,
            )
            return 0
        return await handlers.record_updates(self.uow, newest, [channel], time.time())

    def _reseed_later(self, channel: Channel) -> None:
        if not self.reseed_after_s:
            return

        async def reseed() -> None:
            await asyncio.sleep(self.reseed_after_s or 0)
            current = await self.uow.run(lambda tx: tx.channel(channel.name))
            if current is not None and current.id == channel.id and current.is_webhook:
                await self.seed_from_kv(current)

        task = asyncio.create_task(reseed(), name=f"notifier-reseed-{channel.name}")
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def close(self) -> None:
        await stop_tasks(list(self._background), log=log)


def _keep_newest(channel: Channel, msg: Msg, newest: dict[str, tuple[int, bytes]]) -> None:
    try:
        update: AvailabilityChanged = decode_availability(msg.data)
    except Exception:
        return
    if not channel.wants(update.sku):
        return
    known = newest.get(update.sku)
    if known is None or update.version > known[0]:
        newest[update.sku] = (update.version, msg.data)
