"""The agent's settings read from the environment: SAND's variable names (both spellings), checked."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from sand_es.config import AgentSettings, EtcdSettings, HttpTls
from sand_es.errors import ConfigError

DEFAULT_HOSTNAME = "node-1"


def settings(**environ: str) -> AgentSettings:
    """The settings of an agent whose environment is `environ` and whose host is called node-1."""
    return AgentSettings.from_env(environ, default_hostname=DEFAULT_HOSTNAME)


def refusal(**environ: str) -> str:
    """The message of the `ConfigError` that `environ` must raise."""
    with pytest.raises(ConfigError) as raised:
        settings(**environ)
    return str(raised.value)


@pytest.fixture
def pem(tmp_path: Path) -> dict[str, str]:
    """Paths of an existing certificate, key and CA file (their content is not read here)."""
    files = {}
    for name in ("cert", "key", "ca"):
        path = tmp_path / f"{name}.pem"
        path.write_text("-----BEGIN PLACEHOLDER-----\n")
        files[name] = str(path)
    return files


class TestDefaults:
    """An empty environment."""

    def test_defaults_are_sands(self) -> None:
        """With nothing set, the agent takes SAND's defaults and the machine's host name."""
        assert (
            AgentSettings(
                etcd=EtcdSettings.from_env({}),
                http_host="0.0.0.0",
                http_port=9999,
                http_tls=None,
                max_body_bytes=64 * 1024,
                hostname=DEFAULT_HOSTNAME,
                host_ip="",
                api_hostname="",
                netns_path="/var/run/netns",
                netns_prefix="sc-ns-",
                docker_netns_path="/var/run/docker/netns",
                max_vni=999_999,
                default_mtu=1450,
                log_format="auto",
                log_level="info",
            )
            == settings()
        )

    def test_empty_values_count_as_unset(self) -> None:
        """A variable set to the empty string takes the default, as if it were not set."""
        assert settings() == settings(
            PORT="", NETNS_PATH="", PEER_HOSTNAME="", PEER_IP="", MAX_VNI="", LOG_FORMAT="", HTTP_TLS_CERT=""
        )


class TestPort:
    """`HTTP_PORT` (README), `PORT` (SAND v1.1) and `HTTPPORT` (SAND v1.0.1) name one setting."""

    @pytest.mark.parametrize("name", ["HTTP_PORT", "PORT", "HTTPPORT"])
    def test_each_spelling_is_read(self, name: str) -> None:
        """Each of the three spellings sets the API port."""
        assert 8080 == settings(**{name: "8080"}).http_port

    def test_spellings_that_agree_are_accepted(self) -> None:
        """Several spellings set to the same value are fine."""
        assert 8080 == settings(HTTP_PORT="8080", PORT="8080", HTTPPORT="8080").http_port

    @pytest.mark.parametrize(
        ("environ", "named"),
        [
            ({"HTTP_PORT": "8080", "PORT": "8081"}, ["HTTP_PORT", "PORT"]),
            ({"PORT": "8080", "HTTPPORT": "8081"}, ["PORT", "HTTPPORT"]),
            ({"HTTP_PORT": "1", "PORT": "1", "HTTPPORT": "2"}, ["HTTP_PORT", "PORT", "HTTPPORT"]),
        ],
        ids=["readme-and-v1.1", "v1.1-and-v1.0", "all-three"],
    )
    def test_spellings_that_disagree_are_refused(self, environ: dict[str, str], named: list[str]) -> None:
        """Two spellings with different values are refused, the message naming each of them."""
        message = refusal(**environ)
        assert named == [name for name in named if f"{name}=" in message]
        assert "disagree" in message

    @pytest.mark.parametrize("value", ["abc", "0", "65536", "-1", "80.5"])
    def test_a_bad_port_is_refused(self, value: str) -> None:
        """A port that is not an integer between 1 and 65535 is refused, naming the variable."""
        assert refusal(PORT=value).startswith(f"PORT={value!r}")

    @pytest.mark.parametrize("value", ["1", "65535"])
    def test_bounds_are_accepted(self, value: str) -> None:
        """Ports 1 and 65535 are accepted."""
        assert int(value) == settings(HTTPPORT=value).http_port


class TestNetnsPaths:
    """`NETNS_PATH`/`NETNSPATH` and `NETNS_PREFIX`/`NETNSPREFIX` (README and SAND spellings)."""

    @pytest.mark.parametrize("name", ["NETNS_PATH", "NETNSPATH"])
    def test_each_path_spelling_is_read(self, name: str) -> None:
        """Either spelling sets the overlay namespaces' directory, without a trailing slash."""
        assert "/run/sand/netns" == settings(**{name: "/run/sand/netns/"}).netns_path

    def test_the_root_directory_stays_the_root(self) -> None:
        """`/` is kept as `/` (not turned into an empty path)."""
        assert "/" == settings(NETNS_PATH="/").netns_path

    def test_path_spellings_that_disagree_are_refused(self) -> None:
        """NETNS_PATH and NETNSPATH with different values are refused, naming both."""
        message = refusal(NETNS_PATH="/run/a", NETNSPATH="/run/b")
        assert ("NETNS_PATH=" in message, "NETNSPATH=" in message) == (True, True)

    @pytest.mark.parametrize("name", ["NETNS_PATH", "NETNSPATH", "DOCKER_NETNS_PATH"])
    def test_a_relative_path_is_refused(self, name: str) -> None:
        """A relative namespace directory is refused, naming the variable."""
        assert refusal(**{name: "run/netns"}).startswith(f"{name}='run/netns'")

    @pytest.mark.parametrize("name", ["NETNS_PREFIX", "NETNSPREFIX"])
    def test_each_prefix_spelling_is_read(self, name: str) -> None:
        """Either spelling sets the overlay namespaces' file name prefix."""
        assert "ovl-" == settings(**{name: "ovl-"}).netns_prefix

    def test_prefix_spellings_that_disagree_are_refused(self) -> None:
        """NETNS_PREFIX and NETNSPREFIX with different values are refused, naming both."""
        message = refusal(NETNS_PREFIX="a-", NETNSPREFIX="b-")
        assert ("NETNS_PREFIX=" in message, "NETNSPREFIX=" in message) == (True, True)

    @pytest.mark.parametrize("name", ["NETNS_PREFIX", "NETNSPREFIX"])
    def test_a_prefix_with_a_slash_is_refused(self, name: str) -> None:
        """A prefix that would make a path rather than a file name is refused, naming the variable."""
        assert refusal(**{name: "../x-"}).startswith(f"{name}='../x-'")


