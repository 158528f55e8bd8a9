"""The agent: the composition root that wires etcd, the views, the service and the API.

`run(settings)` connects to etcd, replays the log, tails it, and serves the API
until SIGTERM or SIGINT (uvicorn's graceful shutdown: in-flight requests finish).
Writes are refused with 503 until the replay has caught up.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import signal
import ssl
from collections.abc import Iterator

import structlog
import uvicorn

from sand_es.commands import DeactivateEndpoint, Policy
from sand_es.config import AgentSettings
from sand_es.errors import Rejected
from sand_es.etcdlog import EtcdLog
from sand_es.http.app import create_app
from sand_es.kernel.model import HostConfig
from sand_es.kernel.reconciler import Reconciler
from sand_es.projections import EMPTY, Snapshot
from sand_es.service import Service
from sand_es.snapshots import SnapshotStore, write_every
from sand_es.views import LiveViews

log = structlog.get_logger(__name__)


def policy_of(settings: AgentSettings) -> Policy:
    """The decision settings of an agent."""
    return Policy(
        max_vni=settings.max_vni,
        default_mtu=settings.default_mtu,
        netns_path=settings.netns_path,
        netns_prefix=settings.netns_prefix,
    )


def server_config(app: object, settings: AgentSettings) -> uvicorn.Config:
    """uvicorn's settings: HTTPS with required client certificates when HTTP_TLS_* are set."""
    tls: dict[str, object] = {}
    if settings.http_tls is not None:
        tls = {
            "ssl_certfile": str(settings.http_tls.cert),
            "ssl_keyfile": str(settings.http_tls.key),
            "ssl_ca_certs": str(settings.http_tls.ca),
            "ssl_cert_reqs": ssl.CERT_REQUIRED,
        }
    return uvicorn.Config(
        app,  # type: ignore[arg-type]
        host=settings.http_host,
        port=settings.http_port,
        log_config=None,
        access_log=False,
        server_header=False,
        timeout_graceful_shutdown=30,
        **tls,  # type: ignore[arg-type]
    )


def host_config(settings: AgentSettings) -> HostConfig:
    """Who this host is, for the kernel projection."""
    return HostConfig(
        hostname=settings.hostname,
        host_ip=settings.host_ip,
        netns_path=settings.netns_path,
        netns_prefix=settings.netns_prefix,
    )


def kernel_projection(service: Service, settings: AgentSettings) -> Reconciler | None:
    """The reconciler of this host's kernel state, unless `KERNEL=off` (an API-only agent)."""
    if not settings.kernel:
        return None

    async def deactivate(endpoint_id: str, reason: str) -> None:
        # Rejected: already inactive or removed meanwhile, nothing left to mark.
        with contextlib.suppress(Rejected):
            await service.execute(DeactivateEndpoint(endpoint_id=endpoint_id, reason=reason))

    return Reconciler(
        service.views,
        host_config(settings),
        deactivate=deactivate,
        resync_interval=settings.kernel_resync_interval,
    )


async def starting_snapshot(store: SnapshotStore, settings: AgentSettings) -> Snapshot:
    """The newest valid stored snapshot, or the empty one (a full replay) if none is usable.

    Bounded in time: an agent starting while etcd is down must still come up (and
    catch up later), so a snapshot that cannot be read now is simply not used.
    """
    if not settings.snapshot_every:
        return EMPTY
    try:
        async with asyncio.timeout(settings.etcd.read_timeout):
            snapshot = await store.load_newest()
    except Exception as exc:  # any failure means: replay from the start, as without snapshots
        log.warning("no snapshot loaded; replaying the whole log", error=repr(exc))
        return EMPTY
    if snapshot is None:
        return EMPTY
    log.info("starting from a snapshot", seq=snapshot.position.seq, rev=snapshot.position.rev)
    return snapshot


async def _freeze_when_caught_up(views: LiveViews) -> None:
    """Move what the start-up built (modules, the replayed views) out of the collector's sight.

    Those objects live as long as the agent; left in the young generations, every
    collection walks them again, which showed up as 30-40 ms pauses in the middle of
    wiring an endpoint. `gc.freeze` makes later collections skip them.
    """
    gc.freeze()
    await views.caught_up.wait()
    gc.freeze()


class _Server(uvicorn.Server):
    """uvicorn's server, minus its signal handling: uvicorn re-raises SIGTERM once it has
    stopped serving, which would kill the process before the agent closes its etcd
    client. The agent handles the signals itself (see `run`)."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


async def run(settings: AgentSettings) -> None:
    """Run one agent until it is told to stop."""
    event_log = await EtcdLog.connect(settings.etcd)
    store = SnapshotStore(event_log, writer=settings.hostname, keep=settings.snapshot_keep)
    views = LiveViews(await starting_snapshot(store, settings))
    service = Service(
        event_log,
        views,
        actor=settings.hostname,
        policy=policy_of(settings),
        resolve_timeout=settings.etcd.read_timeout,
    )
    kernel = kernel_projection(service, settings)
    app = create_app(service, settings, kernel=kernel, log=event_log)
    server = _Server(server_config(app, settings))
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, lambda: setattr(server, "should_exit", True))
    follower = asyncio.create_task(views.follow(event_log), name="follow-log")

    def on_task_end(task: asyncio.Task[None]) -> None:
        if not task.cancelled() and task.exception() is not None:
            error = repr(task.exception())
            log.error("a background task stopped; shutting down", task=task.get_name(), error=error)
            server.should_exit = True

    follower.add_done_callback(on_task_end)
    tasks = [follower, asyncio.create_task(_freeze_when_caught_up(views), name="gc-freeze")]
    if settings.snapshot_every:
        writer = asyncio.create_task(write_every(views, store, settings.snapshot_every), name="snapshots")
        tasks.append(writer)
    if kernel is not None:
        reconciler = asyncio.create_task(kernel.run(), name="kernel-projection")
        reconciler.add_done_callback(on_task_end)
        tasks.append(reconciler)
    log.info(
        "agent starting",
        hostname=settings.hostname,
        host_ip=settings.host_ip,
        port=settings.http_port,
        https=settings.http_tls is not None,
        etcd=[f"{h.host}:{h.port}" for h in settings.etcd.hosts],
        prefix=settings.etcd.prefix,
        kernel=settings.kernel,
    )
    try:
        await server.serve()
    finally:
        for task in reversed(tasks):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await service.close()
        await event_log.close()
        log.info("agent stopped", seq=views.position.seq)
