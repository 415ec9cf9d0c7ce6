"""Listening sockets, created and bound by the master before any worker starts (DESIGN.md §3).

Two modes:

- ``reuseport`` (Linux, host:port): one SO_REUSEPORT socket per worker slot. The kernel
  balances new connections across the group, and each slot has its own accept queue, which
  the master keeps open for the whole life of the slot: a crashed worker's queued
  connections wait for its replacement instead of being reset.
- ``shared``: one socket accepted by every worker: used for ``--listener shared``, unix
  sockets (``--uds``), an inherited descriptor (``--fd``) and systemd socket activation
  (``LISTEN_FDS``).

Bind problems become one :class:`BindError` with a message that says what to do.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import socket
import stat
import struct
import sys
from dataclasses import dataclass, field

from asynccluster.config import Config

logger = logging.getLogger("asynccluster.master")

# sd_listen_fds(3): inherited sockets start at fd 3.
SD_LISTEN_FDS_START = 3
# struct tcp_info (linux/tcp.h): 8 bytes of u8 fields, then u32 rto, ato, snd_mss, rcv_mss,
# unacked, sacked. For a LISTEN socket the kernel reports the accept-queue length in
# tcpi_unacked and the backlog in tcpi_sacked (tcp_get_info()).
_TCPI_UNACKED_OFFSET = 24
_TCP_INFO_SIZE = 32


class BindError(Exception):
    """The listening socket could not be created; ``str()`` is the one line shown to the user."""


@dataclass
class Listeners:
    """The master's listening sockets, by slot (reuseport) or one for all (shared)."""

    mode: str  # "reuseport" | "shared"
    address: str  # for people: "http://127.0.0.1:8000" or "unix:/run/app.sock"
    family: int = socket.AF_INET
    host: str = ""
    port: int = 0
    backlog: int = 2048
    shared: socket.socket | None = None
    # Slot -> socket, in the order they were listen()ed; see ``group``.
    by_slot: dict[int, socket.socket] = field(default_factory=dict)
    # The reuseport group in the kernel's order: listen() appends; closing a socket moves the
    # last one into its place (net/core/sock_reuseport.c, reuseport_detach_sock). steering.py
    # needs this order to compute indices for its cBPF program.
    group: list[socket.socket] = field(default_factory=list)
    closed: bool = False
    unlink_on_close: str = ""  # the unix socket path we created
    lock: PortLock | None = None  # reuseport: this master's claim on host:port (issue 9)

    def socket_for(self, slot: int) -> socket.socket:
        """The socket worker ``slot`` serves; created (and joined to the group) on first use."""
        if self.closed:
            raise BindError("the cluster's listening sockets are closed (stopping)")
        if self.shared is not None:
            return self.shared
        sock = self.by_slot.get(slot)
        if sock is None:
            sock = bind_reuseport(self.family, self.host, self.port, self.backlog)
            self.by_slot[slot] = sock
            self.group.append(sock)
        return sock

    def release(self, slot: int) -> None:
        """Close the master's copy of a retired slot's socket (reuseport only)."""
        sock = self.by_slot.pop(slot, None)
        if sock is None:
            return
        index = self.group.index(sock)
        self.group[index] = self.group[-1]
        self.group.pop()
        sock.close()

    def all_sockets(self) -> list[socket.socket]:
        return [self.shared] if self.shared is not None else list(self.by_slot.values())

    def queue_depths(self) -> dict[int, int]:
        """Accept-queue depth per slot (the shared socket reports under slot -1)."""
        if self.shared is not None:
            return {-1: accept_queue_depth(self.shared)}
        return {slot: accept_queue_depth(sock) for slot, sock in sorted(self.by_slot.items())}

    def close(self) -> None:
        self.closed = True
        for sock in self.all_sockets():
            sock.close()
        self.by_slot.clear()
        self.group.clear()
        self.shared = None
        if self.unlink_on_close:
            with contextlib.suppress(OSError):
                os.unlink(self.unlink_on_close)
            self.unlink_on_close = ""
        if self.lock is not None:
            self.lock.release()
            self.lock = None


def create_listeners(config: Config, slots: int, environ: dict[str, str] | None = None) -> Listeners:
    """Bind what ``config`` asks for; reuseport sockets for slots 0..slots-1. Raises BindError."""
    env = os.environ if environ is None else environ
    inherited = systemd_fds(env)
    if inherited:
        return shared_from_fd(inherited[0], config.backlog, "systemd socket activation")
    if config.fd >= 0:
        return shared_from_fd(config.fd, config.backlog, f"--fd {config.fd}")
    if config.uds:
        return bind_unix(config.uds, config.backlog)
    family, host = resolve_host(config.host)
    mode = choose_mode(config.listener)
    if mode == "shared":
        sock = bind_tcp(family, host, config.port, config.backlog, reuseport=False)
        port = sock.getsockname()[1]
        return Listeners("shared", http_address(family, host, port), family, host, port, config.backlog, shared=sock)
    lock, port = claim_port(family, host, config.port)
    listeners = Listeners("reuseport", http_address(family, host, port), family, host, port, config.backlog)
    listeners.lock = lock
    try:
        for slot in range(slots):
            listeners.socket_for(slot)
    except BindError:
        listeners.close()
        raise
    return listeners


