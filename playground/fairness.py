"""Fair turns for training bursts: many learners, few training slots.

A class of 30 shares one 2-core machine. Training bursts are the heavy work; if they ran first-come over bursts,
one learner pressing Continue again and again would keep the others waiting, and 30 bursts of 30 s each would
leave the last learner waiting a quarter of an hour. Instead:

- **Round-robin over learners.** A waiting burst's priority is (turns its learner has had, arrival order): a
  learner's first burst goes before anyone's second, and a learner's second before anyone's third.
- **Bursts shorten when many wait.** A turn may last `target_wait / n_waiting` seconds (never less than
  `min_turn`): with n learners waiting, the last of them starts after about `target_wait` seconds. A turn that
  began when nobody waited is cut short too when others arrive (the caller asks `turn_over()` between steps).
- **A first burst starts within `target_wait` of its press.** Each waiting first burst has a deadline (its arrival
  plus `target_wait`); the running turn ends early enough that the k-th of them in line, after k turns, still
  starts by its own deadline (the share above only looks at how many wait, and as the line drains the turns it
  allows grow: 40/29, 40/28, ..., 40/1 seconds add up to 160 s). What every turn costs beyond its allowed length
  (the step running at the cut, handing over) is measured and counted, so that k turns fit.
- **A few steps, then yield.** A turn that may be cut still trains `min_steps` steps first (a learner's first
  burst shows learning); it ends before the step that would carry it past its length (`turn_over(ticket, steps,
  step_seconds)`), not after it.
- **Prepared before the turn.** A burst may be queued before it is ready (`enqueue(..., ready=False)`) and build
  its model meanwhile: it keeps its place in line from the press, but the slot goes only to ready bursts
  (`mark_ready`), so a turn is spent training, not building; another burst of the same round may go first
  meanwhile, a later round's may not. `on_grant` tells the waiter at once.
- **A place and an estimated start** for every waiting burst (`position`, `eta`), shown in the Train tab.

Plain Python, no gradio: the UI adapter is `playground.ui.scheduler`. All methods are thread-safe.
"""

from __future__ import annotations

import itertools
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field


def _env_number(name: str, default: float, lo: float, hi: float) -> float:
    raw = os.environ.get(name)
    if raw is None:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ValueError(f"{name} must be a number, got {raw!r}") from None
    if not lo <= value <= hi:
        raise ValueError(f"{name} must be in [{lo}, {hi}], got {raw!r}")
    return value