class TestIdentity:
    """The host name and underlay IP endpoints are recorded with."""

    @pytest.mark.parametrize(
        ("environ", "expected"),
        [
            ({"PEER_HOSTNAME": "peer", "PUBLIC_HOSTNAME": "public"}, "peer"),
            ({"PUBLIC_HOSTNAME": "public"}, "public"),
            ({}, DEFAULT_HOSTNAME),
        ],
        ids=["peer-first", "public-next", "machine-last"],
    )
    def test_hostname_precedence(self, environ: dict[str, str], expected: str) -> None:
        """PEER_HOSTNAME wins over PUBLIC_HOSTNAME, which wins over the machine's host name."""
        assert expected == settings(**environ).hostname

    @pytest.mark.parametrize(
        ("environ", "expected"),
        [
            ({"PEER_IP": "192.0.2.1", "PUBLIC_IP": "192.0.2.2"}, "192.0.2.1"),
            ({"PUBLIC_IP": "192.0.2.2"}, "192.0.2.2"),
            ({}, ""),
        ],
        ids=["peer-first", "public-next", "none"],
    )
    def test_ip_precedence(self, environ: dict[str, str], expected: str) -> None:
        """PEER_IP wins over PUBLIC_IP; with neither, the host IP is empty (as in SAND)."""
        assert expected == settings(**environ).host_ip

    @pytest.mark.parametrize("name", ["PEER_IP", "PUBLIC_IP"])
    @pytest.mark.parametrize("value", ["192.0.2.300", "host-a", "2001:db8::1", "192.0.2.1/24", "192.0.2"])
    def test_a_bad_ip_is_refused(self, name: str, value: str) -> None:
        """A host IP that is not an IPv4 address is refused, naming the variable."""
        assert refusal(**{name: value}).startswith(f"{name}={value!r}")

    def test_api_hostname_is_read(self) -> None:
        """API_HOSTNAME is recorded as given."""
        assert "agent-a.example.com" == settings(API_HOSTNAME="agent-a.example.com").api_hostname


