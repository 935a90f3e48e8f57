"""A pid lock file beside an in-process store, so a second opener can name the holder.

chdb refuses a second process on the same directory with an unhelpful engine error;
this lock is taken first, and a refused lock reads the holder's pid and command line
from the file. Within one process the lock is shared by every open store on the same
directory (reference-counted), because chdb allows several clients per process.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from agenttrail.store._errors import StoreLocked

_registry_lock = threading.Lock()


@dataclass
class _Held:
    fd: int
    count: int


_held: dict[Path, _Held] = {}


def lock_path_for(store_dir: Path) -> Path:
    """The lock file of a store directory: a sibling named ``<dir>.lock``."""
    return store_dir.with_name(store_dir.name + ".lock")


def acquire(store_dir: Path) -> None:
    """Take (or share, within this process) the lock of ``store_dir``. Never blocks long.

    Raises:
        StoreLocked: another process holds the lock, or this process already has a
            different in-process store open (chdb hosts one per process).
    """
    with _registry_lock:
        held = _held.get(store_dir)
        if held is not None:
            held.count += 1
            return
        others = [p for p in _held if p != store_dir]
        if others:
            raise StoreLocked(
                str(store_dir),
                os.getpid(),
                f"this process, which has {others[0]} open; chdb hosts one in-process store "
                "per process",
            )
        store_dir.parent.mkdir(parents=True, exist_ok=True)
        path = lock_path_for(store_dir)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            pid, holder = _read_holder(path)
            raise StoreLocked(str(store_dir), pid, holder) from None
        except BaseException:
            os.close(fd)
            raise
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n{_command_line()}\n".encode())
        _held[store_dir] = _Held(fd=fd, count=1)


def release(store_dir: Path) -> None:
    """Drop one reference; the last one unlocks the file. Safe to call once per acquire."""
    with _registry_lock:
        held = _held.get(store_dir)
        if held is None:
            return
        held.count -= 1
        if held.count > 0:
            return
        del _held[store_dir]
        with contextlib.suppress(OSError):
            os.ftruncate(held.fd, 0)
        os.close(held.fd)  # closing the descriptor releases the flock


def engine_holder_pid(store_dir: Path) -> int | None:
    """The pid ClickHouse recorded in the store's ``status`` file, if any."""
    try:
        text = (store_dir / "status").read_text(errors="replace")
    except OSError:
        return None
    match = re.search(r"^PID:\s*(\d+)", text, re.MULTILINE)
    return int(match.group(1)) if match else None


def _read_holder(path: Path) -> tuple[int | None, str | None]:
    # The holder writes its pid right after locking; give it a moment if we raced it.
    deadline = time.monotonic() + 0.5
    while True:
        try:
            lines = path.read_text(errors="replace").splitlines()
        except OSError:
            lines = []
        if lines and lines[0].strip().isdigit():
            return int(lines[0]), (lines[1].strip() if len(lines) > 1 else None) or None
        if time.monotonic() >= deadline:
            return None, None
        time.sleep(0.02)


def _command_line() -> str:
    argv = list(getattr(sys, "orig_argv", None) or sys.argv) or ["python"]
    return " ".join([Path(argv[0]).name, *argv[1:]])[:200]
