"""Per-peer WireGuard application on the injected clock: one bad peer fails alone and backs off on its own,
host names are resolved by the agent and re-resolved (as wg-quick's reresolve-dns does) only for peers
whose session has gone stale."""

from __future__ import annotations

import pytest

from patronus.agent.dataplane.commands import CommandError
from patronus.agent.dataplane.peers import PeerSpec, PeerState
from patronus.agent.dataplane.peersync import STALE_HANDSHAKE_SECONDS, Backoff, PeerSync
from patronus.runtime.clock import FakeClock

KEY_A = "A" * 43 + "="
KEY_B = "B" * 42 + "A="
KEY_C = "C" * 42 + "A="


class Fake:
    """A kernel that keeps what ``wg set`` gave it, a resolver from a dict, and a log of both."""

    def __init__(self, clock: FakeClock) -> None:
        self.clock = clock
        self.names: dict[str, str] = {}
        self.lookups: list[str] = []
        self.refuse: set[str] = set()
        self.applied: list[list[str]] = []
        self.peers: dict[str, PeerSpec] = {}
        self.handshakes: dict[str, int] = {}

    def resolve(self, host: str, port: int) -> str:
        self.lookups.append(host)
        if host not in self.names:
            raise OSError(f"{host}: Name or service not known")
        return self.names[host]

    def apply(self, args: list[str]) -> None:
        key = args[1]
        if key in self.refuse:
            raise CommandError(["wg", "set", "wg0", *args], 1, "Invalid argument")
        self.applied.append(args)
        if args[2:] == ["remove"]:
            del self.peers[key]
            return
        settings = dict(zip(args[2::2], args[3::2], strict=True))
        old = self.peers.get(key, PeerSpec(key))
        self.peers[key] = PeerSpec.create(
            key,
            settings.get("endpoint", old.endpoint),
            settings["allowed-ips"].split(",") if settings.get("allowed-ips") else old.allowed_ips,
            int(str(settings.get("persistent-keepalive", old.persistent_keepalive)).replace("off", "0")),
        )

    def current(self) -> list[PeerState]:
        return [PeerState(spec, self.handshakes.get(key, 0), 0, 0) for key, spec in self.peers.items()]


@pytest.fixture
def env() -> tuple[FakeClock, Fake, PeerSync]:
    clock = FakeClock()
    fake = Fake(clock)
    return (
        clock,
        fake,
        PeerSync(fake.apply, clock=clock, resolver=fake.resolve, backoff=Backoff(1.0, 2.0, 8.0)),
    )


def peer(key: str, endpoint: str | None, overlay: str) -> PeerSpec:
    return PeerSpec.create(key, endpoint, [overlay])


def test_a_host_name_that_does_not_resolve_blocks_only_its_own_endpoint(env) -> None:
    clock, fake, sync = env
    fake.names["b.example"] = "192.0.2.2"
    desired = [
        peer(KEY_A, "nowhere.invalid:51820", "100.96.0.1/32"),
        peer(KEY_B, "b.example:51820", "100.96.0.2/32"),
        peer(KEY_C, "192.0.2.3:51820", "100.96.0.3/32"),
    ]
    result = sync.sync(fake.current(), desired)
    assert fake.peers[KEY_B].endpoint == "192.0.2.2:51820"  # resolved by the agent, given to wg as an IP
    assert fake.peers[KEY_C].endpoint == "192.0.2.3:51820"
    # The bad one is still a peer (its site can reach us), only without an endpoint.
    assert fake.peers[KEY_A] == PeerSpec.create(KEY_A, None, ["100.96.0.1/32"])
    assert list(result.failed) == [KEY_A]
    failure = result.failed[KEY_A]
    assert "nowhere.invalid" in failure.error
    assert (failure.attempts, failure.retry_at) == (1, clock.monotonic() + 1.0)
    assert result.next_due == clock.monotonic() + 1.0


