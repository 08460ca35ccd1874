"""Leader election against the real API server, with short timings (lease 3s, renew 2s, retry 0.5s)."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator, Callable

import pytest
import yaml
from lightkube import KubeConfig

from patronus.kube.resource import LEASE as LEASE_KIND
from patronus.kube.rest import RestClient
from patronus.runtime.leaderelection import LeaderElectionConfig, LeaderElector, LeadershipLost

LEASE, RENEW, RETRY = 3.0, 2.0, 0.5


class Candidate:
    """A LeaderElector plus a record of what its callbacks saw."""

    def __init__(self, client: RestClient, namespace: str, lease: str, identity: str) -> None:
        self.identity = identity
        self.started = asyncio.Event()
        self.stopped = asyncio.Event()
        self.work_cancelled = False
        config = LeaderElectionConfig(lease, namespace, identity, LEASE, RENEW, RETRY)
        self.elector = LeaderElector(
            client, config, on_started_leading=self._lead, on_stopped_leading=self.stopped.set
        )
        self.task: asyncio.Task[None] | None = None

    async def _lead(self) -> None:
        self.started.set()
        try:
            await asyncio.Event().wait()  # "reconcile" until leadership ends
        except asyncio.CancelledError:
            self.work_cancelled = True
            raise

    def start(self) -> Candidate:
        self.task = asyncio.create_task(self.elector.run(), name=self.identity)
        return self


async def _until(predicate: Callable[[], bool], timeout: float) -> float:
    """Seconds until ``predicate`` holds; fails the test after ``timeout``."""
    start = time.monotonic()
    while not predicate():
        if time.monotonic() - start > timeout:
            pytest.fail(f"condition not met within {timeout}s")
        await asyncio.sleep(0.05)
    return time.monotonic() - start


async def _first(events: dict[str, asyncio.Event], timeout: float) -> str:
    waiters = {asyncio.ensure_future(event.wait()): name for name, event in events.items()}
    done, pending = await asyncio.wait(waiters, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    for waiter in pending:
        waiter.cancel()
    assert done, f"nobody became leader within {timeout}s"
    return waiters[done.pop()]


@pytest.fixture
async def client(control_plane) -> AsyncIterator[RestClient]:
    api = RestClient.from_kubeconfig(control_plane.kubeconfig)
    yield api
    await api.close()


@pytest.fixture
async def cleanup() -> AsyncIterator[list[Candidate]]:
    candidates: list[Candidate] = []
    yield candidates
    for candidate in candidates:
        if candidate.task is not None and not candidate.task.done():
            candidate.task.cancel()
        if candidate.task is not None:
            with contextlib.suppress(asyncio.CancelledError, LeadershipLost):
                await asyncio.wait_for(candidate.task, 10)


def _lease_name() -> str:
    return f"lease-{uuid.uuid4().hex[:8]}"


async def test_exactly_one_of_two_leads_and_release_hands_over(client, namespace, cleanup):
    lease = _lease_name()
    a = Candidate(client, namespace, lease, "a").start()
    b = Candidate(client, namespace, lease, "b").start()
    cleanup.extend([a, b])

    winner_name = await _first({"a": a.started, "b": b.started}, timeout=10)
    winner, standby = (a, b) if winner_name == "a" else (b, a)
    await asyncio.sleep(3 * RETRY + LEASE)  # several renewals and a full lease duration: still one leader
    assert winner.elector.is_leader
    assert not standby.elector.is_leader
    assert not standby.started.is_set()

    stored = (await client.get(LEASE_KIND, namespace, lease))["spec"]
    assert stored.get("holderIdentity") == winner.identity
    assert stored["leaseDurationSeconds"] == int(LEASE)
    assert stored.get("acquireTime") is not None
    assert stored["renewTime"] > stored.get("acquireTime")  # renewed since acquired
    transitions = stored.get("leaseTransitions", 0)

    assert await winner.elector.release()
    assert winner.stopped.is_set()
    assert winner.work_cancelled
    assert not winner.elector.is_leader
    assert winner.task is not None
    await asyncio.wait_for(winner.task, 1)  # run() returns normally after release()

    # Released: holder empty, so the standby need not wait out the lease (jitter: up to 2.2 x retry).
    handover = await _until(standby.started.is_set, timeout=(1 + 1.2) * RETRY + 1.5)
    assert handover < LEASE
    stored = (await client.get(LEASE_KIND, namespace, lease))["spec"]
    assert stored.get("holderIdentity") == standby.identity
    assert stored.get("leaseTransitions", 0) == transitions + 1


async def test_cancelling_the_leader_releases_the_lease(client, namespace, cleanup):
    lease = _lease_name()
    a = Candidate(client, namespace, lease, "a").start()
    cleanup.append(a)
    await asyncio.wait_for(a.started.wait(), 10)
    b = Candidate(client, namespace, lease, "b").start()
    cleanup.append(b)
    await asyncio.sleep(2 * RETRY)
    assert not b.started.is_set()

    assert a.task is not None
    a.task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await a.task
    assert a.stopped.is_set()
    stored = (await client.get(LEASE_KIND, namespace, lease))["spec"]
    assert stored.get("holderIdentity") in ("", None, "b")

    handover = await _until(b.started.is_set, timeout=(1 + 1.2) * RETRY + 1.5)
    assert handover < LEASE


class CuttableProxy:
    """A TCP forwarder to the API server that a test can cut, like a network partition."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = 0
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            writer.close()
            return
        self._writers |= {writer, up_writer}

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            with contextlib.suppress(OSError, asyncio.CancelledError):
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            dst.close()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))

    async def cut(self) -> None:
        assert self._server is not None
        self._server.close()
        for writer in self._writers:
            writer.transport.abort()
        self._writers.clear()
        await self._server.wait_closed()