class TestHttpTls:
    """`HTTP_TLS_CERT`, `HTTP_TLS_KEY`, `HTTP_TLS_CA`: all three (HTTPS with client certificates) or none."""

    def test_all_three_turn_https_on(self, pem: dict[str, str]) -> None:
        """With the three files given, the API serves HTTPS with them."""
        tls = settings(HTTP_TLS_CERT=pem["cert"], HTTP_TLS_KEY=pem["key"], HTTP_TLS_CA=pem["ca"]).http_tls
        assert HttpTls(cert=Path(pem["cert"]), key=Path(pem["key"]), ca=Path(pem["ca"])) == tls

    @pytest.mark.parametrize(
        ("given", "missing"),
        [
            (["HTTP_TLS_CERT"], ["HTTP_TLS_KEY", "HTTP_TLS_CA"]),
            (["HTTP_TLS_KEY"], ["HTTP_TLS_CERT", "HTTP_TLS_CA"]),
            (["HTTP_TLS_CA"], ["HTTP_TLS_CERT", "HTTP_TLS_KEY"]),
            (["HTTP_TLS_CERT", "HTTP_TLS_KEY"], ["HTTP_TLS_CA"]),
            (["HTTP_TLS_CERT", "HTTP_TLS_CA"], ["HTTP_TLS_KEY"]),
            (["HTTP_TLS_KEY", "HTTP_TLS_CA"], ["HTTP_TLS_CERT"]),
        ],
    )
    def test_some_but_not_all_are_refused(
        self, pem: dict[str, str], given: list[str], missing: list[str]
    ) -> None:
        """A partial set is refused, the message naming the missing variables."""
        files = {"HTTP_TLS_CERT": pem["cert"], "HTTP_TLS_KEY": pem["key"], "HTTP_TLS_CA": pem["ca"]}
        message = refusal(**{name: files[name] for name in given})
        without = message.split(" set without ", 1)[1]
        assert missing == [name for name in missing if name in without]
        assert [] == [name for name in given if name in without]

    @pytest.mark.parametrize("name", ["HTTP_TLS_CERT", "HTTP_TLS_KEY", "HTTP_TLS_CA"])
    def test_a_missing_file_is_refused(self, pem: dict[str, str], tmp_path: Path, name: str) -> None:
        """A TLS variable naming a file that does not exist is refused, naming the variable."""
        environ = {"HTTP_TLS_CERT": pem["cert"], "HTTP_TLS_KEY": pem["key"], "HTTP_TLS_CA": pem["ca"]}
        environ[name] = str(tmp_path / "absent.pem")
        assert refusal(**environ).startswith(f"{name}=")


class TestBounds:
    """Integer settings within their bounds."""

    @pytest.mark.parametrize(
        ("name", "low", "high"),
        [("MAX_VNI", 1, 2**24 - 1), ("DEFAULT_MTU", 576, 9000), ("MAX_BODY_BYTES", 1024, 16 << 20)],
    )
    def test_bounds_are_accepted(self, name: str, low: int, high: int) -> None:
        """The lowest and the highest allowed values are accepted."""
        attribute = name.lower()
        accepted = [getattr(settings(**{name: str(value)}), attribute) for value in (low, high)]
        assert [low, high] == accepted

    @pytest.mark.parametrize(
        ("name", "value"),
        [
            ("MAX_VNI", "0"),
            ("MAX_VNI", "16777216"),
            ("MAX_VNI", "-1"),
            ("MAX_VNI", "many"),
            ("MAX_VNI", "1e6"),
            ("DEFAULT_MTU", "575"),
            ("DEFAULT_MTU", "9001"),
            ("MAX_BODY_BYTES", "1023"),
        ],
    )
    def test_out_of_bounds_is_refused(self, name: str, value: str) -> None:
        """A value that is not an integer within the bounds is refused, naming the variable."""
        assert refusal(**{name: value}).startswith(f"{name}={value!r}")

    def test_max_vni_is_read_as_go_reads_it(self) -> None:
        """MAX_VNI is parsed with base prefixes, like Go's `strconv.ParseInt(s, 0, …)`."""
        assert (999_999, 4096) == (settings(MAX_VNI="999999").max_vni, settings(MAX_VNI="0x1000").max_vni)


