"""Network namespaces for tests: enter one from the current thread, and thin `ip netns` helpers.

`in_netns` is how a harness that stays in the root namespace talks to processes living in
other namespaces: a socket belongs to the namespace it was created in, for its whole life,
so a connection opened inside `in_netns` keeps working after the thread has switched back.

Nothing here touches the root namespace's links, addresses or routes.
"""

from __future__ import annotations

import ctypes
import os
import ssl
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Final

import httpx

NETNS_DIR: Final = Path("/var/run/netns")
CLONE_NEWNET: Final = 0x40000000
_COMMAND_TIMEOUT: Final = 30.0

_libc = ctypes.CDLL(None, use_errno=True)
_libc.setns.argtypes = (ctypes.c_int, ctypes.c_int)
_libc.setns.restype = ctypes.c_int


class NetnsError(RuntimeError):
    """A namespace could not be entered, or an `ip`/`bridge` command failed."""


def _setns(fd: int) -> None:
    # Python 3.11 has no os.setns (3.12 does); the syscall only affects the calling thread.
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        code = ctypes.get_errno()
        raise OSError(code, f"setns: {os.strerror(code)}")


@contextmanager
def in_netns(path: str | os.PathLike[str]) -> Iterator[None]:
    """Run the body with the current thread in the network namespace at `path`, then switch back.

    Only this thread moves: other threads, and the process's later children started from other
    threads, stay where they were. Subprocesses started inside the body inherit the namespace.
    """
    # Saving the thread's own namespace (not the process's) makes nested uses restore correctly.
    original = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    try:
        target = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        try:
            _setns(target)
        finally:
            os.close(target)
        try:
            yield
        finally:
            try:
                _setns(original)
            except OSError as error:
                # A thread stuck in a test namespace would silently misroute everything after.
                raise NetnsError(f"could not switch back from {path}: {error}") from error
    finally:
        os.close(original)


def netns_path(name: str) -> str:
    """The bind mount `ip netns add <name>` creates: `/var/run/netns/<name>`."""
    return str(NETNS_DIR / name)


def add_netns(name: str) -> str:
    """Create the named namespace (`ip netns add`) and return its path."""
    _run_checked("ip", "netns", "add", name)
    return netns_path(name)


def delete_netns(name: str) -> None:
    """Delete the named namespace (`ip netns del`); a missing one is fine."""
    if not os.path.lexists(netns_path(name)):
        return
    _run_checked("ip", "netns", "del", name)


def ip(ns: str, *args: str) -> str:
    """Run `ip -n <ns> ARGS…` and return its stdout; a failure raises with ip's stderr."""
    return _run_checked("ip", "-n", ns, *args)


def bridge(ns: str, *args: str) -> str:
    """Run `bridge -n <ns> ARGS…` and return its stdout; a failure raises with its stderr."""
    return _run_checked("bridge", "-n", ns, *args)


def run_in(ns: str, *cmd: str, timeout: float = _COMMAND_TIMEOUT) -> subprocess.CompletedProcess[str]:
    """Run `cmd` inside the named namespace (`ip netns exec`), unchecked, output captured."""
    return subprocess.run(
        ["ip", "netns", "exec", ns, *cmd],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def _run_checked(*command: str) -> str:
    result = subprocess.run(command, capture_output=True, text=True, timeout=_COMMAND_TIMEOUT, check=False)
    if result.returncode != 0:
        raise NetnsError(f"{' '.join(command)} exited with {result.returncode}: {result.stderr.strip()}")
    return result.stdout


class NetnsTransport(httpx.BaseTransport):
    """An httpx transport that opens every connection inside one network namespace.

    The whole request runs inside `in_netns`, so a connection the pool opens (or reopens)
    later lands in the right namespace too; the sockets stay usable from anywhere afterwards.
    """

    def __init__(self, path: str, *, verify: ssl.SSLContext | bool = True) -> None:
        self._path = path
        # trust_env=False: a proxy from the environment would be reached in the wrong namespace.
        self._inner = httpx.HTTPTransport(verify=verify, trust_env=False)

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        with in_netns(self._path):
            return self._inner.handle_request(request)

    def close(self) -> None:
        self._inner.close()
