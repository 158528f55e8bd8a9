"""The VNI allocator: which VXLAN identifiers are taken, and the lowest free one."""

from __future__ import annotations

from collections.abc import Mapping
from typing import cast

import msgspec

from sand_es.events import Envelope, NetworkCreated, NetworkDeleted, Position
from sand_es.projections.cow import Handlers
from sand_es.projections.sharded import ShardedCowMap


class VniTable(msgspec.Struct, frozen=True, kw_only=True):
    """VNIs in use, as of `position`.

    `owners` maps a VNI to a network holding it and `of_network` each network to its
    VNI. `holders` counts the networks on each VNI: a log imported from SAND may hold
    duplicates (the Go agent tolerated them), and a VNI stays taken while any holds it.
    """

    position: Position = Position()
    owners: Mapping[int, str] = {}
    of_network: Mapping[str, int] = {}
    holders: Mapping[int, int] = {}
    hint: int = 1

    def lowest_free(self, maximum: int) -> int | None:
        """The lowest VNI in [1, maximum] no network holds, or None when all are taken.

        Gaps left by deleted networks are reused first, as SAND does. `hint`, kept by
        the fold, is a lower bound of the answer, so a create does not rescan every VNI.
        """
        vni = self.hint
        while vni in self.owners:
            vni += 1
        return vni if vni <= maximum else None


class VniTableBuilder:
    """Folds events into the next `VniTable`."""

    def __init__(self, view: VniTable) -> None:
        self._owners = ShardedCowMap(view.owners)
        self._of_network = ShardedCowMap(view.of_network)
        self._holders = ShardedCowMap(view.holders)
        self._hint = view.hint

    def handlers(self) -> Handlers:
        """The function applying each event type this view changes on."""
        return {NetworkCreated: self._on_created, NetworkDeleted: self._on_deleted}

    def _on_created(self, envelope: Envelope) -> None:
        e = cast(NetworkCreated, envelope.data)
        self._release(e.network_id)  # a re-created id (hand-made log) moves to its new VNI
        self._owners.set(e.vxlan_vni, e.network_id)
        self._of_network.set(e.network_id, e.vxlan_vni)
        self._holders.set(e.vxlan_vni, (self._holders.get(e.vxlan_vni) or 0) + 1)
        while self._hint in self._owners:
            self._hint += 1

    def _on_deleted(self, envelope: Envelope) -> None:
        self._release(cast(NetworkDeleted, envelope.data).network_id)

    def freeze(self, position: Position) -> VniTable:
        """The view reached, stamped with `position`."""
        return VniTable(
            position=position,
            owners=self._owners.freeze(),
            of_network=self._of_network.freeze(),
            holders=self._holders.freeze(),
            hint=self._hint,
        )

    def peek(self, position: Position) -> VniTable:
        """The view so far, sharing this builder's tables: valid only until the next event."""
        return VniTable(
            position=position,
            owners=self._owners.peek(),
            of_network=self._of_network.peek(),
            holders=self._holders.peek(),
            hint=self._hint,
        )

    def _release(self, network_id: str) -> None:
        vni = self._of_network.get(network_id)
        if vni is None:
            return
        self._of_network.discard(network_id)
        left = (self._holders.get(vni) or 1) - 1
        if left == 0:
            self._holders.discard(vni)
            self._owners.discard(vni)
            self._hint = min(self._hint, vni)
            return
        self._holders.set(vni, left)
        if self._owners.get(vni) == network_id:
            # Only with duplicate VNIs: hand the VNI to another of its holders.
            other = next(n for n, v in self._of_network.items() if v == vni)
            self._owners.set(vni, other)
