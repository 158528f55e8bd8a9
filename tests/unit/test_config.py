"""The etcd settings read from the environment, refusing malformed values by variable name."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from sand_es.config import EtcdHost, EtcdSettings, parse_hosts
from sand_es.errors import ConfigError


@pytest.fixture
def pem(tmp_path: Path) -> dict[str, str]:
    """Paths of a CA, a client certificate and its key (their content is not read here)."""
    files = {}
    for name in ("ca", "cert", "key"):
        path = tmp_path / f"{name}.pem"
        path.write_text("-----BEGIN PLACEHOLDER-----\n")
        files[name] = str(path)
    return files


class TestParseHosts:
    """`ETCD_HOSTS`: a comma list of `scheme://host:port`, scheme and port optional."""

    @pytest.mark.parametrize(
        ("text", "expected"),
        [
            ("http://127.0.0.1:2379", [("127.0.0.1", 2379, False)]),
            ("etcd-1:2380", [("etcd-1", 2380, False)]),
            ("etcd-1", [("etcd-1", 2379, False)]),
            ("https://etcd-1.example.com", [("etcd-1.example.com", 2379, True)]),
            ("http://etcd-1:2379/", [("etcd-1", 2379, False)]),
            (
                "http://10.0.0.1:2379, 10.0.0.2:2380 ,etcd-3",
                [("10.0.0.1", 2379, False), ("10.0.0.2", 2380, False), ("etcd-3", 2379, False)],
            ),
            ("https://a:1,https://b:2,", [("a", 1, True), ("b", 2, True)]),
            ("HTTP://Etcd-1:2379", [("etcd-1", 2379, False)]),
        ],
        ids=[
            "default",
            "no-scheme",
            "no-scheme-no-port",
            "https-default-port",
            "trailing-slash",
            "list-mixed-spelling",
            "trailing-comma",
            "case-insensitive",
        ],
    )
    def test_parses(self, text: str, expected: list[tuple[str, int, bool]]) -> None:
        """Each entry gives a host, a port (2379 by default) and whether it uses TLS."""
        assert [EtcdHost(*e) for e in expected] == list(parse_hosts(text))

    @pytest.mark.parametrize(
        ("text", "match"),
        [
            ("", "ETCD_HOSTS is empty"),
            (" , ,", "ETCD_HOSTS is empty"),
            ("ftp://etcd-1:2379", "ETCD_HOSTS entry 'ftp://etcd-1:2379': the scheme must be http or https"),
            ("unix:///run/etcd.sock", "the scheme must be http or https"),
            ("etcd-1:99999", "ETCD_HOSTS entry 'etcd-1:99999': invalid port"),
            ("etcd-1:port", "ETCD_HOSTS entry 'etcd-1:port': invalid port"),
            (
                "http://etcd-1:2379/v3",
                "ETCD_HOSTS entry 'http://etcd-1:2379/v3': expected scheme://host:port",
            ),
            ("http://:2379", "expected scheme://host:port"),
            ("http://[::1]:2379", "ETCD_HOSTS entry 'http://[::1]:2379': IPv6 endpoints are not supported"),
            ("[2001:db8::1]", "IPv6 endpoints are not supported"),
        ],
        ids=[
            "empty",
            "only-commas",
            "ftp",
            "unix",
            "port-too-large",
            "port-not-a-number",
            "path",
            "no-host",
            "ipv6",
            "ipv6-no-scheme",
        ],
    )
    def test_refuses(self, text: str, match: str) -> None:
        """A malformed entry is a `ConfigError` naming ETCD_HOSTS and the entry."""
        with pytest.raises(ConfigError, match=re.escape(match)):
            parse_hosts(text)

    def test_port_zero_is_refused(self) -> None:
        """An explicit port 0 is refused, not replaced by the default port."""
        with pytest.raises(ConfigError, match="ETCD_HOSTS entry 'etcd-1:0': invalid port"):
            parse_hosts("etcd-1:0")


class TestEtcdSettings:
    """`EtcdSettings.from_env`."""

    def test_defaults(self) -> None:
        """An empty environment means local etcd over plain HTTP under /sand-es."""
        expected = EtcdSettings(hosts=(EtcdHost("127.0.0.1", 2379, False),), prefix="/sand-es")
        actual = EtcdSettings.from_env({})
        assert (expected, False, 2.0, 10.0) == (
            actual,
            actual.tls,
            actual.append_timeout,
            actual.read_timeout,
        )

    def test_empty_values_mean_defaults(self) -> None:
        """Variables set to the empty string count as unset."""
        env = dict.fromkeys(
            [
                "ETCD_HOSTS",
                "ETCD_PREFIX",
                "ETCD_CACERT",
                "ETCD_TLS_CERT",
                "ETCD_TLS_KEY",
                "ETCD_APPEND_TIMEOUT",
            ],
            "",
        )
        assert EtcdSettings.from_env({}) == EtcdSettings.from_env(env)

    def test_reads_every_variable(self) -> None:
        """Hosts, prefix, server name and timeouts are read from their variables."""
        env = {
            "ETCD_HOSTS": "etcd-1:2380,etcd-2",
            "ETCD_PREFIX": "/clusters/eu",
            "ETCD_TLS_SERVER_NAME": "etcd.internal",
            "ETCD_APPEND_TIMEOUT": "0.5",
            "ETCD_READ_TIMEOUT": "30",
        }
        expected = EtcdSettings(
            hosts=(EtcdHost("etcd-1", 2380, False), EtcdHost("etcd-2", 2379, False)),
            prefix="/clusters/eu",
            tls_server_name="etcd.internal",
            append_timeout=0.5,
            read_timeout=30.0,
        )
        assert expected == EtcdSettings.from_env(env)

    def test_root_prefix(self) -> None:
        """A bare `/` prefix puts the log at the root of the keyspace."""
        assert "" == EtcdSettings.from_env({"ETCD_PREFIX": "/"}).prefix

    def test_https_turns_tls_on(self, pem: dict[str, str]) -> None:
        """An https host with a CA (and optionally a client pair) gives a TLS configuration."""
        env = {
            "ETCD_HOSTS": "https://etcd-1:2379,https://etcd-2:2379",
            "ETCD_CACERT": pem["ca"],
            "ETCD_TLS_CERT": pem["cert"],
            "ETCD_TLS_KEY": pem["key"],
        }
        settings = EtcdSettings.from_env(env)
        expected = (True, Path(pem["ca"]), Path(pem["cert"]), Path(pem["key"]))
        assert expected == (settings.tls, settings.ca_cert, settings.cert, settings.key)

    def test_https_with_ca_only(self, pem: dict[str, str]) -> None:
        """Server-authenticated TLS needs only the CA."""
        settings = EtcdSettings.from_env({"ETCD_HOSTS": "https://etcd-1", "ETCD_CACERT": pem["ca"]})
        assert (True, None, None) == (settings.tls, settings.cert, settings.key)

    @pytest.mark.parametrize(
        ("env", "match"),
        [
            ({"ETCD_HOSTS": "https://etcd-1:2379"}, "ETCD_HOSTS uses https: set ETCD_CACERT"),
            (
                {"ETCD_HOSTS": "https://etcd-1", "ETCD_CACERT": "ca", "ETCD_TLS_CERT": "cert"},
                "ETCD_TLS_CERT and ETCD_TLS_KEY must be set together",
            ),
            (
                {"ETCD_HOSTS": "https://etcd-1", "ETCD_CACERT": "ca", "ETCD_TLS_KEY": "key"},
                "ETCD_TLS_CERT and ETCD_TLS_KEY must be set together",
            ),
            (
                {"ETCD_HOSTS": "https://etcd-1,http://etcd-2", "ETCD_CACERT": "ca"},
                "ETCD_HOSTS mixes http:// and https:// entries",
            ),
            ({"ETCD_CACERT": "ca"}, "ETCD_CACERT/ETCD_TLS_CERT are set but ETCD_HOSTS has no https:// entry"),
            (
                {"ETCD_TLS_CERT": "cert", "ETCD_TLS_KEY": "key"},
                "ETCD_CACERT/ETCD_TLS_CERT are set but ETCD_HOSTS has no https://",
            ),
        ],
        ids=[
            "https-without-ca",
            "cert-without-key",
            "key-without-cert",
            "mixed",
            "ca-over-http",
            "pair-over-http",
        ],
    )
    def test_tls_mistakes(self, env: dict[str, str], match: str, pem: dict[str, str]) -> None:
        """TLS settings that cannot work are refused before any connection, naming the variables."""
        files = {"ca": pem["ca"], "cert": pem["cert"], "key": pem["key"]}
        resolved = {name: files.get(value, value) for name, value in env.items()}
        with pytest.raises(ConfigError, match=re.escape(match)):
            EtcdSettings.from_env(resolved)

    @pytest.mark.parametrize("variable", ["ETCD_CACERT", "ETCD_TLS_CERT", "ETCD_TLS_KEY"])
    def test_missing_file(self, variable: str, tmp_path: Path, pem: dict[str, str]) -> None:
        """A certificate variable naming no file is refused, naming the variable and the path."""
        env = {
            "ETCD_HOSTS": "https://etcd-1",
            "ETCD_CACERT": pem["ca"],
            "ETCD_TLS_CERT": pem["cert"],
            "ETCD_TLS_KEY": pem["key"],
        }
        missing = str(tmp_path / "absent.pem")
        with pytest.raises(ConfigError, match=re.escape(f"{variable}={missing!r}: no such file")):
            EtcdSettings.from_env({**env, variable: missing})

    def test_directory_is_not_a_file(self, tmp_path: Path) -> None:
        """A certificate variable naming a directory is refused."""
        with pytest.raises(ConfigError, match=r"ETCD_CACERT=.*: no such file"):
            EtcdSettings.from_env({"ETCD_HOSTS": "https://etcd-1", "ETCD_CACERT": str(tmp_path)})

    @pytest.mark.parametrize(
        "prefix", ["sand-es", "/sand-es/", "sand-es/"], ids=["relative", "trailing-slash", "both"]
    )
    def test_bad_prefix(self, prefix: str) -> None:
        """A key prefix must be absolute, without a trailing slash."""
        with pytest.raises(
            ConfigError, match=re.escape(f"ETCD_PREFIX {prefix!r}: expected an absolute key prefix")
        ):
            EtcdSettings.from_env({"ETCD_PREFIX": prefix})

    def test_bad_hosts(self) -> None:
        """A malformed ETCD_HOSTS fails `from_env` too."""
        with pytest.raises(ConfigError, match="ETCD_HOSTS entry 'gopher://x'"):
            EtcdSettings.from_env({"ETCD_HOSTS": "gopher://x"})

    @pytest.mark.parametrize(
        ("variable", "value", "match"),
        [
            ("ETCD_APPEND_TIMEOUT", "soon", "expected a number of seconds"),
            ("ETCD_APPEND_TIMEOUT", "0", "must be a positive number of seconds"),
            ("ETCD_READ_TIMEOUT", "-1", "must be a positive number of seconds"),
            ("ETCD_READ_TIMEOUT", "10s", "expected a number of seconds"),
        ],
        ids=["append-not-a-number", "append-zero", "read-negative", "read-with-unit"],
    )
    def test_bad_timeout(self, variable: str, value: str, match: str) -> None:
        """A timeout must be a positive number of seconds."""
        with pytest.raises(ConfigError, match=re.escape(f"{variable}={value!r}: {match}")):
            EtcdSettings.from_env({variable: value})

    def test_nan_timeout_is_refused(self) -> None:
        """A NaN timeout is refused like any other non-positive number."""
        with pytest.raises(ConfigError, match="ETCD_APPEND_TIMEOUT"):
            EtcdSettings.from_env({"ETCD_APPEND_TIMEOUT": "nan"})
