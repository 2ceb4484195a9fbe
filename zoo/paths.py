"""Where zoo writes: an output path that cannot be used is a one-line error naming the path and why.

``check_writable`` probes before any work is done (and leaves nothing behind); ``make_dir`` turns the
OS error of the real ``mkdir`` into the same kind of message, for what the probe could not foresee.
"""
from __future__ import annotations

import errno
import os
import tempfile
from pathlib import Path

from .errors import ZooError


def nearest_existing(path: Path) -> Path:
    """``path`` itself or its nearest ancestor that exists (``.`` for a relative path at worst)."""
    for p in [path, *path.parents]:
        if p.exists():
            return p
    return Path(path.anchor or ".")


def check_writable(path: str | Path, what: str, folder: str | Path | None = None) -> None:
    """Fail now when ``path``'s ``folder`` (``path`` itself by default) cannot be created or written in:
    a file where a folder is needed, no permission, a read-only or special file system (/sys, /proc)."""
    path = Path(path)
    base = nearest_existing(Path(folder) if folder is not None else path)
    try:
        if not base.is_dir():
            raise NotADirectoryError(errno.ENOTDIR, "not a folder")
        os.rmdir(tempfile.mkdtemp(prefix=".zoo-probe-", dir=base))
    except OSError as e:
        raise unwritable(path, what, e, base) from None


def make_dir(folder: str | Path, what: str) -> None:
    """``mkdir -p folder``, with a one-line error on failure."""
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise unwritable(folder, what, e, nearest_existing(folder)) from None


def unwritable(path: Path, what: str, e: OSError, base: Path) -> ZooError:
    """The one-line error for an ``OSError`` met creating or writing ``path`` (``base``: the folder
    that exists)."""
    if not base.is_dir() or e.errno in (errno.ENOTDIR, errno.EEXIST):
        why = f"'{base}' is a file, not a folder"
    elif e.errno in (errno.EACCES, errno.EPERM):
        why = f"permission denied in '{base}'"
    elif e.errno == errno.EROFS:
        why = f"'{base}' is on a read-only file system"
    elif e.errno == errno.ENOENT:
        why = f"'{base}' does not accept new files"
    else:
        why = f"{e.strerror or type(e).__name__} in '{base}'"
    return ZooError(f"{what} '{path}' cannot be written: {why} -- choose another path")