def choose_mode(listener: str) -> str:
    """reuseport balances only on Linux (elsewhere the last bound socket takes everything)."""
    if listener == "auto":
        return "reuseport" if sys.platform.startswith("linux") and hasattr(socket, "SO_REUSEPORT") else "shared"
    if listener == "reuseport" and not hasattr(socket, "SO_REUSEPORT"):
        raise BindError("--listener reuseport: this platform has no SO_REUSEPORT; use --listener shared")
    return listener


def resolve_host(host: str) -> tuple[int, str]:
    """``--host``: a name or an address; an IPv6 one may be bracketed (``[::1]``, issue 9)."""
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    try:
        infos = socket.getaddrinfo(host or None, 0, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise BindError(f"cannot listen on host {host!r}: {exc.strerror}") from None
    family, _, _, _, sockaddr = infos[0]
    return int(family), str(sockaddr[0])


def http_address(family: int, host: str, port: int) -> str:
    shown = f"[{host}]" if family == socket.AF_INET6 else host
    return f"http://{shown}:{port}"


PORT_ATTEMPTS = 5  # port 0: a free port another master claimed first is picked again


def claim_port(family: int, host: str, port: int) -> tuple[PortLock | None, int]:
    """Own ``host:port`` for this master's life, then check it is free (issue 9).

    SO_REUSEPORT lets a second cluster of the same user silently join our group, and the
    probe below is check-then-bind: two masters started at the same instant both passed it.
    So the claim comes first: an exclusive flock on a lock file named after the address,
    held until Listeners.close() (or the process's death, which releases it), taken before
    the probe; a second master fails at the lock, not after a race.
    """
    for _ in range(PORT_ATTEMPTS if port == 0 else 1):
        chosen = probe_port(family, host, port) if port == 0 else port
        try:
            lock = PortLock.acquire(host, chosen)
        except PortTaken:
            if port == 0:
                continue
            in_use = bind_message(f"{host}:{port}", OSError(errno.EADDRINUSE, "in use"))
            raise BindError(f"{in_use}; another asynccluster master owns it") from None
        try:
            return lock, probe_port(family, host, chosen)
        except BindError:
            if lock is not None:
                lock.release()
            raise
    raise BindError(f"cannot listen on {host}:0: no free port could be claimed")


class PortTaken(Exception):
    """Another process holds the lock of this address."""


@dataclass
class PortLock:
    """An exclusive flock on ``<lock dir>/port-<port>.lock`` (per user: SO_REUSEPORT groups
    never span users). One cluster per port per user, whatever the host spelling."""

    fd: int
    path: str

    @classmethod
    def acquire(cls, host: str, port: int) -> PortLock | None:
        """The lock; PortTaken if another process holds it; None where locking is unavailable
        (no fcntl, or no private directory: the probe alone then guards, as before)."""
        try:
            import fcntl
        except ImportError:
            return None
        directory = lock_directory()
        if directory is None:
            return None
        # Keyed by the port alone: 0.0.0.0:8000 and 127.0.0.1:8000 overlap (a wildcard bind
        # covers the specific one), and a reuseport socket of either joins the other's group.
        path = os.path.join(directory, f"port-{port}.lock")
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
        except OSError as exc:
            logger.warning("cannot create the port lock %s: %s", path, exc.strerror)
            return None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            raise PortTaken(path) from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        return cls(fd, path)

    def release(self) -> None:
        if self.fd >= 0:
            with contextlib.suppress(OSError):
                os.close(self.fd)  # closing releases the flock; the file stays (unlinking races)
            self.fd = -1


def lock_directory() -> str | None:
    """A directory only this user can write: /tmp/asynccluster-ports-UID (created 0700;
    refused if another user owns it). Not under $XDG_RUNTIME_DIR: the same user's service and
    shell may see different ones, and the kernel's reuseport group is per user, not per session."""
    path = f"/tmp/asynccluster-ports-{os.getuid()}"
    with contextlib.suppress(FileExistsError):
        try:
            os.mkdir(path, 0o700)
        except OSError as exc:
            if exc.errno != errno.EEXIST:
                return None
    try:
        info = os.lstat(path)
    except OSError:
        return None
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid() or info.st_mode & 0o077:
        logger.warning("port locks disabled: %s is not a private directory of ours", path)
        return None
    return path


def probe_port(family: int, host: str, port: int) -> int:
    """Check the port is free (and pick one for port 0) with a socket WITHOUT SO_REUSEPORT.

    Why: a reuseport socket silently joins another process's reuseport group on the same
    port (same user), so "address already in use" would never be reported.
    """
    probe = socket.socket(family, socket.SOCK_STREAM)
    try:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        probe.bind((host, port))
        return int(probe.getsockname()[1])
    except OSError as exc:
        raise BindError(bind_message(f"{host}:{port}", exc)) from None
    finally:
        probe.close()


def bind_reuseport(family: int, host: str, port: int, backlog: int) -> socket.socket:
    return bind_tcp(family, host, port, backlog, reuseport=True)


def bind_tcp(family: int, host: str, port: int, backlog: int, *, reuseport: bool) -> socket.socket:
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuseport:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        sock.bind((host, port))
        sock.listen(backlog)
    except OSError as exc:
        sock.close()
        raise BindError(bind_message(f"{host}:{port}", exc)) from None
    sock.set_inheritable(False)
    return sock


def bind_unix(path: str, backlog: int) -> Listeners:
    remove_stale_unix_socket(path)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.bind(path)
        sock.listen(backlog)
    except OSError as exc:
        sock.close()
        raise BindError(bind_message(f"unix:{path}", exc)) from None
    return Listeners("shared", f"unix:{path}", socket.AF_UNIX, path, 0, backlog, shared=sock, unlink_on_close=path)


def remove_stale_unix_socket(path: str) -> None:
    """A socket file left by a dead server blocks bind(); one that still answers is in use."""
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        return
    except OSError as exc:
        raise BindError(bind_message(f"unix:{path}", exc)) from None
    if not stat.S_ISSOCK(mode):
        raise BindError(f"cannot listen on unix:{path}: the path exists and is not a socket")
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.connect(path)
    except OSError:
        os.unlink(path)  # nobody listens: stale
        return
    finally:
        probe.close()
    raise BindError(f"cannot listen on unix:{path}: address already in use (another server answers there)")


def shared_from_fd(fd: int, backlog: int, origin: str) -> Listeners:
    try:
        sock = socket.socket(fileno=fd)
    except OSError as exc:
        raise BindError(f"cannot use {origin}: fd {fd} is not a socket ({exc.strerror})") from None
    if sock.type != socket.SOCK_STREAM:
        raise BindError(f"cannot use {origin}: fd {fd} is not a stream socket")
    with contextlib.suppress(OSError):
        sock.listen(backlog)  # already listening is fine; listen() again only resizes the backlog
    sock.set_inheritable(False)
    name = sock.getsockname()
    if sock.family == socket.AF_UNIX:
        address = f"unix:{name}"
        host, port = str(name), 0
    else:
        host, port = str(name[0]), int(name[1])
        address = http_address(sock.family, host, port)
    logger.info("serving the socket from %s (%s)", origin, address)
    return Listeners("shared", address, sock.family, host, port, backlog, shared=sock)


def systemd_fds(env: dict[str, str] | os._Environ[str]) -> list[int]:
    """The descriptors passed by systemd socket activation, for this process only.

    Consumed: LISTEN_* are removed so the workers (and their children) do not take them too.
    """
    if env.get("LISTEN_PID") != str(os.getpid()):
        return []
    try:
        count = int(env.get("LISTEN_FDS", "0"))
    except ValueError:
        return []
    for key in ("LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"):
        env.pop(key, None)
    return list(range(SD_LISTEN_FDS_START, SD_LISTEN_FDS_START + count))


def bind_message(where: str, exc: OSError) -> str:
    hints = {
        errno.EADDRINUSE: "address already in use (is another server running there? --port 0 picks a free port)",
        errno.EACCES: "permission denied (ports below 1024 need privileges; try a port above 1024)",
        errno.EADDRNOTAVAIL: "address not available (no interface on this machine has that address)",
    }
    return f"cannot listen on {where}: {hints.get(exc.errno or 0, exc.strerror or str(exc))}"


def accept_queue_depth(sock: socket.socket) -> int:
    """Connections waiting in a listening TCP socket's accept queue (Linux); 0 if unknown."""
    if sock.family not in (socket.AF_INET, socket.AF_INET6) or not hasattr(socket, "TCP_INFO"):
        return 0
    try:
        info = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, _TCP_INFO_SIZE)
    except OSError:
        return 0
    if len(info) < _TCPI_UNACKED_OFFSET + 4:
        return 0
    return int(struct.unpack_from("I", info, _TCPI_UNACKED_OFFSET)[0])
