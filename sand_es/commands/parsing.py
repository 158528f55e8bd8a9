"""Parsing and checking of the values callers send, with messages a user can act on."""

from __future__ import annotations

import ipaddress
import re
import uuid
from typing import Final

from sand_es.errors import Invalid

MIN_PREFIX: Final = 8
MAX_PREFIX: Final = 30
_MAC = re.compile(r"^[0-9a-f]{2}(:[0-9a-f]{2}){5}$")


def network_id(text: str) -> str:
    """A caller-chosen network id: any UUID spelling, stored in canonical lower case."""
    try:
        return str(uuid.UUID(text))
    except ValueError:
        raise Invalid(f"invalid UUID {text!r}") from None


def ip_range(text: str) -> ipaddress.IPv4Network:
    """An IPv4 range in canonical CIDR form, with a prefix between /8 and /30."""
    try:
        network = ipaddress.IPv4Network(text, strict=False)
    except ValueError:
        raise Invalid(f"invalid ip_range {text!r}: expected an IPv4 CIDR such as 198.18.0.0/24") from None
    if "/" not in text:
        raise Invalid(f"invalid ip_range {text!r}: the prefix length is missing")
    if not MIN_PREFIX <= network.prefixlen <= MAX_PREFIX:
        raise Invalid(
            f"invalid ip_range {text!r}: the prefix must be between /{MIN_PREFIX} and /{MAX_PREFIX}"
        )
    if str(network) != text:
        raise Invalid(f"invalid ip_range {text!r}: host bits are set (did you mean {network}?)")
    return network


def gateway(text: str, network: ipaddress.IPv4Network) -> ipaddress.IPv4Address:
    """A gateway address inside `network`, bare or with the network's prefix."""
    address = _interface(text, "gateway", network)
    if address in (network.network_address, network.broadcast_address):
        raise Invalid(f"invalid gateway {text!r}: the network and broadcast addresses are reserved")
    return address


def gateway_network(text: str) -> ipaddress.IPv4Network:
    """The range implied by a gateway given with a prefix (`198.18.0.1/24`)."""
    if "/" not in text:
        raise Invalid(f"invalid gateway {text!r}: give ip_range, or the gateway with its prefix")
    try:
        return ip_range(str(ipaddress.IPv4Interface(text).network))
    except ValueError:
        raise Invalid(f"invalid gateway {text!r}: expected an IPv4 address such as 198.18.0.1/24") from None


def endpoint_address(text: str, network: ipaddress.IPv4Network) -> ipaddress.IPv4Address:
    """An explicit endpoint address inside `network`, bare or with the network's prefix."""
    return _interface(text, "ipv4_address", network)


def mac_address(text: str) -> str:
    """A unicast MAC address, in lower case."""
    mac = text.strip().lower().replace("-", ":")
    if not _MAC.match(mac):
        raise Invalid(f"invalid mac_address {text!r}: expected six hex octets such as 02:84:c6:12:00:02")
    if int(mac[:2], 16) & 1:
        raise Invalid(f"invalid mac_address {text!r}: a multicast address cannot name an endpoint")
    if mac == "00:00:00:00:00:00":
        raise Invalid(f"invalid mac_address {text!r}: the all-zero address is reserved")
    return mac


def host_ip(text: str) -> str:
    """The owner's underlay IPv4 address (empty when the agent has none configured)."""
    if text == "":
        return text
    try:
        return str(ipaddress.IPv4Address(text))
    except ValueError:
        raise Invalid(f"invalid host_ip {text!r}: expected an IPv4 address") from None


def netns_path(text: str | None) -> str:
    """A namespace handle path: absolute, with no `..` (the agent checks the file itself)."""
    if not text:
        raise Invalid("missing ns_handle_path")
    if not text.startswith("/") or "/../" in f"{text}/" or "\0" in text:
        raise Invalid(f"invalid ns_handle_path {text!r}: expected an absolute path without '..'")
    return text


def _interface(text: str, field: str, network: ipaddress.IPv4Network) -> ipaddress.IPv4Address:
    try:
        interface = ipaddress.IPv4Interface(text)
    except ValueError:
        raise Invalid(f"invalid {field} {text!r}: expected an IPv4 address") from None
    if "/" in text and interface.network.prefixlen != network.prefixlen:
        raise Invalid(f"invalid {field} {text!r}: the prefix must be /{network.prefixlen}, as in {network}")
    if interface.ip not in network:
        raise Invalid(f"invalid {field} {text!r}: outside the network's range {network}")
    return interface.ip
