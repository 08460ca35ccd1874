"""The candidate: reads and writes the Lease, leads while it keeps renewing, steps down when it cannot.

Every write is an update carrying the ``resourceVersion`` we read, so two candidates can never both win a
round; whether the lease is free is judged by :class:`~.record.Observation` on our own clock.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import random
from collections.abc import Awaitable, Callable
from datetime import datetime

from patronus.kube.client import KubeClient, Object
from patronus.kube.errors import ApiError, ConflictError, NotFoundError
from patronus.kube.resource import LEASE
from patronus.runtime.clock import Clock, SystemClock
from patronus.runtime.leaderelection.config import LeaderElectionConfig
from patronus.runtime.leaderelection.record import (
    LeaderElectionRecord,
    Observation,
    desired_record,
    released_record,
)
from patronus.runtime.logs import get_logger

log = get_logger(__name__)

HTTP_FORBIDDEN = 403

_EXPIRY_MARGIN = 0.01  # so the retry lands just after expiry, not just before it


class LeadershipLost(Exception):
    """This process was the leader and no longer is; it should stop reconciling (usually: exit)."""


StartedLeading = Callable[[], Awaitable[None]]
StoppedLeading = Callable[[], object]


class LeaderElector:
    """Runs one candidate: ``await elector.run()`` returns after :meth:`release`, raises
    :class:`LeadershipLost` when renewal failed, and releases the lease when cancelled."""

    def __init__(
        self,
        client: KubeClient,
        config: LeaderElectionConfig,
        *,
        clock: Clock | None = None,
        on_started_leading: StartedLeading | None = None,
        on_stopped_leading: StoppedLeading | None = None,
        on_new_leader: Callable[[str], None] | None = None,
    ) -> None:
        self._client = client
        self.config = config
        self._clock = clock or SystemClock()
        self._on_started = on_started_leading
        self._on_stopped = on_stopped_leading
        self._on_new_leader = on_new_leader
        self._observed = Observation()
        self._lease: Object | None = None  # the last Lease we wrote, for the renew fast path
        self._leading = False
        self._stop = asyncio.Event()
        self._running = False
        self._stopped = asyncio.Event()
        self._released_ok = True
        self.problem: str | None = None
        """Why the lease cannot be taken at all (a missing namespace, missing rights), with the fix;
        None while the election works (another holder is not a problem)."""

    @property
    def is_leader(self) -> bool:
        """True while this process leads: between acquiring and stepping down."""
        return self._leading

    @property
    def leader(self) -> str | None:
        """The holder we last observed (``None`` before the first look, ``""`` when released)."""
        record = self._observed.record
        return None if record is None else record.holder_identity

    # -- public lifecycle -----------------------------------------------------------------------

    async def run(self) -> None:
        if self._running:
            raise RuntimeError("LeaderElector.run is already running")
        self._running = True
        self._stopped.clear()
        try:
            if await self._acquire():
                await self._lead()
        finally:
            self._running = False
            self._stop.clear()
            self._stopped.set()

    async def release(self) -> bool:
        """Give up leadership: stop the leading work, then hand the lease over at once.

        With :meth:`run` active, this asks it to stop and waits until it has; ``run`` then returns.
        Returns False if the released lease could not be written (it will expire by itself).
        """
        if self._running:
            self._stop.set()
            await self._stopped.wait()
            return self._released_ok
        return await self._release_lease()

    # -- acquiring ------------------------------------------------------------------------------

    async def _acquire(self) -> bool:
        cfg = self.config
        log.info("trying to acquire the leader lease", lease=cfg.lease_name, identity=cfg.identity)
        while not self._stop.is_set():
            if await self._attempt(timeout=cfg.renew_deadline):
                log.info("acquired the leader lease", lease=cfg.lease_name, identity=cfg.identity)
                return True
            wait = cfg.retry_period * (1 + random.random() * cfg.jitter_factor)
            # Try again the moment the holder's lease expires rather than up to a retry later:
            # this bounds a crashed leader's successor to about leaseDuration + retryPeriod.
            expires_in = self._observed.expires_in(cfg.identity, self._clock.monotonic())
            if expires_in is not None:
                wait = min(wait, expires_in + _EXPIRY_MARGIN)
            if await self._sleep_or_stop(wait):
                break
        return False

    async def _attempt(self, timeout: float) -> bool:
        try:
            async with asyncio.timeout(timeout):
                return await self._try_acquire_or_renew()
        except TimeoutError:
            log.info("lease request timed out", lease=self.config.lease_name, timeout=timeout)
            return False

    async def _try_acquire_or_renew(self) -> bool:
        cfg = self.config
        now = self._clock.monotonic()
        wall = self._clock.now()
        record = self._observed.record

        # Fast path while leading: update from the Lease we wrote last, without a GET.
        if self._holds_lease() and self._lease is not None and self._observed.valid(now):
            desired = desired_record(cfg.identity, cfg.lease_duration_seconds, record, wall)
            if await self._write(self._lease, desired, now):
                return True

        try:
            lease = await self._client.get(LEASE, cfg.lease_namespace, cfg.lease_name)
        except NotFoundError:
            return await self._create(wall, now)
        except ApiError as exc:
            self._report_problem(exc, "read")
            log.warning("cannot read the leader lease", error=exc.message, code=exc.status)
            return False
        except Exception as exc:  # the API is unreachable: just another failed try
            log.warning("cannot read the leader lease", error=repr(exc))
            return False

        old = LeaderElectionRecord.from_lease(lease)
        self._observe(old, now)
        if self._observed.held_by_other(cfg.identity, now):
            return False
        desired = desired_record(cfg.identity, cfg.lease_duration_seconds, old, wall)
        return await self._write(lease, desired, now)

    async def _create(self, wall: datetime, now: float) -> bool:
        cfg = self.config
        desired = desired_record(cfg.identity, cfg.lease_duration_seconds, None, wall)
        lease = {
            "apiVersion": LEASE.api_version,
            "kind": LEASE.kind,
            "metadata": {"name": cfg.lease_name, "namespace": cfg.lease_namespace},
            "spec": desired.to_spec(),
        }
        try:
            self._lease = await self._client.create(lease, kind=LEASE)
        except ConflictError as exc:  # another candidate created it first; it wins this round
            log.info("cannot create the leader lease", error=_describe(exc))
            return False
        except Exception as exc:
            if not self._report_problem(exc, "create"):
                log.info("cannot create the leader lease", error=_describe(exc))
            return False
        self._observe(desired, now)
        return True

    def _report_problem(self, exc: Exception, verb: str) -> bool:
        """Say once, as a warning with the fix, when the lease cannot be taken at all; True if it was such
        a problem. Retrying goes on: the namespace or the rights may appear."""
        cfg = self.config
        where = f"Lease {cfg.lease_namespace}/{cfg.lease_name}"
        if isinstance(exc, NotFoundError) and verb == "create":
            problem = (
                f"cannot create the leader {where}: namespace {cfg.lease_namespace} does not exist; "
                f"create it (kubectl create namespace {cfg.lease_namespace}) or set "
                "LEADER_ELECTION_NAMESPACE (or POD_NAMESPACE) to the namespace the operator runs in"
            )
        elif isinstance(exc, ApiError) and exc.status == HTTP_FORBIDDEN:
            problem = (
                f"not allowed to {verb} the leader {where}: grant the operator's ServiceAccount get, create "
                f"and update on leases in namespace {cfg.lease_namespace}"
            )
        else:
            return False
        if problem != self.problem:
            log.warning(problem, lease=cfg.lease_name, namespace=cfg.lease_namespace)
        self.problem = problem
        return True

    async def _write(self, lease: Object, record: LeaderElectionRecord, now: float) -> bool:
        """Update ``lease`` (at its resourceVersion) to ``record``; a conflict means someone else wrote."""
        updated = {**lease, "spec": record.to_spec()}
        try:
            self._lease = await self._client.replace(updated, kind=LEASE)
        except Exception as exc:
            self._lease = None
            log.info("cannot update the leader lease", error=_describe(exc))
            return False
        self._observe(record, now)
        return True

    def _observe(self, record: LeaderElectionRecord, now: float) -> None:
        if self.problem is not None:
            log.info("the leader lease works now", lease=self.config.lease_name)
            self.problem = None
        previous = self._observed.record
        if self._observed.observe(record, now) and (
            previous is None or previous.holder_identity != record.holder_identity
        ):
            if record.holder_identity:
                log.info("new leader observed", leader=record.holder_identity, lease=self.config.lease_name)
            if self._on_new_leader is not None:
                self._on_new_leader(record.holder_identity)

    def _holds_lease(self) -> bool:
        record = self._observed.record
        return record is not None and record.holder_identity == self.config.identity

    # -- leading --------------------------------------------------------------------------------

    async def _lead(self) -> None:
        self._leading = True
        leading = asyncio.create_task(self._run_started(), name="leading") if self._on_started else None
        renewing = asyncio.create_task(self._renew_loop(), name="lease-renewal")
        try:
            pending: set[asyncio.Task[None]] = {renewing} if leading is None else {renewing, leading}
            while renewing in pending:
                done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
                if leading in done and _failure(leading) is not None:
                    break  # the leading work crashed: step down and let run() raise it
        finally:
            await _cancel(leading)
            await _cancel(renewing)
            self._leading = False
            lost = _failure(renewing) is not None
            if not lost and (self.config.release_on_cancel or self._stop.is_set()):
                self._released_ok = await self._release_lease()
            await self._call_stopped()
        for task in (renewing, leading):
            if (error := _failure(task)) is not None:
                raise error

    async def _run_started(self) -> None:
        if self._on_started is not None:
            await self._on_started()

    async def _renew_loop(self) -> None:
        """Renew every retry_period; raise LeadershipLost once renewal has failed for renew_deadline."""
        cfg = self.config
        last_renewed = self._observed.changed_at
        while not await self._sleep_or_stop(cfg.retry_period):
            deadline = last_renewed + cfg.renew_deadline
            while True:
                started = self._clock.monotonic()
                if started >= deadline:
                    raise LeadershipLost(
                        f"could not renew lease {cfg.lease_name} for {cfg.renew_deadline:g}s"
                    )
                if await self._attempt(timeout=deadline - started):
                    last_renewed = started
                    break
                if self._observed.held_by_other(cfg.identity, self._clock.monotonic()):
                    raise LeadershipLost(f"lease {cfg.lease_name} is now held by {self.leader}")
                wait = min(cfg.retry_period, max(0.0, deadline - self._clock.monotonic()))
                if await self._sleep_or_stop(wait):
                    return

    async def _release_lease(self) -> bool:
        if not self._holds_lease() or self._lease is None:
            return True
        cfg = self.config
        record = self._observed.record
        assert record is not None
        try:
            async with asyncio.timeout(cfg.renew_deadline):
                ok = await self._write(
                    self._lease, released_record(record, self._clock.now()), self._clock.monotonic()
                )
        except TimeoutError:
            ok = False
        log.info(
            "released the leader lease" if ok else "could not release the leader lease", lease=cfg.lease_name
        )
        return ok

    async def _call_stopped(self) -> None:
        log.info("stopped leading", lease=self.config.lease_name, identity=self.config.identity)
        if self._on_stopped is None:
            return
        outcome = self._on_stopped()
        if inspect.isawaitable(outcome):
            await outcome

    async def _sleep_or_stop(self, seconds: float) -> bool:
        """Sleep on our clock; returns True early (and at once) when a stop was requested."""
        if self._stop.is_set():
            return True
        sleeper = asyncio.ensure_future(self._clock.sleep(seconds))
        stopper = asyncio.ensure_future(self._stop.wait())
        try:
            await asyncio.wait({sleeper, stopper}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (sleeper, stopper):
                task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.gather(sleeper, stopper, return_exceptions=True)
        return self._stop.is_set()


async def _cancel(task: asyncio.Task[None] | None) -> None:
    if task is None or task.done():
        return
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await asyncio.wait({task})


def _failure(task: asyncio.Task[None] | None) -> BaseException | None:
    """The exception a finished task raised (None while running, on success, or when cancelled)."""
    if task is None or not task.done() or task.cancelled():
        return None
    return task.exception()


def _describe(exc: Exception) -> str:
    return str(exc) if isinstance(exc, ApiError) else repr(exc)
