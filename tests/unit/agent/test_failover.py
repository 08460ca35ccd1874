"""Failover with hysteresis: fast failover, slow failback, flapping bounds, both-bad and no-primary cases."""

from __future__ import annotations

import itertools
import math
import random

import pytest

from patronus.agent.failover import DEGRADED_CHECKS, Decision, FailoverPolicy, FailoverState, healthiest
from patronus.agent.probe_stats import CheckResult, PathState
from patronus.api.agentconfig import PolicyConfig

THRESHOLD = 70.0


def check(health: float, *, down: bool = False) -> CheckResult:
    if down:
        return CheckResult(5, 0, None, None, 100.0, 0.0, "down")
    state: PathState = "up" if health >= THRESHOLD else "degraded"
    return CheckResult(5, 5, 20.0, 1.0, 0.0, health, state)


GOOD, BAD, DOWN = check(95), check(50), check(0, down=True)


def state(cooldown: float = 10.0, *, backup: str | None = "lte", degraded_checks: int = 1) -> FailoverState:
    """A policy that leaves a path on its first check below the threshold: the hysteresis tests below
    are about the cooldown; :func:`test_a_degraded_primary_is_left_once_it_lasts` is about the rest."""
    return FailoverState(
        FailoverPolicy("video", "fiber", backup, THRESHOLD, cooldown), degraded_checks=degraded_checks
    )


def test_starts_on_primary_and_stays_while_good() -> None:
    s = state()
    assert s.path_in_use == "fiber"
    for t in range(5):
        assert s.observe("fiber", GOOD, t) is None
        assert s.observe("lte", GOOD, t) is None
    assert (s.failover_count, s.last_failover_at) == (0, None)


def test_fails_over_on_the_first_bad_check() -> None:
    s = state()
    s.observe("lte", GOOD, 0.0)
    s.observe("fiber", GOOD, 0.0)
    decision = s.observe("fiber", BAD, 1.0)
    assert decision == Decision("video", "fiber", "lte", "primary-below-threshold", 1.0)
    assert (s.path_in_use, s.failover_count, s.last_failover_at) == ("lte", 1, 1.0)


def test_fails_over_when_primary_is_down() -> None:
    s = state()
    s.observe("lte", GOOD, 0.0)
    decision = s.observe("fiber", DOWN, 0.5)
    assert decision is not None
    assert decision.reason == "primary-down"


def test_degraded_but_above_threshold_is_still_good() -> None:
    s = FailoverState(FailoverPolicy("video", "fiber", "lte", 40.0, 10.0))
    s.observe("lte", GOOD, 0.0)
    assert s.observe("fiber", BAD, 1.0) is None  # health 50 >= 40, though "degraded"
    assert s.path_in_use == "fiber"


def test_returns_only_after_a_full_cooldown_of_good_checks() -> None:
    s = state(cooldown=10.0)
    s.observe("lte", GOOD, 0.0)
    s.observe("fiber", BAD, 0.0)
    for t in range(1, 10):  # good since t=1: not yet 10 s
        assert s.observe("fiber", GOOD, float(t)) is None
    assert s.observe("fiber", BAD, 10.0) is None  # restarts the clock
    for t in range(11, 21):
        assert s.observe("fiber", GOOD, float(t)) is None
    decision = s.observe("fiber", GOOD, 21.0)  # good since 11
    assert decision == Decision("video", "lte", "fiber", "primary-recovered", 21.0)
    assert (s.failover_count, s.failback_count, s.last_failover_at) == (1, 1, 0.0)


def test_zero_cooldown_returns_on_the_first_good_check() -> None:
    s = state(cooldown=0.0)
    s.observe("lte", GOOD, 0.0)
    s.observe("fiber", BAD, 0.0)
    assert s.observe("fiber", GOOD, 1.0) is not None
    assert s.path_in_use == "fiber"


def simulate(cooldown: float, primary_ok: list[bool]) -> tuple[FailoverState, list[Decision]]:
    """One check per second of each path (primary first; the backup is always good): the decisions."""
    s = state(cooldown)
    decisions = []
    for t, ok in enumerate(primary_ok):
        for path, result in (("fiber", GOOD if ok else BAD), ("lte", GOOD)):
            decision = s.observe(path, result, float(t))
            if decision is not None:
                decisions.append(decision)
    return s, decisions


