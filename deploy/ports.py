"""Free loopback ports for brokers and gateways started on the fly (tests, scenario replays)."""

from __future__ import annotations

import random
import socket

# Drawn below the kernel's ephemeral range (32768-60999 on Linux) and above Ray's worker ports
# (10002-19999): a port the kernel hands to an outgoing connection a moment later would make a broker or
# gateway fail to bind.
_LISTEN_PORTS = range(20000, 32768)


def free_ports(n: int) -> list[int]:
    """n distinct free loopback ports (all sockets held open until every port is picked)."""
    socks: list[socket.socket] = []
    rng = random.Random()
    try:
        while len(socks) < n:
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            try:
                s.bind(("127.0.0.1", rng.choice(_LISTEN_PORTS)))
            except OSError:
                s.close()
                continue
            socks.append(s)
        return [int(s.getsockname()[1]) for s in socks]
    finally:
        for s in socks:
            s.close()
