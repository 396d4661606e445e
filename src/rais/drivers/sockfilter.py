"""Classic BPF socket filters by source address, so that the kernel drops a
flood of datagrams from hosts that are not members before they reach a
socket's queue or wake the agent (rais.drivers.transport).

``program(sources, family, accept=True)`` builds a filter that keeps a UDP
datagram only if its IP source address is one of ``sources`` (``accept``
False: only if it is none of them); ``attach(sock, prog)`` installs it with
``SO_ATTACH_FILTER``. A filter sees the packet from its UDP header on; the
IP header is reached through the kernel's ``SKF_NET_OFF`` negative offset
(the IPv4 source at byte 12, the IPv6 source at bytes 8..23).
"""

from __future__ import annotations

import contextlib
import ctypes
import socket
import struct
from collections.abc import Iterable

from rais.base.ip import IP

SO_ATTACH_FILTER = 26
SKF_NET_OFF = -0x100000
BPF_MAXINSNS = 4096

_LD_W_ABS = 0x20  # BPF_LD | BPF_W | BPF_ABS
_JEQ_K = 0x15  # BPF_JMP | BPF_JEQ | BPF_K
_RET_K = 0x06  # BPF_RET | BPF_K
_KEEP = 0xFFFF  # bytes of the packet to keep: all of a control datagram
_INSN = struct.Struct("=HBBI")

Insn = tuple[int, int, int, int]


def _ld(offset: int) -> Insn:
    return (_LD_W_ABS, 0, 0, (SKF_NET_OFF + offset) & 0xFFFFFFFF)


def program(sources: Iterable[IP], family: socket.AddressFamily, *, accept: bool = True) -> bytes:
    """The filter's instructions, packed (see the module docstring). Raises
    ValueError if there are too many sources for one program."""
    match, other = (_KEEP, 0) if accept else (0, _KEEP)
    want = 4 if family == socket.AF_INET else 6
    insns: list[Insn] = []
    for src in sorted({s for s in sources if s.version == want}, key=lambda s: s.packed):
        words = struct.unpack(f">{len(src.packed) // 4}I", src.packed)
        first = 12 if want == 4 else 8
        block: list[Insn] = []
        for i, word in enumerate(words):
            # Each word: load it, and on a mismatch skip to the next address's block.
            left = len(words) - 1 - i
            block += [_ld(first + 4 * i), (_JEQ_K, 0, 2 * left + 1, word)]
        block.append((_RET_K, 0, 0, match))
        insns += block
    insns.append((_RET_K, 0, 0, other))
    if len(insns) > BPF_MAXINSNS:
        raise ValueError(f"{len(insns)} filter instructions, at most {BPF_MAXINSNS}")
    return b"".join(_INSN.pack(*i) for i in insns)


def attach(sock: socket.socket, prog: bytes) -> None:
    """Install ``prog`` on ``sock`` (replacing any filter it had)."""
    buf = ctypes.create_string_buffer(prog, len(prog))
    fprog = struct.pack("HL", len(prog) // _INSN.size, ctypes.addressof(buf))
    sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, fprog)


SO_DETACH_FILTER = 27


def detach(sock: socket.socket) -> None:
    """Remove ``sock``'s filter (it keeps every datagram again)."""
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, SO_DETACH_FILTER, 0)
