"""``sd_notify(3)`` without libsystemd: a datagram to ``$NOTIFY_SOCKET``.

Under systemd (``Type=notify``) ``flaxdev serve`` says ``READY=1`` once its
worker is attached, ``RELOADING=1`` while it switches versions and
``STOPPING=1`` when it stops, with a ``STATUS=`` line; elsewhere
:func:`notify` does nothing.
"""

from __future__ import annotations

import os
import socket

__all__ = ["notify"]


def notify(*fields: str) -> bool:
    """Send ``KEY=VALUE`` lines to the service manager; False when there is none."""
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return False
    if address.startswith("@"):  # abstract namespace
        address = "\0" + address[1:]
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
        try:
            sock.sendto("\n".join(fields).encode(), address)
        except OSError:
            return False
    return True
