"""Which profile reads which source: ``[sources.<name>] profile`` (and ``mapping``), resolved once.

A source that names no profile gets its signature scheme's profile (the scheme ``shopify`` is read
with the profile ``shopify``, and so on). A profile that implies a scheme must agree with the source's
``scheme``; a source that names a profile and no scheme takes the profile's (``libs.config``).
``stockwire``, the canonical dialect, implies none: it is read under any scheme.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

from libs.config import SourceSettings
from libs.profiles.profile import Profile, ProfileError, load_profile, shipped_scheme

__all__ = [
    "CANONICAL_PROFILE",
    "SCHEME_DEFAULT_PROFILES",
    "SourceProfiles",
    "implied_scheme",
    "profile_name",
    "source_profile",
]

log = logging.getLogger("stockwire.profiles")

CANONICAL_PROFILE = "stockwire"
"""Stockwire's own dialect (``order_id``/``lines``): tests, ``stockwire send``, custom producers."""
SCHEME_DEFAULT_PROFILES: Mapping[str, str] = {
    "commerce-engine": "commerce-engine",
    "standard-webhooks": "standard-webhooks",
    "shopify": "shopify",
    "woocommerce": "woocommerce",
    "stripe": "stripe",
}
"""The profile a source gets when it names none, by its signature scheme."""


def profile_name(settings: SourceSettings) -> str:
    """The profile ``settings`` names, else its scheme's default (:data:`SCHEME_DEFAULT_PROFILES`)."""
    return settings.profile or SCHEME_DEFAULT_PROFILES.get(settings.scheme, CANONICAL_PROFILE)


def implied_scheme(profile: str) -> str | None:
    """The signature scheme the shipped profile ``profile`` implies (None: it takes the source's).

    Raises :class:`ProfileError` for an unknown profile."""
    # Read from the file, not compiled: the source's profile is compiled once, by source_profile.
    return shipped_scheme(profile)


def source_profile(source: str, settings: SourceSettings) -> Profile:
    """Load and compile the profile of ``[sources.<source>]``, its ``mapping`` merged over it.

    Raises :class:`ProfileError` naming ``[sources.<source>]`` and the key at fault: an unknown profile,
    a bad override, or a profile whose signature scheme differs from the source's ``scheme``.
    """
    name = profile_name(settings)
    parameters = {"order_metadata_key": settings.order_metadata_key} if settings.order_metadata_key else None
    try:
        profile = load_profile(name, settings.mapping or None, parameters)
    except ProfileError as exc:
        text = str(exc)
        key = "profile"
        if text.startswith("parameter 'order_metadata_key'"):
            key = "order_metadata_key"
        elif settings.mapping and "unknown profile" not in text:
            key = "mapping"
        raise ProfileError(f"[sources.{source}] {key}: {exc}") from None
    if profile.scheme is not None and profile.scheme != settings.scheme:
        raise ProfileError(
            f"[sources.{source}] scheme: {settings.scheme!r} does not agree with profile {name!r}, "
            f"which implies {profile.scheme!r}"
        )
    return profile


class SourceProfiles:
    """Every configured source's compiled profile; a source nobody configured is read as the canonical
    dialect (and logged once), so a consumer never drops an event for want of configuration.

    Raises :class:`ProfileError` at construction for any source whose profile cannot be loaded.
    """

    def __init__(self, sources: Mapping[str, SourceSettings]) -> None:
        self._profiles = {name: source_profile(name, settings) for name, settings in sources.items()}
        self._orders = {name: settings.orders_source or name for name, settings in sources.items()}
        self._fallback: Profile | None = None
        self._warned: set[str] = set()

    def __contains__(self, source: str) -> bool:
        return source in self._profiles

    def names(self) -> dict[str, str]:
        """Source name -> the name of the profile that reads it."""
        return {source: profile.name for source, profile in self._profiles.items()}

    def orders_of(self, source: str) -> str:
        """The order namespace of ``source``'s events: ``[sources.<source>] orders_source``, else itself."""
        return self._orders.get(source, source)

    def for_source(self, source: str) -> Profile:
        """The profile of ``source``; the canonical one for a source that is not configured."""
        profile = self._profiles.get(source)
        if profile is not None:
            return profile
        if source not in self._warned and len(self._warned) < 100:
            self._warned.add(source)
            log.warning("source %r is not configured: its events are read as the %r dialect", source, CANONICAL_PROFILE)
        if self._fallback is None:
            self._fallback = load_profile(CANONICAL_PROFILE)
        return self._fallback