def test_a_failed_peer_backs_off_on_its_own_schedule(env) -> None:
    clock, fake, sync = env
    desired = [
        peer(KEY_A, "nowhere.invalid:51820", "100.96.0.1/32"),
        peer(KEY_C, "192.0.2.3:51820", "100.96.0.3/32"),
    ]
    sync.sync(fake.current(), desired)
    delays = []
    for _ in range(5):
        lookups = len(fake.lookups)
        clock.advance(0.5)
        sync.sync(fake.current(), desired)
        assert len(fake.lookups) == lookups  # not before its time, however often sync runs
        failure = sync.failures()[KEY_A]
        clock.advance(failure.retry_at - clock.monotonic())
        result = sync.sync(fake.current(), desired)
        assert len(fake.lookups) == lookups + 1
        delays.append(result.failed[KEY_A].retry_at - clock.monotonic())
    assert delays == [2.0, 4.0, 8.0, 8.0, 8.0]  # doubling, capped
    assert sync.failures()[KEY_A].attempts == 6
    fake.names["nowhere.invalid"] = "192.0.2.1"  # DNS is fixed
    clock.advance(8.0)
    result = sync.sync(fake.current(), desired)
    assert result.ok
    assert fake.peers[KEY_A].endpoint == "192.0.2.1:51820"


def test_changing_a_failed_peer_retries_it_at_once(env) -> None:
    _clock, fake, sync = env
    sync.sync(fake.current(), [peer(KEY_A, "nowhere.invalid:51820", "100.96.0.1/32")])
    fake.names["fixed.example"] = "192.0.2.9"
    result = sync.sync(fake.current(), [peer(KEY_A, "fixed.example:51820", "100.96.0.1/32")])
    assert result.ok
    assert fake.peers[KEY_A].endpoint == "192.0.2.9:51820"


def test_a_peer_wg_refuses_does_not_stop_the_others(env) -> None:
    clock, fake, sync = env
    fake.refuse.add(KEY_B)
    desired = [
        peer(key, f"192.0.2.{i}:51820", f"100.96.0.{i}/32") for i, key in enumerate((KEY_A, KEY_B, KEY_C), 1)
    ]
    result = sync.sync(fake.current(), desired)
    assert set(fake.peers) == {KEY_A, KEY_C}
    assert list(result.failed) == [KEY_B]
    assert "Invalid argument" in result.failed[KEY_B].error
    assert [change[1] for change in result.applied] == [KEY_A, KEY_C]
    fake.refuse.clear()
    clock.advance(1.0)
    assert sync.sync(fake.current(), desired).ok
    assert set(fake.peers) == {KEY_A, KEY_B, KEY_C}


def test_a_removal_that_fails_is_retried_with_backoff(env) -> None:
    clock, fake, sync = env
    sync.sync(fake.current(), [peer(KEY_A, "192.0.2.1:51820", "100.96.0.1/32")])
    fake.refuse.add(KEY_A)
    assert list(sync.sync(fake.current(), []).failed) == [KEY_A]
    fake.refuse.clear()
    assert KEY_A in fake.peers
    assert sync.sync(fake.current(), []).failed  # still waiting
    clock.advance(1.0)
    assert sync.sync(fake.current(), []).ok
    assert fake.peers == {}


def test_host_names_are_re_resolved_only_when_the_session_is_stale(env) -> None:
    clock, fake, sync = env
    fake.names["b.example"] = "192.0.2.2"
    desired = [peer(KEY_B, "b.example:51820", "100.96.0.2/32")]
    sync.sync(fake.current(), desired)
    fake.names["b.example"] = "198.51.100.2"  # the site moved
    fake.handshakes[KEY_B] = int(clock.now().timestamp())  # but its session is alive (it roamed)
    clock.advance(60)
    result = sync.sync(fake.current(), desired)
    assert fake.lookups == ["b.example"]  # a live session is never touched: roaming keeps working
    assert result.applied == []
    clock.advance(STALE_HANDSHAKE_SECONDS)  # no handshake for 195 s: it stopped answering
    result = sync.sync(fake.current(), desired)
    assert fake.lookups == ["b.example", "b.example"]
    assert result.applied == [["peer", KEY_B, "endpoint", "198.51.100.2:51820"]]
    result = sync.sync(fake.current(), desired)
    assert fake.lookups == ["b.example", "b.example"]  # at most every 30 s
    assert result.next_due == clock.monotonic() + 30.0


def test_an_unchanged_address_is_not_set_again(env) -> None:
    clock, fake, sync = env
    fake.names["b.example"] = "192.0.2.2"
    desired = [peer(KEY_B, "b.example:51820", "100.96.0.2/32")]
    sync.sync(fake.current(), desired)
    clock.advance(300)
    result = sync.sync(fake.current(), desired)
    assert len(fake.lookups) == 2
    assert result.applied == []
    assert result.ok
