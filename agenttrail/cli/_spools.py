"""What SDKs on this machine have spooled (for ``agenttrail status``), read without
touching the spools: nothing is opened for writing, no lock is taken for long.

A spool directory holds ``<n>.seg`` segments, a ``cursor`` ("<segment> <offset>" of the
first record not yet acknowledged), a ``destination`` and a ``.lock`` its owner holds
(the layout of ``agenttrail.producer``'s spool).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from pathlib import Path
from typing import Any


def spool_roots(data: Path | None) -> list[Path]:
    """The SDK's default spool root (``$XDG_STATE_HOME``) and, with a data dir, DATA/spool."""
    from agenttrail.producer._config import default_spool_root

    roots = [default_spool_root()]
    if data is not None:
        roots.append(data / "spool")
    return roots


def spooled(roots: list[Path]) -> list[dict[str, Any]]:
    """One entry per spool directory that still holds bytes not acknowledged."""
    out = []
    for root in roots:
        if not root.is_dir():
            continue
        for d in sorted(p for p in root.iterdir() if p.is_dir()):
            pending = _pending_bytes(d)
            if not pending:
                continue
            try:
                destination = (d / "destination").read_text().strip() or None
            except OSError:
                destination = None
            out.append(
                {
                    "path": str(d),
                    "destination": destination,
                    "pending_bytes": pending,
                    "owner_alive": _locked(d / ".lock"),
                }
            )
    return out


def _pending_bytes(d: Path) -> int:
    try:
        seg, off = (d / "cursor").read_text().split()
        cursor_seg, cursor_off = int(seg), int(off)
    except (OSError, ValueError):
        cursor_seg, cursor_off = 0, 0
    total = 0
    for path in d.glob("*.seg"):
        with contextlib.suppress(ValueError, OSError):
            n = int(path.stem)
            size = path.stat().st_size
            if n > cursor_seg:
                total += size
            elif n == cursor_seg:
                total += max(size - cursor_off, 0)
    return total


def _locked(lock: Path) -> bool:
    """Whether a live process holds the spool (a shared try-lock fails)."""
    try:
        fd = os.open(lock, os.O_RDONLY)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False
