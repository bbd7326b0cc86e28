"""Whose sending lease is void: a holder on this host whose process is gone (killed -9)."""

from __future__ import annotations

import os
import socket
from datetime import timedelta

LEASE = timedelta(minutes=2)  # a sending lease; renewed every third of it while the send goes on


def holder_is_dead(holder: str) -> bool:
    """A lease holder on this host whose process no longer exists (killed -9): its lease is void.

    Holders on other hosts cannot be checked from here; their lease simply expires.
    """
    try:
        host, pid_text, _thread = holder.rsplit(":", 2)
        pid = int(pid_text)
    except ValueError:
        return False
    if host != socket.gethostname() or pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return _is_zombie(pid)


def _is_zombie(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as handle:
            return handle.read().rsplit(")", 1)[1].split()[0] == "Z"
    except (OSError, IndexError):
        return False
