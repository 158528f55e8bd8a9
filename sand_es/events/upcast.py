"""Schema versions of the stored events, and the upcasters between them.

Each event tag has a current schema version. An event stored at an older version
is decoded to a plain dict, passed through `upcast_<tag>_v<N>` functions one
version at a time until it reaches the current one, then converted to today's
type. Upcasters are pure `dict -> dict` functions; they run at read time, so the
log itself is never rewritten.

To change an event's shape: bump its version in `CURRENT_VERSIONS`, add the
upcaster from the previous version to `UPCASTERS`, and add a test that a stored
event of the old version decodes into today's type.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Final, TypeAlias

from sand_es.events.types import EVENT_TYPES, tag_of

EventData: TypeAlias = dict[str, Any]
Upcaster: TypeAlias = Callable[[EventData], EventData]

#: The schema version each tag is written at today.
CURRENT_VERSIONS: Final[Mapping[str, int]] = {tag_of(t): 1 for t in EVENT_TYPES}

#: (tag, version) -> function turning that version's data into the next version's.
UPCASTERS: Final[Mapping[tuple[str, int], Upcaster]] = {}
