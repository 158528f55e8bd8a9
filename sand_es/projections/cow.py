"""A copy-on-write mapping for building the next immutable view from the last one.

Views are immutable: folding events returns a new view and leaves the old one
intact, so readers never see a half-applied batch. Copying every table on every
event would make a replay quadratic, so a fold works on a `CowMap`: it shares the
old view's dict until the first write, copies it once, then mutates the copy for
the rest of the batch. `freeze()` hands the dict to the new view and makes the
next write copy again.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Generic, TypeAlias, TypeVar

if TYPE_CHECKING:
    from sand_es.events import Envelope, Event

#: Event type -> the function applying it to one view's working copy.
Handlers: TypeAlias = "dict[type[Event], Callable[[Envelope], None]]"

K = TypeVar("K")
V = TypeVar("V")


class CowMap(Generic[K, V]):
    """A dict that copies its source on the first write."""

    __slots__ = ("_data", "_owned")

    def __init__(self, source: Mapping[K, V]) -> None:
        self._data: Mapping[K, V] = source
        self._owned = False

    def get(self, key: K) -> V | None:
        """The value under `key`, or None."""
        return self._data.get(key)

    def __contains__(self, key: K) -> bool:
        return key in self._data

    def items(self) -> list[tuple[K, V]]:
        """A copy of the current items."""
        return list(self._data.items())

    def set(self, key: K, value: V) -> None:
        """Bind `key` to `value`."""
        if not self._owned:  # inlined `_own`: this is the hottest line of a replay
            self._data = dict(self._data)
            self._owned = True
        self._data[key] = value  # type: ignore[index]

    def discard(self, key: K) -> None:
        """Remove `key` if present."""
        if key in self._data:
            del self._own()[key]

    def peek(self) -> Mapping[K, V]:
        """The current contents, shared: valid only until the next write."""
        return self._data

    def freeze(self) -> Mapping[K, V]:
        """The current contents, to be owned by an immutable view from now on."""
        self._owned = False
        return self._data

    def _own(self) -> dict[K, V]:
        if not self._owned:
            self._data = dict(self._data)
            self._owned = True
        return self._data  # type: ignore[return-value]
