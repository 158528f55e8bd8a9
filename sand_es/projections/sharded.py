"""Large tables that a fold can copy in part: a mapping split into shards.

A fold copies a table before its first write so that the previous view stays
intact (see `cow`). For the big tables of a busy cluster — endpoints by id, their
indexes, the peers every host knows — copying the whole dict made one command cost
time proportional to the whole state (about 100 ms with 270 000 endpoints). Split
into 64 shards by key hash, a new version shares every shard it did not touch, so
one command copies a 64th of a table, and a replay still copies each shard once.
"""

from __future__ import annotations

from collections.abc import ItemsView, Iterator, Mapping, ValuesView
from typing import Final, Generic, TypeVar

K = TypeVar("K")
V = TypeVar("V")

_SHARDS: Final = 64
_MASK: Final = _SHARDS - 1


class FrozenMap(Mapping[K, V]):
    """An immutable mapping made of shards it may share with other versions of itself."""

    __slots__ = ("_len", "_shards")

    def __init__(self, shards: tuple[dict[K, V], ...]) -> None:
        self._shards = shards
        self._len = sum(len(shard) for shard in shards)

    def __getitem__(self, key: K) -> V:
        return self._shards[hash(key) & _MASK][key]

    def get(self, key: K, default: V | None = None) -> V | None:  # type: ignore[override]
        return self._shards[hash(key) & _MASK].get(key, default)

    def __contains__(self, key: object) -> bool:
        return key in self._shards[hash(key) & _MASK]

    def __iter__(self) -> Iterator[K]:
        for shard in self._shards:
            yield from shard

    def __len__(self) -> int:
        return self._len

    def values(self) -> ValuesView[V]:
        return _Values(self)

    def items(self) -> ItemsView[K, V]:
        return _Items(self)

    def __repr__(self) -> str:
        return f"FrozenMap({dict(self.items())!r})"


class _Values(ValuesView[V]):
    _mapping: FrozenMap[object, V]

    def __iter__(self) -> Iterator[V]:
        for shard in self._mapping._shards:
            yield from shard.values()


class _Items(ItemsView[K, V]):
    _mapping: FrozenMap[K, V]

    def __iter__(self) -> Iterator[tuple[K, V]]:
        for shard in self._mapping._shards:
            yield from shard.items()


def encode_hook(value: object) -> object:
    """msgspec `enc_hook` for views: a `FrozenMap` encodes as the dict it stands for."""
    if isinstance(value, FrozenMap):
        return dict(value.items())
    raise NotImplementedError(f"cannot encode {type(value).__name__}")


class ShardedCowMap(Generic[K, V]):
    """A working copy of a table that copies only the shards it writes to (see `CowMap`)."""

    __slots__ = ("_mine", "_shards", "_unchanged")

    def __init__(self, source: Mapping[K, V]) -> None:
        # The version to hand back while nothing is written: an unchanged table keeps
        # its identity across folds (readers may cache what they derive from it).
        self._unchanged: FrozenMap[K, V] | None = None
        if isinstance(source, FrozenMap):
            self._shards: list[dict[K, V]] = list(source._shards)
            self._mine = [False] * _SHARDS
            self._unchanged = source
        else:  # a plain dict (an empty default, or a hand-built view): shard it once
            self._shards = [{} for _ in range(_SHARDS)]
            for key, value in source.items():
                self._shards[hash(key) & _MASK][key] = value
            self._mine = [True] * _SHARDS

    def get(self, key: K) -> V | None:
        """The value under `key`, or None."""
        return self._shards[hash(key) & _MASK].get(key)

    def __contains__(self, key: K) -> bool:
        return key in self._shards[hash(key) & _MASK]

    def items(self) -> list[tuple[K, V]]:
        """A copy of the current items."""
        return [item for shard in self._shards for item in shard.items()]

    def set(self, key: K, value: V) -> None:
        """Bind `key` to `value`."""
        index = hash(key) & _MASK
        if not self._mine[index]:
            self._shards[index] = dict(self._shards[index])
            self._mine[index] = True
        self._shards[index][key] = value
        self._unchanged = None

    def discard(self, key: K) -> None:
        """Remove `key` if present."""
        index = hash(key) & _MASK
        if key in self._shards[index]:
            if not self._mine[index]:
                self._shards[index] = dict(self._shards[index])
                self._mine[index] = True
            del self._shards[index][key]
            self._unchanged = None

    def peek(self) -> FrozenMap[K, V]:
        """The current contents, shared: valid only until the next write."""
        return self._unchanged if self._unchanged is not None else FrozenMap(tuple(self._shards))

    def freeze(self) -> FrozenMap[K, V]:
        """The current contents, to be owned by an immutable view from now on."""
        if self._unchanged is None:
            self._mine = [False] * _SHARDS
            self._unchanged = FrozenMap(tuple(self._shards))
        return self._unchanged
