"""Long-lived netlink sockets, one per namespace, for the apply and observe steps.

An overlay namespace is used on every pass, so its socket stays open; a container's
namespace is used when its endpoint is wired, so its socket is dropped after the pass
(`release_transient`). A cached socket is checked against the namespace's identity
before use: a handle that now names another namespace gets a fresh socket.
"""

from __future__ import annotations

import contextlib

from pyroute2 import AsyncIPRoute

from sand_es.kernel import nsfs
from sand_es.kernel.model import HostConfig


class _Entry:
    __slots__ = ("identity", "ipr", "keep")

    def __init__(self, identity: tuple[int, int], ipr: AsyncIPRoute, *, keep: bool) -> None:
        self.identity = identity
        self.ipr = ipr
        self.keep = keep


class Netlink:
    """Sockets to the agent's own namespace and to namespaces named by path.

    Sockets to this agent's overlay namespaces (`config`'s path and prefix) are kept
    open; sockets to any other namespace (a container's) live until `release_transient`.
    """

    def __init__(self, config: HostConfig, *, home_netns: str | None = None) -> None:
        self._home_netns = home_netns
        self._home: AsyncIPRoute | None = None
        self._entries: dict[str, _Entry] = {}
        self._overlay_root = config.netns_path.rstrip("/") + "/" + config.netns_prefix

    async def home(self) -> AsyncIPRoute:
        """The agent's own namespace: where VXLAN devices are created (their UDP socket lives here).

        That is the namespace the agent runs in, unless `home_netns` names another
        (tests drive a simulated host's kernel from the test process this way).
        """
        if self._home is None:
            sock = None if self._home_netns is None else await nsfs.netlink_socket(self._home_netns)
            ipr = AsyncIPRoute(use_socket=sock)
            await ipr.setup_endpoint()
            self._home = ipr
        return self._home

    async def at(self, path: str) -> AsyncIPRoute:
        """A socket in the namespace at `path`; `nsfs.NamespaceGone` when there is none."""
        identity = nsfs.identity(path)
        if identity is None:
            self.forget(path)
            raise nsfs.NamespaceGone(2, "no network namespace", path)
        entry = self._entries.get(path)
        if entry is not None and entry.identity == identity:
            return entry.ipr
        self.forget(path)
        ipr = AsyncIPRoute(use_socket=await nsfs.netlink_socket(path))
        await ipr.setup_endpoint()
        self._entries[path] = _Entry(identity, ipr, keep=path.startswith(self._overlay_root))
        return ipr

    def forget(self, path: str) -> None:
        """Close the socket kept for `path` (its namespace is being removed or replaced)."""
        entry = self._entries.pop(path, None)
        if entry is not None:
            _close(entry.ipr)

    def release_transient(self) -> None:
        """Close the sockets to containers' namespaces."""
        for path in [path for path, entry in self._entries.items() if not entry.keep]:
            self.forget(path)

    def close(self) -> None:
        """Close every socket."""
        for path in list(self._entries):
            self.forget(path)
        if self._home is not None:
            _close(self._home)
            self._home = None


def _close(ipr: AsyncIPRoute) -> None:
    with contextlib.suppress(OSError):
        ipr.close()