class TestLogging:
    """`LOG_FORMAT` and `LOG_LEVEL`."""

    @pytest.mark.parametrize("value", ["auto", "json", "console", "JSON"])
    def test_log_formats(self, value: str) -> None:
        """auto, json and console are accepted, in any case."""
        assert value.lower() == settings(LOG_FORMAT=value).log_format

    @pytest.mark.parametrize("value", ["debug", "info", "warning", "error", "Warning"])
    def test_log_levels(self, value: str) -> None:
        """debug, info, warning and error are accepted, in any case."""
        assert value.lower() == settings(LOG_LEVEL=value).log_level

    @pytest.mark.parametrize(("name", "value"), [("LOG_FORMAT", "xml"), ("LOG_LEVEL", "verbose")])
    def test_other_values_are_refused(self, name: str, value: str) -> None:
        """Any other value is refused, naming the variable and listing the choices."""
        message = refusal(**{name: value})
        assert (True, True) == (message.startswith(f"{name}={value!r}"), "expected one of" in message)


class TestKernel:
    """`KERNEL`, `KERNEL_RESYNC_INTERVAL` and `KERNEL_WAIT_TIMEOUT`."""

    def test_the_kernel_projection_is_on_by_default(self) -> None:
        """An agent wires its host unless told not to; drift is looked for every 30 s."""
        assert (True, 30.0, 10.0) == (
            settings().kernel,
            settings().kernel_resync_interval,
            settings().kernel_wait_timeout,
        )

    def test_it_can_be_turned_off_and_tuned(self) -> None:
        """`KERNEL=off` gives an API-only agent; the intervals are seconds."""
        tuned = settings(KERNEL="off", KERNEL_RESYNC_INTERVAL="0.5", KERNEL_WAIT_TIMEOUT="3")
        assert (False, 0.5, 3.0) == (tuned.kernel, tuned.kernel_resync_interval, tuned.kernel_wait_timeout)


class TestEveryError:
    """Whatever is wrong, the error is a `ConfigError` whose message starts with the variable's name."""

    @pytest.mark.parametrize(
        ("name", "value"),
        [
            ("HTTP_PORT", "http"),
            ("HTTPPORT", "99999"),
            ("MAX_BODY_BYTES", "lots"),
            ("PEER_IP", "::1"),
            ("PUBLIC_IP", "localhost"),
            ("NETNSPATH", "netns"),
            ("NETNSPREFIX", "a/b"),
            ("DOCKER_NETNS_PATH", "docker"),
            ("MAX_VNI", "0"),
            ("DEFAULT_MTU", "big"),
            ("LOG_FORMAT", "yaml"),
            ("LOG_LEVEL", "trace"),
            ("ETCD_PREFIX", "sand"),
            ("ETCD_APPEND_TIMEOUT", "-1"),
            ("KERNEL", "maybe"),
            ("KERNEL_RESYNC_INTERVAL", "0"),
            ("KERNEL_WAIT_TIMEOUT", "soon"),
        ],
    )
    def test_the_message_names_the_variable(self, name: str, value: str) -> None:
        """A malformed value raises `ConfigError`, its message starting with the name and the value."""
        assert re.match(rf"^{name}[= ]{re.escape(repr(value))}", refusal(**{name: value}))
