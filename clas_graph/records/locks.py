"""One writer at a time: an flock-based lock (the `filelock` library) with its holder written beside it.

The kernel drops an flock when its process dies, however it dies (SIGKILL included), so a lock left by a killed
process is simply free for the next one: there is nothing stale to break. The holder file (`<lock>.holder`,
JSON: pid, host, command, since) exists only to name the holder to a process that has to wait.

The lock of a run directory is `.lock` inside it. Locks on a runs folder as a whole (held while a run directory
is chosen or created) and on its statistics cache live in the user cache (`<cache>/locks/`, keyed by the runs
folder's real path), so a runs folder holds nothing but run directories.

A second process waits for the lock, saying who holds it; `CLAS_GRAPH_LOCK_WAIT=SECONDS` bounds the wait
(0: refuse at once), after which it refuses in one line naming the holder.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import sys
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterator

from filelock import FileLock, Timeout
from rich.console import Console
from rich.markup import escape

from ..cache import cache_root
from ..errors import BusyError

LOCK_WAIT_ENV = "CLAS_GRAPH_LOCK_WAIT"


def _wait_limit() -> float | None:
    """Seconds to wait for a held lock (None: as long as it takes)."""
    value = os.environ.get(LOCK_WAIT_ENV, "").strip()
    if not value:
        return None
    try:
        return max(float(value), 0.0)
    except ValueError:
        raise BusyError(f"{LOCK_WAIT_ENV}={value!r} is not a number of seconds", where=LOCK_WAIT_ENV,
                        fix=f"set {LOCK_WAIT_ENV} to e.g. 0 (refuse at once) or 600, or unset it to wait") from None


def runs_folder_lock(runs_root: Path, name: str) -> Path:
    """Where the lock `name` of the runs folder `runs_root` lives (outside it: see the module docstring)."""
    key = hashlib.sha256(str(runs_root.resolve()).encode()).hexdigest()[:16]
    return cache_root() / "locks" / f"runs-{key}.{name}.lock"


def holder_path(lock_path: Path) -> Path:
    return lock_path.with_name(lock_path.name + ".holder")


def describe_holder(lock_path: Path) -> str:
    """Who holds `lock_path`, as its holder file says ('another process' when it cannot be read)."""
    try:
        holder = json.loads(holder_path(lock_path).read_text(encoding="utf-8"))
        return (f"pid {holder['pid']} on {holder['host']} ({holder['command']}, since {holder['since']})")
    except (OSError, ValueError, KeyError, TypeError):
        return "another process"


def _write_holder(lock_path: Path) -> None:
    holder = {"pid": os.getpid(), "host": socket.gethostname(), "command": " ".join(sys.argv)[:500],
              "since": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    tmp = holder_path(lock_path).with_name(f".{holder_path(lock_path).name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(holder, allow_nan=False) + "\n", encoding="utf-8")
    os.replace(tmp, holder_path(lock_path))


def acquire(lock_path: Path, what: str, *, console: Console | None = None) -> FileLock:
    """Hold the lock at `lock_path` (for `what`, named in messages); the caller releases it (`release`).
    Reentrant within a process (one lock object per path)."""
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(lock_path), is_singleton=True)
    try:
        lock.acquire(timeout=0)
    except Timeout:
        limit = _wait_limit()
        holder = describe_holder(lock_path)
        fix = (f"wait for that process to finish, or stop it (its results so far are kept); {LOCK_WAIT_ENV}="
               "SECONDS sets how long to wait (unset: wait until it is free)")
        if limit == 0:
            raise BusyError(f"{what} is in use by {holder}", where=str(lock_path), fix=fix) from None
        (console or Console(stderr=True)).print(
            f"[yellow]waiting: {escape(what)} is in use by {escape(holder)}[/] (lock {escape(str(lock_path))})")
        try:
            lock.acquire(timeout=-1 if limit is None else limit)
        except Timeout:
            raise BusyError(f"{what} is still in use by {describe_holder(lock_path)} after {limit:g} s",
                            where=str(lock_path), fix=fix) from None
    try:
        _write_holder(lock_path)
    except BaseException:
        lock.release()
        raise
    return lock


def release(lock: FileLock) -> None:
    """Give the lock back (its holder file goes once the last reentrant hold is released)."""
    if lock.lock_counter == 1:
        holder_path(Path(lock.lock_file)).unlink(missing_ok=True)
    lock.release()


@contextmanager
def held(lock_path: Path, what: str, *, console: Console | None = None) -> Iterator[None]:
    lock = acquire(lock_path, what, console=console)
    try:
        yield
    finally:
        release(lock)
