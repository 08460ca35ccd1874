"""Steering: policies fail over through their FailoverState; unmatched traffic follows the healthiest path."""

from __future__ import annotations

from patronus.agent.probe_stats import CheckResult, PathState
from patronus.agent.steering import RouteChange, Steering, Steps
from tests.unit.agent.fakes import FIBER, LTE, config


def check(health: float, *, down: bool = False, unknown: bool = False) -> CheckResult:
    if unknown:
        return CheckResult(5, 0, None, None, 0.0, 0.0, "unknown")
    if down:
        return CheckResult(5, 0, None, None, 100.0, 0.0, "down")
    state: PathState = "up" if health >= 70 else "degraded"
    return CheckResult(5, 5, 20.0, 1.0, 0.0, health, state)


GOOD, DOWN = check(95), check(0, down=True)
B_PREFIXES = ("100.96.0.2/32", "10.2.0.0/24")


def configured() -> Steering:
    steering = Steering()
    steering.configure(config())
    return steering


def test_policies_start_on_their_primary() -> None:
    steering = configured()
    assert steering.wanted_paths() == {"voice": FIBER}
    assert steering.primary("voice") == FIBER


def test_primary_down_moves_the_policy_and_unmatched_traffic() -> None:
    steering = configured()
    assert steering.observe(LTE, GOOD, 0.0) == Steps()
    assert steering.observe(FIBER, GOOD, 0.0) == Steps()  # fiber is where the main table sends it
    steps = steering.observe(FIBER, DOWN, 1.0)
    assert [(d.policy, d.previous, d.path, d.reason) for d in steps.decisions] == [
        ("voice", FIBER, LTE, "primary-down")
    ]
    assert steps.routes == (RouteChange("b", LTE, "wg-lte", B_PREFIXES),)
    assert steering.wanted_paths() == {"voice": LTE}


def test_an_unconfirmed_route_change_is_proposed_again() -> None:
    steering = configured()
    steering.observe(LTE, GOOD, 0.0)
    steering.observe(FIBER, GOOD, 0.0)
    first = steering.observe(FIBER, DOWN, 1.0).routes
    assert steering.observe(FIBER, DOWN, 2.0).routes == first  # the kernel refused it: again
    steering.commit_route(first[0])
    assert steering.observe(FIBER, DOWN, 3.0).routes == ()
    assert steering.unmatched_routes() == dict.fromkeys(B_PREFIXES, "wg-lte")


def test_unmatched_moves_only_for_a_clear_gain() -> None:
    steering = configured()
    steering.observe(FIBER, check(80), 0.0)
    steering.observe(LTE, check(84), 0.0)  # 4 points: within the margin
    assert steering.unmatched_routes() == {}
    assert steering.observe(LTE, check(86), 1.0).routes == (RouteChange("b", LTE, "wg-lte", B_PREFIXES),)


def test_unknown_checks_are_ignored() -> None:
    steering = configured()
    steering.observe(LTE, GOOD, 0.0)
    assert steering.observe(FIBER, check(0, unknown=True), 1.0) == Steps()
    assert steering.wanted_paths() == {"voice": FIBER}


def test_a_configuration_change_keeps_the_current_choice_and_resets_unmatched() -> None:
    steering = configured()
    steering.observe(LTE, GOOD, 0.0)
    change = steering.observe(FIBER, DOWN, 1.0).routes[0]
    steering.commit_route(change)
    edited = config(
        policies=[
            {"name": "voice", "priority": 100, "action": {"primaryPath": FIBER, "backupPath": LTE},
             "failover": {"threshold": 60, "cooldownSeconds": 10}},
        ]
    )  # fmt: skip
    steering.configure(edited)
    assert steering.wanted_paths() == {"voice": LTE}
    assert steering.unmatched_routes() == {}  # applying resets the main routes to the primary


def test_an_unchanged_configuration_keeps_the_failover_state() -> None:
    steering = configured()
    steering.observe(LTE, GOOD, 0.0)
    steering.observe(FIBER, DOWN, 1.0)
    steering.configure(config())
    # Same policy: its hysteresis clock is kept, so the fiber is not trusted again before the cooldown.
    steering.observe(FIBER, GOOD, 2.0)
    assert steering.observe(FIBER, GOOD, 11.0).decisions == ()
    assert steering.observe(FIBER, GOOD, 12.0).decisions[0].path == FIBER


def test_nothing_moves_before_the_primary_path_has_answered() -> None:
    steering = configured()
    assert steering.observe(LTE, GOOD, 0.0).routes == ()  # lte answered first: no reason to leave fiber
    assert steering.observe(FIBER, GOOD, 0.5).routes == ()
    assert steering.unmatched_routes() == {}


def test_a_policy_without_a_primary_hears_every_path_and_one_with_sees_only_its_own() -> None:
    steering = Steering()
    steering.configure(
        config(
            policies=[
                {"name": "any", "failover": {"threshold": 70, "cooldownSeconds": 10}},
                {"name": "voice", "action": {"primaryPath": FIBER, "backupPath": LTE}},
            ]
        )
    )
    assert steering.wanted_paths() == {"any": None, "voice": FIBER}
    steps = steering.observe(LTE, GOOD, 0.0)
    assert [(d.policy, d.path, d.reason) for d in steps.decisions] == [("any", LTE, "initial")]
    steps = steering.observe(FIBER, DOWN, 1.0)
    assert [(d.policy, d.path) for d in steps.decisions] == [("voice", LTE)]
