"""Deterministic device names and MAC addresses, derived from ids and addresses.

They are chosen once, when an endpoint is added, and stored in the event, so an
agent that restarts recognises the devices it made and every host agrees on them.
"""

from __future__ import annotations

import hashlib
import ipaddress

#: Target-side veth: SAND's `sand` prefix and 40 bits of the endpoint id (14 chars).
_TARGET_HEX = 10


def target_veth_name(endpoint_id: str) -> str:
    """The name of the veth end placed in the endpoint's namespace."""
    return "sand" + _hex(endpoint_id)[:_TARGET_HEX]


def overlay_veth_name(endpoint_id: str) -> str:
    """The name of the veth end on the overlay bridge (15 chars, the kernel's limit)."""
    return target_veth_name(endpoint_id) + "o"


def target_veth_mac(address: ipaddress.IPv4Address) -> str:
    """SAND's default endpoint MAC: `02:84:` then the four address octets."""
    return "02:84:" + ":".join(f"{octet:02x}" for octet in address.packed)


def overlay_veth_mac(endpoint_id: str) -> str:
    """A locally administered MAC for the bridge-side veth (`06:` keeps it apart from `02:84:`)."""
    digest = hashlib.sha256(endpoint_id.encode()).digest()
    return "06:" + ":".join(f"{byte:02x}" for byte in digest[:5])


def _hex(endpoint_id: str) -> str:
    # Ids are UUIDs, but a hand-made id must still give a valid, stable name.
    compact = endpoint_id.replace("-", "").lower()
    if len(compact) >= _TARGET_HEX and all(c in "0123456789abcdef" for c in compact):
        return compact
    return hashlib.sha256(endpoint_id.encode()).hexdigest()
