"""Steer new connections away from a SO_REUSEPORT listener that is about to be closed.

Why (issue 4, DESIGN.md §3 "Listeners"): on Linux every worker slot has its own SO_REUSEPORT
listening socket, and the kernel hashes each new connection onto one socket of the group.
Closing a listener resets every connection still queued in its accept backlog (granian #567,
#921). To remove a slot without losing anything, the master

1. calls :func:`steer_away` so that no *new* connection lands on the retiring socket,
2. lets the slot's worker keep accepting until :func:`queue_depth` of the socket is 0,
3. closes the socket (every process's copy of it), then
4. calls :func:`clear_steering` on the remaining sockets: back to the kernel's hashing.

How the kernel picks a socket (net/core/sock_reuseport.c, checked against Linux 5.x to 6.x):

- ``reuse->socks[]`` holds the group's listening sockets in the order they called
  ``listen()`` (``__reuseport_add_sock`` appends). Closing one moves the *last* socket into
  its place (``__reuseport_detach_sock``: ``socks[i] = socks[num_socks - 1]``). :func:`detach`
  applies the same rule to our list, so ``group`` stays in the kernel's order.
- With a classic BPF program attached (``SO_ATTACH_REUSEPORT_CBPF``), ``run_bpf_filter``
  uses the program's return value as an index into ``socks[]``; an index ``>= num_socks``
  yields no socket and ``reuseport_select_sock`` falls back to the default hash.
- With ``net.ipv4.tcp_migrate_req = 1`` (Linux ≥ 5.14) ``reuseport_stop_listen_sock``
  keeps a closed listener in a "closed section" and ``inet_csk_listen_stop`` migrates its
  queued connections (and half-open requests) to another listener, chosen by hash even when
  a classic BPF program is attached (``reuseport_migrate_sock``).

Our program, for a group of ``n`` sockets of which index ``r`` retires::

    A = random()            ; SKF_AD_RANDOM: a uniform 32-bit value per packet
    A = A % (n - 1)         ; one of the n-1 sockets that stay
    if A >= r: A = A + 1    ; skip the retiring index
    return A

The program only runs for a SYN (a listener lookup); established connections never
consult it, so attaching and detaching it disturbs nothing already accepted.

Platforms: only Linux has reuseport programs; elsewhere :func:`steer_away` returns
``"none"`` and the cluster uses ``--listener shared`` (one socket that is never closed
while the cluster runs), which has no per-slot backlog to lose.
"""

from __future__ import annotations

import asyncio
import ctypes
import socket
import struct
import sys
import time
from pathlib import Path

# Linux socket options (include/uapi/asm-generic/socket.h); Python's socket module lacks them.
SO_ATTACH_REUSEPORT_CBPF = 51
SO_DETACH_REUSEPORT_BPF = 68  # Linux >= 5.3

# Classic BPF opcodes (include/uapi/linux/bpf_common.h, filter.h).
_BPF_LD_W_ABS = 0x00 | 0x00 | 0x20  # BPF_LD | BPF_W | BPF_ABS
_BPF_ALU_MOD_K = 0x04 | 0x90 | 0x00  # BPF_ALU | BPF_MOD | BPF_K
_BPF_ALU_ADD_K = 0x04 | 0x00 | 0x00  # BPF_ALU | BPF_ADD | BPF_K
_BPF_JMP_JGE_K = 0x05 | 0x30 | 0x00  # BPF_JMP | BPF_JGE | BPF_K
_BPF_RET_A = 0x06 | 0x10  # BPF_RET | BPF_A
_BPF_RET_K = 0x06 | 0x00  # BPF_RET | BPF_K
_SKF_AD_OFF = -0x1000
_SKF_AD_RANDOM = 56
_NO_INDEX = 0xFFFFFFFF  # >= num_socks: "no choice", the kernel hashes as if no program

_TCP_LISTEN = 10  # tcpi_state of a listening socket (include/net/tcp_states.h)
_TCPI_UNACKED = struct.Struct("=I")  # struct tcp_info: 8 single bytes, rto, ato, snd_mss, rcv_mss, unacked
_TCPI_UNACKED_OFFSET = 8 + 4 * 4
_SO_LISTENQLEN_BSD = 0x1012  # FreeBSD getsockopt: connections waiting in the accept queue

MIGRATE_REQ_SYSCTL = Path("/proc/sys/net/ipv4/tcp_migrate_req")

Instruction = tuple[int, int, int, int]  # (code, jt, jf, k) of one struct sock_filter


class _SockFilter(ctypes.Structure):
    _fields_ = [("code", ctypes.c_uint16), ("jt", ctypes.c_uint8), ("jf", ctypes.c_uint8), ("k", ctypes.c_uint32)]


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.POINTER(_SockFilter))]


# ---------------------------------------------------------------- the public API


def steer_away(group: list[socket.socket], retiring: socket.socket) -> str:
    """Make new connections avoid ``retiring``; return the method used.

    ``group`` lists the listening sockets of one SO_REUSEPORT group in the kernel's order
    (the order of their ``listen()`` calls, kept up to date with :func:`detach`).
    Returns ``"cbpf"`` (a program now picks among the other sockets), ``"tcp_migrate_req"``
    (no program possible, but the kernel will migrate the retiring socket's queue when it
    is closed) or ``"none"`` (no protection: the caller should drain as well as it can).
    """
    index = _index_of(group, retiring)
    others = len(group) - 1
    if others >= 1 and sys.platform.startswith("linux") and _attach(group, index, _avoid_program(len(group), index)):
        return "cbpf"
    if migrate_req_enabled():
        return "tcp_migrate_req"
    return "none"


