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


DEFAULT_HTTP_PORT = 9999
DEFAULT_MAX_VNI = 999_999
DEFAULT_NETNS_PATH = "/var/run/netns"
DEFAULT_NETNS_PREFIX = "sc-ns-"
DEFAULT_DOCKER_NETNS_PATH = "/var/run/docker/netns"


class HttpTls(msgspec.Struct, frozen=True):
    """The API's certificate, key, and the CA its clients' certificates must come from."""

    cert: Path
    key: Path
    ca: Path


class AgentSettings(msgspec.Struct, frozen=True, kw_only=True):
    """Everything one agent needs, from SAND's variables (both spellings) and a few of ours."""

    etcd: EtcdSettings
    http_host: str = "0.0.0.0"
    http_port: int = DEFAULT_HTTP_PORT
    http_tls: HttpTls | None = None
    max_body_bytes: int = 64 * 1024
    hostname: str
    host_ip: str = ""
    api_hostname: str = ""
    netns_path: str = DEFAULT_NETNS_PATH
    netns_prefix: str = DEFAULT_NETNS_PREFIX
    docker_netns_path: str = DEFAULT_DOCKER_NETNS_PATH
    max_vni: int = DEFAULT_MAX_VNI
    default_mtu: int = 1450
    log_format: str = "auto"
    log_level: str = "info"
    snapshot_every: int = 10_000
    snapshot_keep: int = 2
    kernel: bool = True
    kernel_resync_interval: float = 30.0
    kernel_wait_timeout: float = 10.0

    @classmethod
    def from_env(cls, environ: Mapping[str, str], *, default_hostname: str) -> AgentSettings:
        """Read the environment; a malformed value raises `ConfigError` naming its variable."""
        return cls(
            etcd=EtcdSettings.from_env(environ),
            http_host=environ.get("HTTP_HOST") or "0.0.0.0",
            http_port=_port(environ),
            http_tls=_http_tls(environ),
            max_body_bytes=_int(environ, "MAX_BODY_BYTES", 64 * 1024, low=1024, high=16 << 20),
            hostname=_first(environ, "PEER_HOSTNAME", "PUBLIC_HOSTNAME") or default_hostname,
            host_ip=_ipv4(environ, "PEER_IP", "PUBLIC_IP"),
            api_hostname=environ.get("API_HOSTNAME", ""),
            netns_path=_directory(environ, ("NETNS_PATH", "NETNSPATH"), DEFAULT_NETNS_PATH),
            netns_prefix=_netns_prefix(environ),
            docker_netns_path=_directory(environ, ("DOCKER_NETNS_PATH",), DEFAULT_DOCKER_NETNS_PATH),
            max_vni=_int(environ, "MAX_VNI", DEFAULT_MAX_VNI, low=1, high=2**24 - 1),
            default_mtu=_int(environ, "DEFAULT_MTU", 1450, low=576, high=9000),
            log_format=_choice(environ, "LOG_FORMAT", ("auto", "json", "console"), "auto"),
            log_level=_choice(environ, "LOG_LEVEL", ("debug", "info", "warning", "error"), "info"),
            snapshot_every=_int(environ, "SNAPSHOT_EVERY", 10_000, low=0, high=10**9),
            snapshot_keep=_int(environ, "SNAPSHOT_KEEP", 2, low=1, high=100),
            kernel=_choice(environ, "KERNEL", ("on", "off"), "on") == "on",
            kernel_resync_interval=_seconds(environ, "KERNEL_RESYNC_INTERVAL", 30.0),
            kernel_wait_timeout=_seconds(environ, "KERNEL_WAIT_TIMEOUT", 10.0),
        )


def _first(environ: Mapping[str, str], *names: str) -> str:
    """The value of the first of `names` that is set (SAND's newer name first)."""
    return next((environ[name] for name in names if environ.get(name)), "")


def _same_everywhere(environ: Mapping[str, str], names: tuple[str, ...]) -> tuple[str, str] | None:
    """(name, value) of the set spellings of one setting; refuses two that disagree."""
    given = [(name, environ[name]) for name in names if environ.get(name)]
    if len({value for _, value in given}) > 1:
        listed = ", ".join(f"{name}={value!r}" for name, value in given)
        raise ConfigError(f"{listed}: these name the same setting and disagree")
    return given[0] if given else None


def _port(environ: Mapping[str, str]) -> int:
    # The README says HTTP_PORT; SAND v1.0.1 reads HTTPPORT and v1.1 reads PORT.
    given = _same_everywhere(environ, ("HTTP_PORT", "PORT", "HTTPPORT"))
    if given is None:
        return DEFAULT_HTTP_PORT
    return _int({given[0]: given[1]}, given[0], DEFAULT_HTTP_PORT, low=1, high=65535)


def _int(environ: Mapping[str, str], name: str, default: int, *, low: int, high: int) -> int:
    value = environ.get(name)
    if not value:
        return default
    try:
        number = int(value, 0)
    except ValueError:
        raise ConfigError(f"{name}={value!r}: expected an integer") from None
    if not low <= number <= high:
        raise ConfigError(f"{name}={value!r}: expected a value between {low} and {high}")
    return number


def _ipv4(environ: Mapping[str, str], *names: str) -> str:
    """The first of `names` set, each set one checked (a typo in the unused one is still a typo)."""
    found = []
    for name in names:
        value = environ.get(name)
        if value:
            try:
                found.append(str(ipaddress.IPv4Address(value)))
            except ValueError:
                raise ConfigError(f"{name}={value!r}: expected an IPv4 address") from None
    return found[0] if found else ""


def _directory(environ: Mapping[str, str], names: tuple[str, ...], default: str) -> str:
    given = _same_everywhere(environ, names)
    if given is None:
        return default
    name, value = given
    if not value.startswith("/"):
        raise ConfigError(f"{name}={value!r}: expected an absolute path")
    return value.rstrip("/") or "/"


def _netns_prefix(environ: Mapping[str, str]) -> str:
    given = _same_everywhere(environ, ("NETNS_PREFIX", "NETNSPREFIX"))
    if given is None:
        return DEFAULT_NETNS_PREFIX
    name, value = given
    if "/" in value or "\0" in value:
        raise ConfigError(f"{name}={value!r}: a file name prefix cannot contain '/'")
    return value


def _http_tls(environ: Mapping[str, str]) -> HttpTls | None:
    names = ("HTTP_TLS_CERT", "HTTP_TLS_KEY", "HTTP_TLS_CA")
    given = [name for name in names if environ.get(name)]
    if not given:
        return None
    if len(given) != len(names):
        missing = ", ".join(name for name in names if name not in given)
        raise ConfigError(f"{', '.join(given)} set without {missing}: HTTPS needs all three")
    return HttpTls(
        cert=_required_file(environ, names[0]),
        key=_required_file(environ, names[1]),
        ca=_required_file(environ, names[2]),
    )


def _required_file(environ: Mapping[str, str], name: str) -> Path:
    path = _file(environ, name)
    if path is None:
        raise ConfigError(f"{name} is not set")
    return path


def _choice(environ: Mapping[str, str], name: str, choices: tuple[str, ...], default: str) -> str:
    value = (environ.get(name) or default).lower()
    if value not in choices:
        raise ConfigError(f"{name}={environ.get(name)!r}: expected one of {', '.join(choices)}")
    return value
