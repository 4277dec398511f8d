"""One run at a time per output: an exclusive lock beside what a run writes (``filelock``, an OS lock).

The operating system drops the lock when its process ends, however it ends, so a lock left by a killed
run is taken over by the next one without a stale-lock check. The holder writes who it is into the lock
file, so that a refused run can name it.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import socket
from collections.abc import Iterator
from pathlib import Path

from filelock import FileLock, Timeout

from linker.errors import LinkerError


def lock_path(target: Path) -> Path:
    """The lock of *target* (a file or a folder), beside it: ``NAME.lock``."""
    return target.with_name(target.name + ".lock")


@contextlib.contextmanager
def exclusive(target: Path, what: str) -> Iterator[None]:
    """Hold the lock of *target* for the block; refuse at once, naming the holder, when another run holds it."""
    path = lock_path(target)
    path.parent.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(path), timeout=0)
    try:
        lock.acquire()
    except Timeout:
        try:
            holder = path.read_text(encoding="utf-8").strip() or "another process"
        except OSError:
            holder = "another process"
        raise LinkerError(f"{what} is in use by another run ({holder}; lock {path}); wait for it to finish or "
                          "stop it, then run the same command again") from None
    try:
        stamp = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
        path.write_text(f"pid {os.getpid()} on {socket.gethostname()}, since {stamp}", encoding="utf-8")
        yield
    finally:
        lock.release()
