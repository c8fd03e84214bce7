"""Source profiles: each producer's webhooks, read as data into Stockwire's canonical events.

:func:`load_profile` gives a compiled :class:`Profile`; :meth:`Profile.map_body` turns one delivery
into a :class:`~libs.profiles.canonical.Mapped` event or raises :class:`MappingError` naming the field.
The file format and the Commerce Engine mapping table are in docs/profiles.md.
"""

from __future__ import annotations

from libs.profiles import canonical
from libs.profiles.profile import (
    DEFAULT_MAX_BODY_BYTES,
    UNMAPPED,
    MappingError,
    Profile,
    ProfileError,
    event_type_label,
    load_profile,
    parse_profile,
    profile_names,
)
from libs.profiles.sources import (
    CANONICAL_PROFILE,
    SCHEME_DEFAULT_PROFILES,
    SourceProfiles,
    implied_scheme,
    profile_name,
    source_profile,
)

__all__ = [
    "CANONICAL_PROFILE",
    "DEFAULT_MAX_BODY_BYTES",
    "SCHEME_DEFAULT_PROFILES",
    "UNMAPPED",
    "MappingError",
    "Profile",
    "ProfileError",
    "SourceProfiles",
    "canonical",
    "event_type_label",
    "implied_scheme",
    "load_profile",
    "parse_profile",
    "profile_name",
    "profile_names",
    "source_profile",
]
