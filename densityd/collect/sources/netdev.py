"""A process's network interfaces from ``/proc/PID/net/dev``: a container's, seen from the host.

``/proc/PID/net/dev`` lists the interfaces of the network namespace PID is in, so the
container's init process (``State.Pid``) gives its interfaces without entering it. The file
(Linux's ``dev_seq_show``)::

    Inter-|   Receive                                                |  Transmit
     face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs ...
        lo:       0       0    0    0    0     0          0         0        0       0    0 ...
      eth0:     200       2    0    0    0     0          0         0        0       0    0 ...

Receive: bytes packets errs drop fifo frame compressed multicast; transmit: bytes packets errs
drop fifo colls carrier compressed. The kernel's ``drop`` adds ``rx_missed_errors`` to the
dropped count, as ``ip -s link`` does not: the file is the reference here.
"""

from __future__ import annotations

import os
from pathlib import Path

from densityd.collect.sources.cgroups import read_kernel_file
from densityd.model import NetworkInterface

# Loopback only carries a workload's traffic to itself.
LOOPBACK = "lo"


def parse_net_dev(text: str) -> tuple[NetworkInterface, ...]:
    """The interfaces of one ``/proc/net/dev`` text, loopback left out, in file order."""
    interfaces = []
    for line in text.splitlines():
        name, sep, rest = line.partition(":")
        name = name.strip()
        if not sep or "|" in name or name == LOOPBACK:
            continue  # the two header lines, and lo
        fields = rest.split()
        if len(fields) < 16 or not all(f.isdigit() for f in fields[:16]):
            continue
        values = [int(f) for f in fields[:16]]
        interfaces.append(
            NetworkInterface(
                name=name,
                receive_bytes=values[0],
                receive_packets=values[1],
                receive_errors=values[2],
                receive_drops=values[3],
                transmit_bytes=values[8],
                transmit_packets=values[9],
                transmit_errors=values[10],
                transmit_drops=values[11],
            )
        )
    return tuple(interfaces)


def net_namespace(proc_root: Path, pid: int | str) -> int | None:
    """The inode of the network namespace a process is in, None when it cannot be read."""
    try:
        return os.stat(proc_root / str(pid) / "ns" / "net").st_ino
    except OSError:
        return None


def host_net_namespace(proc_root: Path) -> int | None:
    """The host's network namespace: PID 1's, else (PID 1's may be unreadable, as on this
    machine's init) densityd's own, which is the host's when it runs with the host network."""
    return net_namespace(proc_root, 1) or net_namespace(proc_root, "self")


def read_interfaces(proc_root: Path, pid: int) -> tuple[NetworkInterface, ...] | None:
    """The interfaces of the namespace ``pid`` is in; None when its file cannot be read."""
    try:
        return parse_net_dev(read_kernel_file(f"{proc_root}/{pid}/net/dev"))
    except OSError:
        return None
