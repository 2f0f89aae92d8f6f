"""The fair scheduler of training bursts (playground.fairness), on a hand-driven clock."""

from __future__ import annotations

import pytest

from playground.fairness import FairConfig, FairScheduler


class Clock:
    def __init__(self):
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def make(slots=1, target_wait=40.0, min_turn=1.5):
    clock = Clock()
    return FairScheduler(FairConfig(slots, target_wait, min_turn), clock=clock), clock


def test_round_robin_over_learners_not_first_come_over_bursts():
    s, clock = make()
    a1 = s.enqueue("a")  # a trains at once
    a2 = s.enqueue("a")  # a asks again before the others arrive...
    b1, c1 = s.enqueue("b"), s.enqueue("c")
    a3 = s.enqueue("a")
    assert a1.granted and not any(t.granted for t in (a2, b1, c1, a3))
    assert [s.position(t) for t in (b1, c1, a2, a3)] == [1, 2, 3, 4]  # ...yet b and c go first
    order = []
    for running in (a1, b1, c1, a2):
        clock.t += 2
        s.release(running)
        order.append(next(t for t in (b1, c1, a2, a3) if t.granted and t not in order))
    assert order == [b1, c1, a2, a3]
    assert [t.turn for t in (a1, b1, c1, a2, a3)] == [1, 2, 3, 4, 5]


def test_a_first_burst_overtakes_second_bursts_queued_earlier():
    s, _ = make()
    s.enqueue("x")
    seconds = [s.enqueue(name) for name in ("a", "b")]  # first bursts: rounds 0
    s.release(seconds[0])  # a leaves the queue (stopped while waiting)
    late = s.enqueue("late")
    assert s.position(late) == 2 and s.position(seconds[1]) == 1  # b arrived first, both first bursts


def test_turns_shorten_when_many_wait():
    s, clock = make(target_wait=40, min_turn=1.5)
    first = s.enqueue("a")
    assert s.time_left(first) is None and not s.turn_over(first)  # nobody waits: no bound
    for i in range(4):
        s.enqueue(f"w{i}")
    assert s.turn_length(4) == pytest.approx(10.0)
    clock.t = 9.0
    assert s.time_left(first) == pytest.approx(1.0) and not s.turn_over(first)
    clock.t = 10.5
    assert s.turn_over(first) and first.cut
    assert s.turn_length(100) == 1.5  # never below min_turn
    assert make(slots=2)[0].turn_length(4) == pytest.approx(20.0)  # two slots share the wait


def test_eta_counts_the_turns_ahead():
    s, clock = make(target_wait=40, min_turn=1.5)
    s.enqueue("a")
    waiting = [s.enqueue(f"w{i}") for i in range(4)]  # turns of at most 10 s; the running one began at 0
    clock.t = 4.0
    etas = [s.eta(t) for t in waiting]
    assert etas == sorted(etas) and etas[0] < etas[-1]
    assert all(e > 0 for e in etas)
    assert etas[-1] <= s.config.target_wait  # the last should start within the target


def test_release_is_idempotent_and_frees_the_slot():
    s, _ = make(slots=2)
    a, b, c = s.enqueue("a"), s.enqueue("b"), s.enqueue("c")
    assert a.granted and b.granted and not c.granted
    s.release(a)
    s.release(a)  # twice: harmless (a stopped burst and its cleanup may both release)
    assert c.granted and s.snapshot()["running"] == 2 and s.snapshot()["waiting"] == 0


def test_bad_settings_are_refused(monkeypatch):
    with pytest.raises(ValueError):
        FairConfig(slots=0)
    monkeypatch.setenv("PLAYGROUND_TRAIN_SLOTS", "lots")
    with pytest.raises(ValueError, match="PLAYGROUND_TRAIN_SLOTS"):
        FairConfig.from_env()
    monkeypatch.setenv("PLAYGROUND_TRAIN_SLOTS", "3")
    assert FairConfig.from_env().slots == 3


def test_turns_leave_room_for_what_a_cut_turn_still_does():
    s, clock = make(target_wait=40, min_turn=1.0)
    for i in range(8):
        s.enqueue(f"l{i}")
    first = next(t for t in s._running)
    assert s.turn_length(7) == pytest.approx(40 / 7)
    clock.t = 6.0
    assert s.turn_over(first)
    clock.t = 8.0  # the cut turn took 2 s more (its last step, handing over)
    s.release(first)
    assert s.turn_length(7) < 40 / 7 - 0.5  # the next turns are shorter by (a moving average of) that overrun
    second = next(t for t in s._running)
    s.release(second)
    assert s.turn_over(second), "a released turn (stopped burst) must stop stepping"
