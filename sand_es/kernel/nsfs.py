"""Network namespace handles on the file system, and netlink sockets opened inside them.

pyroute2 opens a socket in another namespace by forking a child (about 8 ms each,
kernel-and-platform.md §1); an agent wiring hundreds of containers cannot pay that
per endpoint. A thread can instead `setns(2)` into the namespace, open the socket and
switch back: the socket stays bound to the namespace it was opened in (about 0.1 ms).
The switching happens in a worker thread, so the event loop's thread never changes
namespace.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import errno
import os
import socket
import stat
from collections.abc import Iterator
from typing import Final

from pyroute2.netlink import NETLINK_ROUTE

CLONE_NEWNET: Final = 0x40000000
_MS_BIND: Final = 4096
_MS_REC: Final = 16384
_MS_SHARED: Final = 1 << 20
_MNT_DETACH: Final = 2
_SELF: Final = "/proc/thread-self/ns/net"
_libc = ctypes.CDLL(None, use_errno=True)


class NamespaceGone(FileNotFoundError):
    """The path is not (or no longer) a network namespace handle."""


def identity(path: str) -> tuple[int, int] | None:
    """The (device, inode) of the namespace mounted at `path`, or None without one.

    A path whose namespace was replaced (a container restarted under the same
    handle) gets another identity, so cached sockets can tell they are stale.
    """
    try:
        st = os.stat(path)
    except (FileNotFoundError, NotADirectoryError):
        return None
    # An nsfs mount is a regular-looking file on a special device; an empty file
    # left behind by a half-done mount is on the ordinary file system.
    if not stat.S_ISREG(st.st_mode) or st.st_size != 0 or st.st_dev == os.stat(os.path.dirname(path)).st_dev:
        return None
    return (st.st_dev, st.st_ino)


def exists(path: str) -> bool:
    """Whether `path` is a mounted network namespace handle."""
    return identity(path) is not None


async def create(path: str) -> None:
    """Create a namespace and bind-mount it at `path` (as `ip netns add` does); existing counts as done."""
    if exists(path):
        return
    await asyncio.to_thread(_create, path)


def _create(path: str) -> None:
    """`ip netns add` without its fork: a worker thread unshares, mounts its new namespace, goes back.

    pyroute2's `netns.create` forks a child for this; a fork of a process running gRPC
    threads can crash in the child (seen here: SIGSEGV), and costs ~10 ms besides.
    """
    directory = os.path.dirname(path)
    os.makedirs(directory, mode=0o755, exist_ok=True)
    _share_mounts_under(directory)
    if os.path.exists(path):  # an empty file left by an interrupted create
        os.unlink(path)
    os.close(os.open(path, os.O_RDONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0))
    try:
        with _coming_back():
            if _libc.unshare(CLONE_NEWNET) != 0:
                raise _errno_error("unshare", path)
            if _libc.mount(_SELF.encode(), path.encode(), b"none", _MS_BIND, None) != 0:
                raise _errno_error("mount", path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(path)
        raise


def _share_mounts_under(directory: str) -> None:
    """Make `directory` a shared mount, as iproute2 does, so other mount namespaces see new handles."""
    if _libc.mount(b"none", directory.encode(), b"none", _MS_SHARED | _MS_REC, None) == 0:
        return
    if ctypes.get_errno() != errno.EINVAL:  # EINVAL: not a mount point yet
        raise _errno_error("mount --make-shared", directory)
    if _libc.mount(directory.encode(), directory.encode(), b"none", _MS_BIND | _MS_REC, None) != 0:
        raise _errno_error("mount --bind", directory)
    if _libc.mount(b"none", directory.encode(), b"none", _MS_SHARED | _MS_REC, None) != 0:
        raise _errno_error("mount --make-shared", directory)


def _errno_error(what: str, path: str) -> OSError:
    code = ctypes.get_errno()
    return OSError(code, f"{what}: {os.strerror(code)}", path)


async def remove(path: str) -> None:
    """Unmount and delete the handle at `path`; the kernel frees the namespace with its last user."""
    await asyncio.to_thread(_remove, path)


def _remove(path: str) -> None:
    # MNT_DETACH: a process still inside keeps the namespace alive; the handle goes now.
    if _libc.umount2(path.encode(), _MNT_DETACH) != 0 and ctypes.get_errno() not in (
        errno.EINVAL,
        errno.ENOENT,
    ):
        raise _errno_error("umount", path)
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)


async def netlink_socket(path: str) -> socket.socket:
    """A route netlink socket bound to the namespace at `path` (`NamespaceGone` if there is none)."""
    return await asyncio.to_thread(_socket_in, path)


def _socket_in(path: str) -> socket.socket:
    with handle(path) as target, _coming_back():
        if _libc.setns(target, CLONE_NEWNET) != 0:
            code = ctypes.get_errno()
            if code == errno.EINVAL:  # a plain file, not a namespace handle
                raise NamespaceGone(errno.ENOENT, "not a network namespace", path)
            raise OSError(code, os.strerror(code), path)
        return socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM, NETLINK_ROUTE)


@contextlib.contextmanager
def handle(path: str) -> Iterator[int]:
    """A file descriptor of the namespace handle at `path` (`NamespaceGone` if there is none)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except (FileNotFoundError, NotADirectoryError) as exc:
        raise NamespaceGone(errno.ENOENT, "no network namespace", path) from exc
    try:
        yield fd
    finally:
        os.close(fd)


@contextlib.contextmanager
def _coming_back() -> Iterator[None]:
    """Whatever network namespace the block moves this thread to, the thread comes back here."""
    here = os.open(_SELF, os.O_RDONLY | os.O_CLOEXEC)
    try:
        yield
    finally:
        try:
            if _libc.setns(here, CLONE_NEWNET) != 0:
                os.abort()  # this worker thread would serve others from the wrong namespace
        finally:
            os.close(here)