async def test_leader_cut_off_from_the_api_steps_down_after_renew_deadline(
    control_plane, client, namespace, cleanup
):
    proxy = CuttableProxy(control_plane.apiserver_port)
    await proxy.start()
    config = yaml.safe_load(control_plane.kubeconfig.read_text())
    config["clusters"][0]["cluster"]["server"] = f"https://127.0.0.1:{proxy.port}"
    cut_client = RestClient.from_kube_config(KubeConfig.from_dict(config))
    try:
        lease = _lease_name()
        a = Candidate(cut_client, namespace, lease, "a").start()
        cleanup.append(a)
        await asyncio.wait_for(a.started.wait(), 10)
        b = Candidate(client, namespace, lease, "b").start()
        cleanup.append(b)
        await asyncio.sleep(2 * RETRY)
        assert a.elector.is_leader
        assert not b.started.is_set()

        await proxy.cut()
        cut_at = time.monotonic()
        assert a.task is not None
        with pytest.raises(LeadershipLost):
            await asyncio.wait_for(a.task, RENEW + 2 * RETRY + 2)
        stepped_down_after = time.monotonic() - cut_at
        assert a.stopped.is_set()
        assert a.work_cancelled
        assert not a.elector.is_leader
        # It renewed at most one retry period before the cut, so it gives up within renew_deadline of that.
        assert stepped_down_after <= RENEW + 0.5

        # The standby waits until the record has been unchanged for a whole lease duration (as it saw it).
        await _until(b.started.is_set, timeout=LEASE + (1 + 1.2) * RETRY + 2)
        assert b.elector.is_leader
        assert time.monotonic() - cut_at >= LEASE - RETRY
    finally:
        await cut_client.close()


def test_config_validation_rejects_unsafe_timings():
    with pytest.raises(ValueError, match="renew_deadline"):
        LeaderElectionConfig("l", "ns", "me", lease_duration=10, renew_deadline=10)
    with pytest.raises(ValueError, match="retry_period"):
        LeaderElectionConfig("l", "ns", "me", lease_duration=15, renew_deadline=2, retry_period=2)
    with pytest.raises(ValueError, match="identity"):
        LeaderElectionConfig("l", "ns", "")


async def test_a_crash_in_the_leading_work_steps_down_and_releases(client, namespace):
    lease = _lease_name()
    stopped = asyncio.Event()

    async def crash() -> None:
        raise RuntimeError("controllers failed to start")

    elector = LeaderElector(
        client,
        LeaderElectionConfig(lease, namespace, "crasher", LEASE, RENEW, RETRY),
        on_started_leading=crash,
        on_stopped_leading=stopped.set,
    )
    with pytest.raises(RuntimeError, match="controllers failed to start"):
        await asyncio.wait_for(elector.run(), 10)
    assert stopped.is_set()
    assert not elector.is_leader
    stored = (await client.get(LEASE_KIND, namespace, lease))["spec"]
    assert not stored.get("holderIdentity")  # released, so a standby can take over at once
    assert stored["leaseDurationSeconds"] == 1
