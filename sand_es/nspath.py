"""Checking an `ns_handle_path` before the agent opens it as root.

A caller names a file the agent will open and `setns` into, so only network
namespace handles are accepted: files under the agent's `NETNS_PATH` or Docker's
netns directory (symlinks resolved, and the result must stay inside), or
`/proc/<pid>/ns/net`. The file must exist and be a network namespace, which the
kernel confirms with the `NS_GET_NSTYPE` ioctl.
"""

from __future__ import annotations

import errno
import fcntl
import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Final

from sand_es.errors import Invalid

_NS_GET_NSTYPE: Final = 0xB703  # _IO(0xb7, 0x3), linux/nsfs.h
_CLONE_NEWNET: Final = 0x40000000
_PROC_NET_NS = re.compile(r"^/proc/[1-9][0-9]*/ns/net$")


def check_netns_path(path: str, *, roots: Sequence[str]) -> str:
    """The path if it names a network namespace handle the agent may open; else `Invalid`."""
    if not path:
        raise Invalid("missing ns_handle_path")
    if not path.startswith("/") or "\0" in path or ".." in Path(path).parts:
        raise Invalid(f"ns_handle_path {path!r} is invalid: expected an absolute path without '..'")
    if not _PROC_NET_NS.match(path) and not _inside(os.path.realpath(path), roots):
        allowed = ", ".join([*roots, "/proc/<pid>/ns/net"])
        raise Invalid(f"ns_handle_path {path!r} is invalid: not a namespace handle under {allowed}")
    _check_is_net_namespace(path)
    return path


def _inside(resolved: str, roots: Sequence[str]) -> bool:
    for root in roots:
        real_root = os.path.realpath(root)
        if resolved.startswith(real_root.rstrip("/") + "/"):
            return True
    return False


def _check_is_net_namespace(path: str) -> None:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK)
    except OSError as exc:
        raise Invalid(f"ns_handle_path {path!r} is invalid: {exc.strerror}") from None
    try:
        kind = fcntl.ioctl(fd, _NS_GET_NSTYPE)
    except OSError as exc:
        reason = "not a namespace handle" if exc.errno in (errno.ENOTTY, errno.EINVAL) else exc.strerror
        raise Invalid(f"ns_handle_path {path!r} is invalid: {reason}") from None
    finally:
        os.close(fd)
    if kind != _CLONE_NEWNET:
        raise Invalid(f"ns_handle_path {path!r} is invalid: a namespace, but not a network namespace")
