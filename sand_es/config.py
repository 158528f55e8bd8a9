"""Settings read from the environment, with SAND's variable names.

Every malformed value is a `ConfigError` that names the variable (the Go agent
silently zeroes every field after the first bad one). This module holds the etcd
settings; the agent's own settings join them with the agent.
"""

from __future__ import annotations

import ipaddress
import math
from collections.abc import Mapping
from pathlib import Path
from urllib.parse import urlsplit

import msgspec

from sand_es.errors import ConfigError

DEFAULT_ETCD_HOSTS = "http://127.0.0.1:2379"
DEFAULT_PREFIX = "/sand-es"
DEFAULT_ETCD_PORT = 2379


class EtcdHost(msgspec.Struct, frozen=True):
    """One etcd endpoint as configured: a host name or an IPv4 literal, and a port."""

    host: str
    port: int
    tls: bool

    @property
    def is_literal(self) -> bool:
        """Whether `host` is already an IPv4 address."""
        try:
            ipaddress.IPv4Address(self.host)
        except ValueError:
            return False
        return True


class EtcdSettings(msgspec.Struct, frozen=True, kw_only=True):
    """Where the log lives and how to reach it."""

    hosts: tuple[EtcdHost, ...] = ()
    prefix: str = DEFAULT_PREFIX
    ca_cert: Path | None = None
    cert: Path | None = None
    key: Path | None = None
    tls_server_name: str | None = None
    append_timeout: float = 2.0
    read_timeout: float = 10.0

    @property
    def tls(self) -> bool:
        """TLS is on when any host is given with `https://` (as in SAND)."""
        return any(h.tls for h in self.hosts)

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> EtcdSettings:
        """Read `ETCD_HOSTS`, `ETCD_PREFIX`, `ETCD_CACERT`, `ETCD_TLS_CERT`, `ETCD_TLS_KEY`, …"""
        hosts = parse_hosts(environ.get("ETCD_HOSTS") or DEFAULT_ETCD_HOSTS)
        settings = cls(
            hosts=hosts,
            prefix=_prefix(environ.get("ETCD_PREFIX") or DEFAULT_PREFIX),
            ca_cert=_file(environ, "ETCD_CACERT"),
            cert=_file(environ, "ETCD_TLS_CERT"),
            key=_file(environ, "ETCD_TLS_KEY"),
            tls_server_name=environ.get("ETCD_TLS_SERVER_NAME") or None,
            append_timeout=_seconds(environ, "ETCD_APPEND_TIMEOUT", 2.0),
            read_timeout=_seconds(environ, "ETCD_READ_TIMEOUT", 10.0),
        )
        settings.check_tls()
        return settings

    def check_tls(self) -> None:
        """Refuse TLS settings that cannot work, before the first connection fails obscurely."""
        if (self.cert is None) != (self.key is None):
            raise ConfigError("ETCD_TLS_CERT and ETCD_TLS_KEY must be set together")
        if self.tls and self.ca_cert is None:
            raise ConfigError(
                "ETCD_HOSTS uses https: set ETCD_CACERT to the CA that signed etcd's certificate"
            )
        if not self.tls and (self.cert is not None or self.ca_cert is not None):
            raise ConfigError("ETCD_CACERT/ETCD_TLS_CERT are set but ETCD_HOSTS has no https:// entry")
        if self.tls and any(not h.tls for h in self.hosts):
            raise ConfigError("ETCD_HOSTS mixes http:// and https:// entries")


def parse_hosts(text: str) -> tuple[EtcdHost, ...]:
    """`ETCD_HOSTS`: a comma list of `scheme://host:port` (scheme and port optional)."""
    hosts = tuple(_host(entry.strip()) for entry in text.split(",") if entry.strip())
    if not hosts:
        raise ConfigError("ETCD_HOSTS is empty")
    return hosts


def _host(entry: str) -> EtcdHost:
    split = urlsplit(entry if "://" in entry else f"http://{entry}")
    if split.scheme not in ("http", "https"):
        raise ConfigError(f"ETCD_HOSTS entry {entry!r}: the scheme must be http or https")
    try:
        port = DEFAULT_ETCD_PORT if split.port is None else split.port
    except ValueError:
        raise ConfigError(f"ETCD_HOSTS entry {entry!r}: invalid port") from None
    if port == 0:
        raise ConfigError(f"ETCD_HOSTS entry {entry!r}: invalid port 0")
    if not split.hostname or split.path not in ("", "/"):
        raise ConfigError(f"ETCD_HOSTS entry {entry!r}: expected scheme://host:port")
    if ":" in split.hostname:
        raise ConfigError(f"ETCD_HOSTS entry {entry!r}: IPv6 endpoints are not supported by the etcd client")
    return EtcdHost(split.hostname, port, split.scheme == "https")


def _prefix(text: str) -> str:
    if not text.startswith("/") or (text.endswith("/") and text != "/"):
        raise ConfigError(f"ETCD_PREFIX {text!r}: expected an absolute key prefix such as /sand-es")
    return text.rstrip("/")


def _file(environ: Mapping[str, str], name: str) -> Path | None:
    value = environ.get(name)
    if not value:
        return None
    path = Path(value)
    if not path.is_file():
        raise ConfigError(f"{name}={value!r}: no such file")
    return path


def _seconds(environ: Mapping[str, str], name: str, default: float) -> float:
    value = environ.get(name)
    if not value:
        return default
    try:
        seconds = float(value)
    except ValueError:
        raise ConfigError(f"{name}={value!r}: expected a number of seconds") from None
    if not math.isfinite(seconds) or seconds <= 0:
        raise ConfigError(f"{name}={value!r}: must be a positive number of seconds")
    return seconds
