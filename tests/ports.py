"""Loopback ports for servers a test stops and starts again on the same port.

A port the kernel hands out for ``bind(0)`` comes from the ephemeral range, which it also
hands out as the *source* port of outgoing connections, and to every other test worker's
``bind(0)``. While a test's broker is down, a client reconnecting to it, or another test
starting its own server, can then take that very port: the restarted broker cannot bind
it, or the test's agents deliver to somebody else's broker. A port below the ephemeral
range is never handed out that way, so only an explicit choice (like this one) takes it.
"""

from __future__ import annotations

import random
import socket
from pathlib import Path

_RANGE_FILE = Path("/proc/sys/net/ipv4/ip_local_port_range")


def _ephemeral_low() -> int:
    try:
        return int(_RANGE_FILE.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768  # Linux's default; other systems start higher


def restartable_port(host: str = "127.0.0.1") -> int:
    """A free port on ``host`` below the ephemeral range, chosen at random.

    Random, so that parallel test workers rarely try the same one; checked by binding it
    (as a listener would, with SO_REUSEADDR), so a port in use is skipped.

    Raises:
        RuntimeError: no free port was found in 200 tries.
    """
    low = max(_ephemeral_low(), 12000)
    rnd = random.SystemRandom()
    for _ in range(200):
        port = rnd.randrange(10000, low)
        with socket.socket() as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind((host, port))
            except OSError:
                continue
            return port
    raise RuntimeError(f"no free port on {host} between 10000 and {low}")