def assert_hysteresis(cooldown: float, primary_ok: list[bool], decisions: list[Decision]) -> None:
    """Every return to the primary comes a full cooldown after its last bad check; so at most one per
    cooldown, and at most one more failover than failbacks."""
    returns = [d.at for d in decisions if d.path == "fiber"]
    for at in returns:
        last_bad = max(i for i in range(int(at) + 1) if not primary_ok[i])
        assert at - last_bad >= cooldown, f"returned at {at}, last bad check at {last_bad}"
    assert all(b - a >= cooldown for a, b in itertools.pairwise(returns))
    duration = len(primary_ok) - 1
    assert len(returns) <= math.ceil(duration / cooldown)
    assert len(decisions) - len(returns) <= len(returns) + 1


def test_flapping_every_second_fails_over_once_and_never_returns() -> None:
    primary_ok = [t % 2 == 0 for t in range(61)]  # 60 s of 1 s flapping
    s, decisions = simulate(10.0, primary_ok)
    assert_hysteresis(10.0, primary_ok, decisions)
    assert [d.path for d in decisions] == ["lte"]
    assert s.transitions == 1 <= math.ceil(60 / 10) + 1


def test_slow_flapping_returns_at_most_once_per_cooldown() -> None:
    primary_ok = [t % 12 != 1 for t in range(61)]  # one bad second every 12 s
    _, decisions = simulate(10.0, primary_ok)
    assert_hysteresis(10.0, primary_ok, decisions)
    assert [(d.path, d.at) for d in decisions][:3] == [("lte", 1.0), ("fiber", 12.0), ("lte", 13.0)]


@pytest.mark.parametrize("seed", range(50))
def test_random_flapping_respects_the_cooldown(seed: int) -> None:
    rng = random.Random(seed)
    cooldown = rng.choice([3.0, 5.0, 10.0])
    p_bad = rng.choice([0.05, 0.2, 0.5])
    primary_ok = [rng.random() >= p_bad for _ in range(61)]
    _, decisions = simulate(cooldown, primary_ok)
    assert_hysteresis(cooldown, primary_ok, decisions)
    assert [d.path for d in decisions] == ["lte", "fiber"] * (len(decisions) // 2) + ["lte"] * (
        len(decisions) % 2
    )


def test_no_backup_means_staying() -> None:
    s = state(backup=None)
    assert s.observe("fiber", DOWN, 1.0) is None
    assert s.path_in_use == "fiber"


def test_unmeasured_backup_is_not_a_target_until_its_first_check() -> None:
    s = state()
    assert s.observe("fiber", BAD, 1.0) is None
    decision = s.observe("lte", GOOD, 1.2)
    assert decision is not None
    assert decision.path == "lte"


def test_both_bad_stays_on_the_better_one() -> None:
    s = state()
    s.observe("lte", DOWN, 0.0)
    assert s.observe("fiber", BAD, 1.0) is None  # backup down: stay
    s.observe("lte", check(48), 2.0)
    assert s.observe("fiber", check(50), 2.0) is None  # backup bad and not better: stay
    decision = s.observe("fiber", DOWN, 3.0)  # now the backup, though bad, is clearly better
    assert decision is not None
    assert (decision.path, decision.reason) == ("lte", "primary-down")


def test_bad_similar_paths_do_not_trade_places() -> None:
    s = state()
    s.observe("lte", check(60), 0.0)
    assert s.observe("fiber", check(57), 0.0) is None  # within the 5-point margin
    assert s.observe("fiber", check(54), 1.0) is not None  # 6 points worse: move


def test_returns_early_when_the_backup_fails_and_the_primary_is_better() -> None:
    s = state(cooldown=30.0)
    s.observe("lte", GOOD, 0.0)
    s.observe("fiber", DOWN, 0.0)
    s.observe("fiber", BAD, 1.0)
    decision = s.observe("lte", DOWN, 2.0)
    assert decision == Decision("video", "lte", "fiber", "backup-worse", 2.0)
    assert s.failback_count == 1


def test_checks_of_other_paths_are_ignored() -> None:
    s = state()
    assert s.observe("other", DOWN, 0.0) is None
    assert "other" not in s.latest


def test_healthiest() -> None:
    assert healthiest({}) is None
    assert healthiest({"a": DOWN}) is None
    assert healthiest({"a": BAD, "b": GOOD, "c": DOWN}) == "b"
    assert healthiest({"b": GOOD, "a": GOOD}) == "a"  # tie: by name


