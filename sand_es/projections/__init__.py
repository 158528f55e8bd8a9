"""Projections: pure folds of the log into immutable views."""

from sand_es.projections.endpoints import Endpoint, EndpointCatalog
from sand_es.projections.ipam import AddressTable, Pool
from sand_es.projections.networks import Network, NetworkCatalog
from sand_es.projections.peers import Peer, PeerMap
from sand_es.projections.sharded import FrozenMap, encode_hook
from sand_es.projections.snapshot import EMPTY, Snapshot, SnapshotBuilder, fold
from sand_es.projections.vnis import VniTable

__all__ = [
    "EMPTY",
    "AddressTable",
    "Endpoint",
    "EndpointCatalog",
    "FrozenMap",
    "Network",
    "NetworkCatalog",
    "Peer",
    "PeerMap",
    "Pool",
    "Snapshot",
    "SnapshotBuilder",
    "VniTable",
    "encode_hook",
    "fold",
]
