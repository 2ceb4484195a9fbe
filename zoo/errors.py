"""One exception type for every error a user can fix; the CLI prints it as one line."""
from __future__ import annotations

import difflib


class ZooError(Exception):
    """A user-facing error: the CLI prints ``error: <message>`` and exits 2."""

    exit_code = 2


def did_you_mean(word: str, choices) -> str:
    close = difflib.get_close_matches(str(word), [str(c) for c in choices], n=3, cutoff=0.5)
    return f" (did you mean {' or '.join(repr(c) for c in close)}?)" if close else ""