def test_without_primary_uses_the_healthiest_path() -> None:
    s = FailoverState(FailoverPolicy("any", None, None, THRESHOLD, 10.0), degraded_checks=1)
    assert s.path_in_use is None
    assert s.observe("b", DOWN, 0.0) is None
    decision = s.observe("c", check(80), 0.0)
    assert decision == Decision("any", None, "c", "initial", 0.0)
    assert s.failover_count == 0
    assert s.observe("a", check(82), 1.0) is None  # better, but within the margin
    assert s.observe("a", check(95), 5.0) is None  # clearly better, but a move 5 s ago... cooldown 10 s
    decision = s.observe("a", check(95), 10.0)
    assert decision is not None
    assert (decision.path, decision.reason) == ("a", "healthier")
    decision = s.observe("a", DOWN, 11.0)  # current down: move at once
    assert decision is not None
    assert (decision.path, decision.reason) == ("c", "current-below-threshold")
    assert s.failover_count == 2


def test_a_degraded_primary_is_left_once_it_lasts() -> None:
    """Down moves at once; below the threshold moves after three checks in a row (one check's health
    dips with one held-up probe); a good check in between starts the count again."""
    s = state(degraded_checks=3)
    assert DEGRADED_CHECKS == 3
    assert FailoverState(FailoverPolicy("v", "fiber", "lte", THRESHOLD, 1.0)).degraded_checks == 3
    s.observe("lte", GOOD, 0.0)
    assert s.observe("fiber", BAD, 1.0) is None
    assert s.observe("fiber", BAD, 2.0) is None
    assert s.observe("fiber", GOOD, 3.0) is None
    assert s.observe("fiber", BAD, 4.0) is None
    assert s.observe("fiber", BAD, 5.0) is None
    decision = s.observe("fiber", BAD, 6.0)
    assert decision == Decision("video", "fiber", "lte", "primary-below-threshold", 6.0)
    s2 = state(degraded_checks=3)
    s2.observe("lte", GOOD, 0.0)
    assert s2.observe("fiber", DOWN, 1.0) == Decision("video", "fiber", "lte", "primary-down", 1.0)


def test_a_degraded_backup_is_left_for_a_clearly_better_primary_once_it_lasts() -> None:
    s = state(cooldown=60.0, degraded_checks=2)
    s.observe("lte", GOOD, 0.0)
    s.observe("fiber", DOWN, 0.0)
    s.observe("fiber", check(65), 1.0)
    assert s.observe("lte", check(40), 2.0) is None  # one dip of the backup
    assert s.observe("lte", check(40), 3.0) == Decision("video", "lte", "fiber", "backup-worse", 3.0)


def test_degraded_checks_must_be_positive() -> None:
    with pytest.raises(ValueError, match="degraded_checks"):
        state(degraded_checks=0)


def test_unknown_paths_are_not_measured_yet() -> None:
    """At start the backup may answer before the primary's tunnel has its first handshake: the primary
    is unknown, not bad, and voice stays on it; once it answers, it is judged as usual."""
    unknown = CheckResult(5, 0, None, None, 0.0, 0.0, "unknown")
    s = state()
    s.observe("lte", GOOD, 0.0)
    for t in range(5):
        assert s.observe("fiber", unknown, float(t)) is None
    assert "fiber" not in s.latest
    assert s.observe("fiber", DOWN, 6.0) is not None
    assert healthiest({"fiber": unknown, "lte": BAD}) == "lte"
    assert healthiest({"fiber": unknown}) is None


def test_early_verdicts_move_traffic_the_moment_they_arrive() -> None:
    early_down = CheckResult(0, 0, None, None, 0.0, 0.0, "down", early=True)
    early_up = CheckResult(0, 0, 1.0, None, 0.0, 99.0, "up", early=True)
    s = state(cooldown=10.0)
    s.observe("lte", GOOD, 0.0)
    s.observe("fiber", GOOD, 0.0)
    assert s.observe("fiber", early_down, 0.11) == Decision("video", "fiber", "lte", "primary-down", 0.11)
    assert s.observe("fiber", early_up, 7.0) is None  # the cooldown starts with the first reply
    assert s.observe("fiber", GOOD, 16.9) is None
    assert s.observe("fiber", GOOD, 17.0) == Decision("video", "lte", "fiber", "primary-recovered", 17.0)


def test_policy_from_agent_config() -> None:
    entry = PolicyConfig.model_validate(
        {
            "name": "video",
            "action": {"type": "route", "primaryPath": "fiber", "backupPath": "lte"},
            "failover": {"threshold": 70, "cooldownSeconds": 30.0},
        }
    )
    assert FailoverPolicy.from_config(entry) == FailoverPolicy("video", "fiber", "lte", 70.0, 30.0)


def test_negative_cooldown_is_rejected() -> None:
    with pytest.raises(ValueError, match="negative"):
        state(cooldown=-1)
