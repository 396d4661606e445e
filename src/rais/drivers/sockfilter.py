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
KEEP = 0xFFFF  # bytes of the packet to keep: all of a control datagram
_INSN = struct.Struct("=HBBI")

Insn = tuple[int, int, int, int]


def _ld(offset: int) -> Insn:
    return (_LD_W_ABS, 0, 0, (SKF_NET_OFF + offset) & 0xFFFFFFFF)


def _source_blocks(sources: Iterable[IP], want: int, matched: list[Insn]) -> list[Insn]:
    """Compare the IP source with each of ``sources`` (of IP version ``want``);
    on a match run ``matched``, which must end in a return or a jump past
    everything (it is repeated for each source)."""
    insns: list[Insn] = []
    for src in sorted({s for s in sources if s.version == want}, key=lambda s: s.packed):
        words = struct.unpack(f">{len(src.packed) // 4}I", src.packed)
        first = 12 if want == 4 else 8
        for i, word in enumerate(words):
            # Each word: load it, and on a mismatch skip to the next address's block.
            left = len(words) - 1 - i
            insns += [_ld(first + 4 * i), (_JEQ_K, 0, 2 * left + len(matched), word)]
        insns += matched
    return insns


def _packed(insns: list[Insn]) -> bytes:
    if len(insns) > BPF_MAXINSNS:
        raise ValueError(f"{len(insns)} filter instructions, at most {BPF_MAXINSNS}")
    return b"".join(_INSN.pack(*i) for i in insns)


def program(sources: Iterable[IP], family: socket.AddressFamily, *, accept: bool = True) -> bytes:
    """The filter's instructions, packed (see the module docstring). Raises
    ValueError if there are too many sources for one program."""
    match, other = (KEEP, 0) if accept else (0, KEEP)
    want = 4 if family == socket.AF_INET else 6
    insns = _source_blocks(sources, want, [(_RET_K, 0, 0, match)])
    insns.append((_RET_K, 0, 0, other))
    return _packed(insns)


_LD_LEN = 0x80  # BPF_LD | BPF_W | BPF_LEN
_LD_H_ABS = 0x28
_LD_B_ABS = 0x30
_JA = 0x05  # BPF_JMP | BPF_JA
_CHUNK = 100
"""Comparisons per chunk of a pattern: a conditional jump reaches 255 ahead at most."""

Pattern = tuple[int, tuple[tuple[int, bytes], ...]]
"""A datagram's length and (offset, bytes) pieces of its payload (rais.core.wire.Steady)."""


def pattern_block(pattern: Pattern, *, base: int = 8, match: int = KEEP) -> bytes:
    """A piece of program, packed, that returns ``match`` if the payload (from
    offset ``base`` of what the filter sees: 8, past the UDP header, for a
    socket filter; 0 for a reuseport program) is ``pattern``, and else goes on
    after itself (its jumps are relative: blocks go anywhere in a program)."""
    length, ranges = pattern
    tests: list[tuple[Insn, int]] = [((_LD_LEN, 0, 0, 0), base + length)]
    for offset, piece in ranges:
        pos = 0
        while pos < len(piece):
            size = 4 if len(piece) - pos >= 4 else 2 if len(piece) - pos >= 2 else 1
            code = {4: _LD_W_ABS, 2: _LD_H_ABS, 1: _LD_B_ABS}[size]
            value = int.from_bytes(piece[pos : pos + size], "big")
            tests.append(((code, 0, 0, base + offset + pos), value))
            pos += size
    chunks = [tests[i : i + _CHUNK] for i in range(0, len(tests), _CHUNK)]
    total = sum(2 * len(c) + 2 for c in chunks) + 1
    insns: list[Insn] = []
    for chunk in chunks:
        trampoline = len(insns) + 2 * len(chunk) + 1
        for load, value in chunk:
            insns.append(load)
            insns.append((_JEQ_K, 0, trampoline - len(insns) - 1, value))
        insns.append((_JA, 0, 0, 1))  # all equal: over the trampoline
        insns.append((_JA, 0, 0, total - len(insns) - 1))  # to the next block
    insns.append((_RET_K, 0, 0, match))
    return b"".join(_INSN.pack(*i) for i in insns)


def steady_program(
    sources: Iterable[IP],
    family: socket.AddressFamily,
    blocks: Iterable[bytes],
    *,
    other: int = 0,
    stranger: int = 0,
    limit: int = BPF_MAXINSNS,
) -> bytes:
    """Run ``blocks`` (``pattern_block``) for a datagram from one of
    ``sources``, then return ``other``; return ``stranger`` for one from
    anywhere else. The blocks that do not fit in one program are left out,
    from the first that does not on (``limit``: instructions at most).
    Raises ValueError if ``sources`` alone are too many."""
    want = 4 if family == socket.AF_INET else 6
    head = _source_blocks(sources, want, [(_JA, 0, 0, 0)])
    head.append((_RET_K, 0, 0, stranger))
    # Point every source's jump at the first pattern block.
    fixed = _packed(
        [
            (c, jt, jf, len(head) - i - 1) if c == _JA else (c, jt, jf, k)
            for i, (c, jt, jf, k) in enumerate(head)
        ]
    )
    room = (limit - len(head) - 1) * _INSN.size
    body = []
    for block in blocks:
        if len(block) > room:
            break
        room -= len(block)
        body.append(block)
    return b"".join([fixed, *body, _INSN.pack(_RET_K, 0, 0, other)])


SO_ATTACH_REUSEPORT_CBPF = 51


def attach(sock: socket.socket, prog: bytes, *, reuseport: bool = False) -> None:
    """Install ``prog`` on ``sock`` (replacing any filter it had); ``reuseport``:
    as the program that picks the socket of each datagram in ``sock``'s
    ``SO_REUSEPORT`` group (it returns an index; the payload is at offset 0)."""
    buf = ctypes.create_string_buffer(prog, len(prog))
    fprog = struct.pack("HL", len(prog) // _INSN.size, ctypes.addressof(buf))
    option = SO_ATTACH_REUSEPORT_CBPF if reuseport else SO_ATTACH_FILTER
    sock.setsockopt(socket.SOL_SOCKET, option, fprog)


SO_DETACH_FILTER = 27


def detach(sock: socket.socket) -> None:
    """Remove ``sock``'s filter (it keeps every datagram again)."""
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, SO_DETACH_FILTER, 0)
