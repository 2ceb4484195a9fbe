"""Environment switches: one rule for every on/off variable (``ZOO_OFFLINE``, ``ZOO_STRICT_PLUGINS``).

Imports nothing heavy: ``zoo list`` reads a switch before deciding whether to import torch.
"""
from __future__ import annotations

import os

OFF = ("", "0", "no", "false", "off")
"""Values that turn a switch off (compared lower-case, surrounding spaces ignored); any other value is on."""


def env_flag(name: str, default: bool = False) -> bool:
    """The switch ``$name``: ``default`` when unset; off for ``0``, ``no``, ``false``, ``off`` or empty (any
    case); on for anything else (``1``, ``yes``, ``true``, ``on`` ...)."""
    raw = os.environ.get(name)
    if raw is None:
        return default
    return raw.strip().lower() not in OFF
