"""One writer per run directory: an OS file lock on ``RUN/.zoo.lock``, which holds the writer's PID.

``flock`` (stdlib ``fcntl``) belongs to the open file: the kernel releases it when the process ends,
however it ends -- ``kill -9`` included -- so a lock file left behind by a killed run blocks nothing; only
a live writer does. A finished run removes its lock file. The third-party ``filelock`` package would add
nothing needed here (no timeouts, no Windows), and does not record who holds a lock.

Removing the file on release is safe because :func:`acquire` checks, once it holds the lock, that the
file it locked is still the one at the path (a writer that just finished may have removed it).
"""
from __future__ import annotations

import os
import shlex
import sys
from pathlib import Path

from .errors import ZooError
from .paths import unwritable

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows: no lock
    fcntl = None

LOCK_NAME = ".zoo.lock"


class RunLock:
    """A held lock; :meth:`release` (or the end of the process) frees it."""

    def __init__(self, fd: int, path: Path):
        self.fd, self.path = fd, path

    def release(self) -> None:
        if self.fd is None:
            return
        try:
            os.unlink(self.path)
        except OSError:
            pass
        os.close(self.fd)  # closing the last descriptor releases the flock
        self.fd = None


def acquire(run_dir: Path) -> RunLock | None:
    """Lock ``run_dir`` for this process and write its PID and command into the lock file; a one-line
    error naming the holder's PID when another live process holds it."""
    if fcntl is None:
        return None
    path = Path(run_dir) / LOCK_NAME
    while True:
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as e:
            raise unwritable(Path(run_dir), "run directory", e, Path(run_dir)) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 4096).decode(errors="replace")
            os.close(fd)
            raise busy(run_dir, holder) from None
        try:
            if os.fstat(fd).st_ino == os.stat(path).st_ino:
                break
        except FileNotFoundError:
            pass
        os.close(fd)  # the file was removed by a writer that just finished: lock the new one
    os.ftruncate(fd, 0)
    os.write(fd, f"{os.getpid()}\nzoo {shlex.join(sys.argv[1:])}\n".encode())
    return RunLock(fd, path)


def check_free(run_dir: Path) -> None:
    """Fail early (before any work) when a live process writes ``run_dir``; takes no lock."""
    path = Path(run_dir) / LOCK_NAME
    if fcntl is None or not path.is_file():
        return
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        raise busy(run_dir, os.read(fd, 4096).decode(errors="replace")) from None
    finally:
        os.close(fd)


def busy(run_dir: Path, holder: str) -> ZooError:
    lines = [line.strip() for line in holder.splitlines()] + ["", ""]
    pid = lines[0] if lines[0].isdigit() else None
    who = f"PID {pid}" + (f" ({lines[1]})" if lines[1] else "") if pid else "PID not yet written"
    stop = f" or stop it (kill {pid} saves a checkpoint and stops)" if pid else ""
    return ZooError(f"run directory '{run_dir}' is in use by another zoo process, {who}: wait for it to "
                    f"finish{stop}, then try again")
