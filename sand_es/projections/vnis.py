"""The VNI allocator: which VXLAN identifiers are taken, and the lowest free one."""

from __future__ import annotations

from collections.abc import Mapping

import msgspec

from sand_es.events import Envelope, NetworkCreated, NetworkDeleted, Position
from sand_es.projections.cow import CowMap


class VniTable(msgspec.Struct, frozen=True, kw_only=True):
    """VNI -> owning network id (and back), as of `position`."""

    position: Position = Position()
    owners: Mapping[int, str] = {}
    of_network: Mapping[str, int] = {}

    def lowest_free(self, maximum: int) -> int | None:
        """The lowest VNI in [1, maximum] no network holds, or None when all are taken.

        Gaps left by deleted networks are reused first, as SAND does.
        """
        vni = 1
        while vni in self.owners:
            vni += 1
        return vni if vni <= maximum else None


class VniTableBuilder:
    """Folds events into the next `VniTable`."""

    def __init__(self, view: VniTable) -> None:
        self._owners = CowMap(view.owners)
        self._of_network = CowMap(view.of_network)

    def apply(self, envelope: Envelope) -> None:
        """Apply one event."""
        match envelope.data:
            case NetworkCreated(network_id=network_id, vxlan_vni=vni):
                self._owners.set(vni, network_id)
                self._of_network.set(network_id, vni)
            case NetworkDeleted(network_id=network_id):
                held = self._of_network.get(network_id)
                self._of_network.discard(network_id)
                # An imported log may hold duplicate VNIs (SAND tolerated them):
                # release a VNI only on behalf of the network that holds it.
                if held is not None and self._owners.get(held) == network_id:
                    self._owners.discard(held)
            case _:
                pass

    def freeze(self, position: Position) -> VniTable:
        """The view reached, stamped with `position`."""
        return VniTable(position=position, owners=self._owners.freeze(), of_network=self._of_network.freeze())