def clear_steering(group: list[socket.socket]) -> None:
    """Return the group to the kernel's default hashing (call once the retiring socket is closed).

    After the close the kernel moved its last socket into the retired index, so the old
    program would now starve that socket: it must go. ``SO_DETACH_REUSEPORT_BPF`` needs
    Linux 5.3; before that, a program that always answers "no index" has the same effect.
    """
    if not group or not sys.platform.startswith("linux"):
        return
    for sock in group:
        try:
            sock.setsockopt(socket.SOL_SOCKET, SO_DETACH_REUSEPORT_BPF, 0)
            return
        except OSError:
            # ENOENT: no program attached (nothing to do); ENOPROTOOPT: kernel < 5.3.
            pass
    _attach(group, None, [(_BPF_RET_K, 0, 0, _NO_INDEX)])


def queue_depth(sock: socket.socket) -> int:
    """How many established connections wait in ``sock``'s accept queue (0 if unknown).

    Linux reports it for a listener in ``tcp_info.tcpi_unacked`` (``tcp_get_info``: for
    TCP_LISTEN, unacked = sk_ack_backlog, sacked = sk_max_ack_backlog). Half-open
    connections (SYN received, handshake not finished) are not counted by any interface.
    """
    try:
        if sys.platform.startswith("linux"):
            info = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 104)
            if len(info) < _TCPI_UNACKED_OFFSET + 4 or info[0] != _TCP_LISTEN:
                return 0
            return int(_TCPI_UNACKED.unpack_from(info, _TCPI_UNACKED_OFFSET)[0])
        if sys.platform.startswith("freebsd"):
            return int(sock.getsockopt(socket.SOL_SOCKET, _SO_LISTENQLEN_BSD))
    except (OSError, AttributeError):
        pass
    return 0


# ---------------------------------------------------------------- helpers for callers


def detach(group: list[socket.socket], closed: socket.socket) -> None:
    """Remove a closed socket from ``group`` the way the kernel removes it from ``socks[]``.

    The last socket takes the closed one's place, so indexes keep matching the kernel's
    (``__reuseport_detach_sock``). Call it right after closing the socket; append a new
    socket to ``group`` right after its ``listen()``.
    """
    index = _index_of(group, closed)
    group[index] = group[-1]
    group.pop()


def migrate_req_enabled() -> bool:
    """Whether ``net.ipv4.tcp_migrate_req`` is on (read-only: we never change system settings)."""
    try:
        return MIGRATE_REQ_SYSCTL.read_text().strip() == "1"
    except OSError:
        return False


async def wait_queue_empty(sock: socket.socket, timeout: float, interval: float = 0.01) -> bool:
    """Poll :func:`queue_depth` until the accept queue is empty; False if ``timeout`` passed.

    The kernel sends no notification when a queue drains, so this polls, bounded by a
    deadline. Use it between :func:`steer_away` and closing the socket.
    """
    deadline = time.monotonic() + timeout
    while queue_depth(sock) > 0:
        if time.monotonic() >= deadline:
            return False
        await asyncio.sleep(interval)
    return True


# ---------------------------------------------------------------- internals


def _index_of(group: list[socket.socket], sock: socket.socket) -> int:
    for index, member in enumerate(group):
        if member is sock or (sock.fileno() >= 0 and member.fileno() == sock.fileno()):
            return index
    raise ValueError(f"socket fd {sock.fileno()} is not in the reuseport group")


def _avoid_program(count: int, retiring: int) -> list[Instruction]:
    """A classic BPF program returning a uniform index in [0, count) other than ``retiring``."""
    return [
        (_BPF_LD_W_ABS, 0, 0, (_SKF_AD_OFF + _SKF_AD_RANDOM) & 0xFFFFFFFF),
        (_BPF_ALU_MOD_K, 0, 0, count - 1),
        (_BPF_JMP_JGE_K, 0, 1, retiring),  # A >= retiring: fall through to the +1; else skip it
        (_BPF_ALU_ADD_K, 0, 0, 1),
        (_BPF_RET_A, 0, 0, 0),
    ]


def _attach(group: list[socket.socket], skip: int | None, program: list[Instruction]) -> bool:
    """Attach ``program`` to the group through one of its sockets (the program is per group).

    The socket that is about to be closed is avoided as the carrier only for clarity: the
    program belongs to the group and survives any single socket's close.
    """
    filters = (_SockFilter * len(program))(*(_SockFilter(*ins) for ins in program))
    fprog = _SockFprog(len(program), ctypes.cast(filters, ctypes.POINTER(_SockFilter)))
    payload = ctypes.string_at(ctypes.addressof(fprog), ctypes.sizeof(fprog))
    for index, sock in enumerate(group):
        if index == skip:
            continue
        try:
            # The kernel copies the program during the call; `filters` is alive until then.
            sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_REUSEPORT_CBPF, payload)
            return True
        except OSError:
            continue
    return False