@dataclass(frozen=True)
class FairConfig:
    slots: int = 1  # bursts that train at once
    target_wait: float = 40.0  # seconds: a first burst should start within about this of its press
    min_turn: float = 1.0  # seconds: a turn is never cut shorter than this
    min_steps: int = 2  # steps a turn trains before it can be cut at all (a first burst shows learning)

    def __post_init__(self):
        if self.slots < 1 or self.target_wait <= 0 or self.min_turn <= 0 or self.min_steps < 1:
            raise ValueError(f"bad fairness settings: {self}")

    @classmethod
    def from_env(cls) -> FairConfig:
        """Slots: $PLAYGROUND_TRAIN_SLOTS, else one core in two for training (1 on a 2-vCPU Space: the other core
        answers keystrokes). $PLAYGROUND_FAIR_WAIT_SECONDS, $PLAYGROUND_MIN_TURN_SECONDS and
        $PLAYGROUND_MIN_TURN_STEPS set the others."""
        cores = os.cpu_count() or 1
        return cls(
            slots=int(_env_number("PLAYGROUND_TRAIN_SLOTS", max(1, cores // 2), 1, 64)),
            target_wait=_env_number("PLAYGROUND_FAIR_WAIT_SECONDS", cls.target_wait, 1, 3600),
            min_turn=_env_number("PLAYGROUND_MIN_TURN_SECONDS", cls.min_turn, 0.1, 3600),
            min_steps=int(_env_number("PLAYGROUND_MIN_TURN_STEPS", cls.min_steps, 1, 1000)),
        )


@dataclass(eq=False)
class Ticket:
    """One burst asking for a turn."""

    learner: str
    seq: int  # arrival order
    enqueued_at: float
    rounds: int = 0  # turns the learner had before this one (0: their first burst)
    deadline: float | None = None  # a first burst: when it should have started (arrival + target_wait)
    ready: bool = True  # False while the burst is still being prepared: it keeps its place but is not granted
    on_grant: Callable[[], None] | None = field(default=None, repr=False)  # called (under the lock) when granted
    granted_at: float | None = None
    turn: int | None = None  # the grant's serial number, server-wide (1, 2, ...)
    done: bool = False
    cut: bool = field(default=False)  # set when turn_over() ended the burst early
    allowed: float = 0.0  # the turn length that ended it
    released_at: float | None = None

    @property
    def granted(self) -> bool:
        return self.granted_at is not None

    @property
    def held(self) -> float:
        """Seconds the turn held its slot (0 if it never got one)."""
        if self.granted_at is None:
            return 0.0
        return (self.released_at if self.released_at is not None else time.monotonic()) - self.granted_at

    @property
    def waited(self) -> float:
        """Seconds between asking and getting the turn (so far, while still waiting)."""
        end = self.granted_at if self.granted_at is not None else time.monotonic()
        return end - self.enqueued_at


class FairScheduler:
    """Turns for bursts: `enqueue` -> wait until `ticket.granted` -> train, asking `turn_over` -> `release`."""

    def __init__(self, config: FairConfig | None = None, clock=time.monotonic):
        self.config = config or FairConfig()
        self._clock = clock
        self._lock = threading.Lock()
        self._waiting: list[Ticket] = []
        self._running: list[Ticket] = []
        self._served: OrderedDict[str, int] = OrderedDict()  # learner -> turns granted (bounded, LRU)
        self._seq = itertools.count(1)
        self._turns = itertools.count(1)
        self._avg_turn = self.config.min_turn * 2  # seconds, exponential moving average of finished turns
        self._overrun = 0.0  # seconds a cut turn goes on past its share (its views, the answer): moving average

    # ------------------------------------------------------------------------------------------ queue
    def enqueue(self, learner: str, ready: bool = True, on_grant: Callable[[], None] | None = None) -> Ticket:
        """A burst asks for a turn (its place in line counts from now). `ready=False`: it is still being prepared
        and is not granted before `mark_ready`. `on_grant` is called once, under the scheduler's lock, when the
        turn is granted: it must only signal (e.g. `loop.call_soon_threadsafe`)."""
        with self._lock:
            now, rounds = self._clock(), self._served.get(learner, 0) + sum(t.learner == learner for t in self._waiting)
            deadline = now + self.config.target_wait if rounds == 0 else None
            ticket = Ticket(learner, next(self._seq), now, rounds, deadline, ready, on_grant)
            self._waiting.append(ticket)
            self._dispatch()
            return ticket

    def mark_ready(self, ticket: Ticket) -> None:
        """The burst is prepared (model built): it may be granted now."""
        with self._lock:
            ticket.ready = True
            self._dispatch()

    def release(self, ticket: Ticket) -> None:
        """The burst ended (done, failed, stopped or abandoned while waiting): its slot goes to the next."""
        with self._lock:
            if ticket.done:
                return
            ticket.done = True
            if ticket in self._waiting:
                self._waiting.remove(ticket)
            if ticket in self._running:
                self._running.remove(ticket)
                ticket.released_at = self._clock()
                took = ticket.released_at - ticket.granted_at
                self._avg_turn = 0.7 * self._avg_turn + 0.3 * took
                if ticket.cut:
                    self._overrun = 0.7 * self._overrun + 0.3 * max(0.0, took - ticket.allowed)
            self._dispatch()

    def _key(self, t: Ticket) -> tuple[int, int]:
        return (t.rounds, t.seq)

    def _dispatch(self) -> None:  # under the lock
        while len(self._running) < self.config.slots:
            # the first in line, or if it is still being prepared the next prepared one of the same round: a
            # second burst does not jump ahead of a first burst that is building its model (the slot waits)
            best = min(self._waiting, key=self._key, default=None)
            if best is not None and not best.ready:
                ready = (t for t in self._waiting if t.ready and t.rounds == best.rounds)
                best = min(ready, key=self._key, default=None)
            if best is None:
                return
            nxt = best
            self._waiting.remove(nxt)
            nxt.granted_at, nxt.turn = self._clock(), next(self._turns)
            self._served[nxt.learner] = self._served.get(nxt.learner, 0) + 1
            self._served.move_to_end(nxt.learner)
            while len(self._served) > 10_000:
                self._served.popitem(last=False)
            self._running.append(nxt)
            if nxt.on_grant is not None:
                try:
                    nxt.on_grant()
                except Exception:  # noqa: BLE001 - a waiter that is gone (its event loop closed) still polls
                    pass

    # --------------------------------------------------------------------------------------- turn length
    def turn_length(self, n_waiting: int) -> float | None:
        """How long a turn may last while `n_waiting` bursts wait (None: as long as it asked for): the target wait
        shared among them, less what a cut turn still takes after its share (so that n turns fit the target)."""
        if n_waiting <= 0:
            return None
        share = self.config.target_wait * self.config.slots / n_waiting
        return max(self.config.min_turn, share - self._overrun)

    def allowed(self, ticket: Ticket) -> float | None:
        """How long this running turn may last, given who waits now (None: as long as it asked for): the share of
        `turn_length`, and short enough that every waiting first burst starts by its deadline. The k-th of them in
        line starts after this turn and k - 1 more (k / slots with several slots); if each of those k turns lasts
        L and costs what turns were seen to cost beyond their length, L <= (deadline_k - granted) * slots / k -
        overrun. Never under `min_turn`."""
        with self._lock:
            return self._allowed(ticket)

    def _allowed(self, ticket: Ticket) -> float | None:  # under the lock
        if not self._waiting or ticket.granted_at is None:
            return None
        length = self.turn_length(len(self._waiting))
        firsts = sorted((t for t in self._waiting if t.deadline is not None), key=self._key)
        for k, t in enumerate(firsts, start=1):
            fit = (t.deadline - ticket.granted_at) * self.config.slots / k - self._overrun
            length = min(length, max(self.config.min_turn, fit))
        return length

    def time_left(self, ticket: Ticket) -> float | None:
        """Seconds left in this turn, given who waits now (None: no bound; 0: the turn is over)."""
        length = self.allowed(ticket)
        if length is None:
            return None
        return max(0.0, length - (self._clock() - ticket.granted_at))

    def turn_over(self, ticket: Ticket, steps: int | None = None, step_seconds: float = 0.0) -> bool:
        """True when others wait and this turn has had its share: the burst should end now (and says so). With
        `steps` (trained so far in this turn) and `step_seconds` (what the last one took), a turn is never cut
        before `min_steps` steps, and it ends before a step as long as the last would carry it past its length.
        Also True once the turn was released (the burst was stopped or its learner left): stop stepping."""
        if ticket.done:
            return True
        if steps is not None and steps < self.config.min_steps:
            return False
        length = self.allowed(ticket)
        if length is None or self._clock() - ticket.granted_at + step_seconds < length:
            return False
        ticket.cut, ticket.allowed = True, length
        return True

    # ------------------------------------------------------------------------------------- what to show
    def position(self, ticket: Ticket) -> int:
        """0 while training; else 1 = next to start, 2 = after that one, ..."""
        with self._lock:
            if ticket not in self._waiting:
                return 0
            key = self._key(ticket)
            return 1 + sum(self._key(t) < key for t in self._waiting)

    def eta(self, ticket: Ticket) -> float:
        """Estimated seconds until this burst starts: what the running turns have left, then one turn each for
        those ahead, each as long as the recent average (or the turns now allowed plus what a turn was seen to
        cost beyond its length, if shorter). A running turn past the average may still go on to its allowed
        length: half of what it may still take is counted."""
        pos = self.position(ticket)
        if pos == 0:
            return 0.0
        with self._lock:
            now, caps = self._clock(), {id(t): self._allowed(t) or self._avg_turn for t in self._running}
            cap = min(caps.values(), default=self.turn_length(len(self._waiting)) or self._avg_turn)
            length = min(cap + self._overrun, max(self._avg_turn, self.config.min_turn))
            left = sorted(
                max(length - (now - t.granted_at), (caps[id(t)] - (now - t.granted_at)) / 2, 0.0) for t in self._running
            )
            slots = self.config.slots
        first = left[0] if len(left) >= slots else 0.0
        return first + (pos - 1) * length / slots

    def snapshot(self) -> dict:
        """Counts, and `turn_s`: how long the running turn may now last (None: no bound)."""
        with self._lock:
            allowed = [a for a in map(self._allowed, self._running) if a is not None]
            turn = min(allowed) if allowed else self.turn_length(len(self._waiting))
            return {"waiting": len(self._waiting), "running": len(self._running), "slots": self.config.slots,
                    "avg_turn_s": round(self._avg_turn, 2), "turn_s": turn}  # fmt: skip
