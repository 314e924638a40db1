"""What a gang member's container tells the agent about its network: its addresses and a free port.

A multi-node gang (remote_agent/gangs.py) needs, before its code runs, an
address of rank 0 that the other members reach and a port free there
(``MASTER_ADDR``, ``MASTER_PORT``). Containers share their host's network
namespace, so the container's own interfaces are its host's (a Slurm job's are
its compute node's): the worker lists them when it is ready, only for a gang
member (``NBMODAL_CLUSTER_ID`` set). ``NBMODAL_CLUSTER_ADDR`` in the host's
environment names the address to use (a site's InfiniBand interface, say), first.
"""

from __future__ import annotations

import fcntl
import ipaddress
import os
import socket
import struct

CLUSTER_ID_ENV = "NBMODAL_CLUSTER_ID"
# A member container's rank and its gang's size, for a launcher that starts a gang's containers together
# (remote_agent/launchers/slurm_gang.py: one allocation of N nodes).
GANG_RANK_ENV = "NBMODAL_GANG_RANK"
GANG_SIZE_ENV = "NBMODAL_GANG_SIZE"
ADDRESS_ENV = "NBMODAL_CLUSTER_ADDR"
_SIOCGIFADDR = 0x8915  # Linux: an interface's IPv4 address


def interface_addresses() -> list[str]:
    """This machine's IPv4 addresses: the configured one first, then others, loopback last."""
    found: list[str] = []
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        for _, name in socket.if_nameindex():
            try:
                packed = fcntl.ioctl(probe.fileno(), _SIOCGIFADDR, struct.pack("256s", name[:15].encode()))
            except OSError:  # an interface without an IPv4 address
                continue
            found.append(socket.inet_ntoa(packed[20:24]))
    preferred = [os.environ[ADDRESS_ENV]] if os.environ.get(ADDRESS_ENV) else []
    others = sorted((a for a in found if a not in preferred), key=lambda a: ipaddress.ip_address(a).is_loopback)
    ordered = preferred + others
    return ordered or ["127.0.0.1"]


def free_port() -> int:
    """A TCP port free on every address of this machine now (the kernel's pick; torch binds it soon after)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("0.0.0.0", 0))
        return int(sock.getsockname()[1])


def is_member() -> bool:
    return bool(os.environ.get(CLUSTER_ID_ENV))
