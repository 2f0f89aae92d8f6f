"""A class on one small machine: keystrokes stay instant, training bursts take fair turns, queued learners stay.

Three mechanisms, installed by `install(demo)` (called once in `build_app`):

1. **Fair training turns** (`fair(handler, waiting)`): a training handler (a generator) is wrapped in an async
   generator that first takes a turn from `TRAIN` (`playground.fairness.FairScheduler`: round-robin over learners,
   shorter turns when many wait), yielding "you are 3rd, estimated start in ~8 s" to the Train tab while it waits
   (an await, no worker thread held), then runs the handler's steps in worker threads. Its events run in their own
   concurrency group (`TRAIN_GROUP`) with a limit high enough (60) that Gradio's first-come queue does not order a
   class's bursts: the fair scheduler does. The handler asks `turn_over()` between steps and ends its burst early
   when its turn is up.
2. **Light work first** (`pause_for_light()`): the CPU budget. Training runs on one torch thread per burst and one
   burst per slot (`FairConfig.slots`, one core in two), on threads of its own; between two steps it steps aside
   (sleeps, which frees both the core and Python's GIL) while a light event (tokenize, cross-entropy, the
   next-token distribution, the ORPO breakdown: anything outside the heavy groups) is running or queued, up to
   `PAUSE_PER_STEP` seconds a step.
   Python's GIL switch interval drops from 5 ms to 1 ms, so the event loop and the light handlers get the
   interpreter back sooner from a thread that is busy in Python.
3. **A queued learner is an active learner** (`_keep_busy_sessions`): Gradio's `gr.State(time_to_live=...)`
   counts from the state's last change, so a learner whose request waited longer than the time to live lost their
   model before it ran ("You have not trained a model in this session yet"). The time to live now restarts when a
   request of the session arrives and every second while one is queued or running: it counts from the learner's
   latest request.

Gradio internals used (guarded: if they change, 2 and 3 degrade to doing nothing, the app still runs):
`Blocks._queue.active_jobs`, `Queue.event_queue_per_concurrency_id`, `Queue.push`, `StateHolder.session_data`,
`SessionState._state_ttl`, `StateHolder.delete_all_expired_state`.
"""

from __future__ import annotations

import asyncio
import datetime
import functools
import html
import inspect
import logging
import sys
import threading
import time

import gradio as gr

from playground.fairness import FairConfig, FairScheduler, Ticket

log = logging.getLogger(__name__)

TRAIN = FairScheduler(FairConfig.from_env())
TRAIN_GROUP = "train"  # concurrency id of the fair training events
HEAVY_GROUPS = {"heavy", TRAIN_GROUP}  # everything else counts as light work that training steps aside for
# The fair scheduler orders these, so Gradio lets up to 60 in at once (a waiting burst holds one of Gradio's
# `max_threads` = 100 job slots, no thread): the other 40 stay free for keystrokes even with 60 bursts waiting
TRAIN_EVENTS = {"concurrency_id": TRAIN_GROUP, "concurrency_limit": 60}
PAUSE_PER_STEP = 0.25  # seconds a training step may wait for light work at most
POLL = 0.5  # seconds between two looks at the place in line while waiting (the grant itself wakes it at once)
SWITCH_INTERVAL = 0.001  # seconds (CPython's default: 0.005)

_DEMO: list = []  # the Blocks app, for its queue
_LOCAL = threading.local()  # the turn of the burst running in this worker thread


# ------------------------------------------------------------------------------------------ install
def install(demo: gr.Blocks) -> None:
    """Give the scheduler the app's queue; shorten the GIL switch interval; keep queued learners' state alive."""
    _DEMO[:] = [demo]
    sys.setswitchinterval(SWITCH_INTERVAL)
    _keep_busy_sessions()


# ------------------------------------------------------------------------------------ fair training turns
TURN = "pg:turn"  # what a handler yields when it is prepared and needs the training slot (a str: it pickles)


def fair(handler, waiting, scheduler: FairScheduler | None = None, prepare: bool | None = None):
    """`handler` (a generator function whose outputs are tuples) as an async generator that waits for a fair turn
    first; `waiting(status_html)` gives the outputs to show while waiting (the status, and skips).

    The burst takes its place in line when it arrives. With `prepare` (the default, except on ZeroGPU) the handler
    runs meanwhile, outside the slot, up to its first `yield TURN` (checking inputs, building the model): the turn
    is then spent training. On ZeroGPU the whole handler runs inside one GPU call, which must not wait in line, so
    the turn is taken first and TURN is skipped."""
    sched = scheduler or TRAIN
    if prepare is None:
        from playground import spaces_support

        prepare = not spaces_support.on_zero_gpu()

    @functools.wraps(handler)
    async def wrapper(*args):
        *args, request = args
        granted = asyncio.Event()
        loop = asyncio.get_running_loop()
        ticket = sched.enqueue(_learner(request, args), ready=not prepare,
                               on_grant=lambda: loop.call_soon_threadsafe(granted.set))  # fmt: skip
        try:
            it = handler(*args)
            if prepare:  # until the handler asks for the slot: outside any turn, while in line
                while (out := await _to_thread(next, it, _END, training=False)) != TURN:
                    if out is _END:
                        return
                    yield out
                sched.mark_ready(ticket)
            async for out in _wait_for_turn(ticket, granted, request, waiting, sched):
                yield out
            if not ticket.granted:  # the learner left while waiting
                return
            log.info("turn %d to %s after %.1f s", ticket.turn, ticket.learner[:8], ticket.waited)
            while (out := await _to_thread(_next_in_turn, it, ticket)) is not _END:
                if out != TURN:
                    yield out
        finally:
            sched.release(ticket)
            log.info("turn %s of %s: %.2f s, cut %s (allowed %.2f s)", ticket.turn, ticket.learner[:8],
                     ticket.held, ticket.cut, ticket.allowed)  # fmt: skip

    del wrapper.__wrapped__  # Gradio reads the signature below, not the handler's
    params = list(inspect.signature(handler).parameters.values())
    request = inspect.Parameter("request", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=gr.Request)
    wrapper.__signature__ = inspect.Signature([*params, request])
    wrapper.__annotations__ = {"request": gr.Request}
    return wrapper


async def _wait_for_turn(ticket: Ticket, granted: asyncio.Event, request, waiting, sched: FairScheduler):
    """Until the turn is granted (woken at once by the scheduler) or the learner closed the tab: the place in
    line and the estimated start, refreshed when the place changes and every 2 s."""
    shown, t_shown = None, 0.0
    while not ticket.granted:
        if _closed(request):  # the learner closed the tab: their place goes to the others
            return
        pos, eta = sched.position(ticket), sched.eta(ticket)
        if pos and (pos != shown or time.monotonic() - t_shown > 2.0):
            yield waiting(queue_html(pos, eta, ticket.waited, sched))
            shown, t_shown = pos, time.monotonic()
        try:
            await asyncio.wait_for(granted.wait(), POLL)
        except asyncio.TimeoutError:
            pass


_END = object()


def _next_in_turn(it, ticket: Ticket):
    _LOCAL.ticket = ticket
    try:
        return next(it, _END)
    finally:
        _LOCAL.ticket = None


_POOL: list = []  # the training threads (lazily made), apart from Gradio's pool: they run at a lower priority


def _train_pool():
    """Threads for training steps only. With $PLAYGROUND_TRAIN_NICE=n > 0 each is lowered to nice n (Linux: a
    thread's nice value is its own), so that the kernel runs the event loop and light handlers first. Off by
    default: measured on a machine shared with other processes, a lowered thread holding Python's GIL was
    descheduled in favour of *those* processes and every thread of the app waited for it (priority inversion):
    the class run got slower, not faster. (A thread of Gradio's own pool could not be lowered at all: it serves
    keystrokes later, and an unprivileged process cannot raise a priority back.)"""
    if not _POOL:
        from concurrent.futures import ThreadPoolExecutor

        _POOL.append(ThreadPoolExecutor(TRAIN.config.slots * 2 + 2, "pg-train", initializer=_lower_priority))
    return _POOL[0]


def _lower_priority() -> None:
    import os

    try:
        nice = int(os.environ.get("PLAYGROUND_TRAIN_NICE", "0"))
        if nice > 0 and hasattr(os, "setpriority"):
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), nice)
    except (OSError, ValueError):  # not allowed, or a bad value: run at the normal priority
        log.warning("training threads keep the normal priority")


async def _to_thread(fn, *args, training: bool = True):
    """`fn(*args)` on a training thread (else on asyncio's default pool: a burst's preparation, which must not
    hold up the running turn's steps), in a copy of this request's context (Gradio keeps the request there, and
    ZeroGPU's `spaces.GPU` reads it), as `anyio.to_thread.run_sync` would."""
    import contextvars

    context = contextvars.copy_context()
    pool = _train_pool() if training else None
    return await asyncio.get_running_loop().run_in_executor(pool, context.run, fn, *args)


def _closed(request) -> bool:
    """Has this browser session gone (its heartbeat ended: Gradio marks the session closed)?"""
    holder = getattr(_DEMO[0], "state_holder", None) if _DEMO else None
    sid = getattr(request, "session_hash", None)
    session = getattr(holder, "session_data", {}).get(sid) if sid else None
    return bool(getattr(session, "is_closed", False))


def _learner(request, args) -> str:
    """Who asks: the browser session (one per tab opened), else the session state's identity."""
    sid = getattr(request, "session_hash", None)
    return str(sid) if sid else f"state-{id(args[0]) if args else 0}"


def current_turn() -> Ticket | None:
    """The turn of the burst running in this thread (None outside a fair turn: CLI, tests, other tabs)."""
    return getattr(_LOCAL, "ticket", None)


def time_left() -> float | None:
    """Seconds left in this thread's turn, given who waits now (None: no bound)."""
    ticket = current_turn()
    return TRAIN.time_left(ticket) if ticket is not None else None


def end_turn() -> None:
    """The burst's training is over (its views are still to draw): the slot goes to the next learner now."""
    ticket = current_turn()
    if ticket is not None:
        TRAIN.release(ticket)


def turn_over(steps: int | None = None, step_seconds: float = 0.0) -> bool:
    """True when others wait and this thread's burst has had its share of the slot (after `steps` steps in this
    turn, the last of which took `step_seconds`: see FairScheduler.turn_over)."""
    ticket = current_turn()
    return ticket is not None and TRAIN.turn_over(ticket, steps, step_seconds)


def turn_note() -> str:
    """For the burst's final status: how long it waited, and whether its turn was cut short."""
    ticket = current_turn()
    if ticket is None:
        return ""
    note = f"waited {ticket.waited:.0f} s for a turn" if ticket.waited >= 0.5 else ""
    if ticket.cut:
        note += ("; " if note else "") + "shortened: other learners are waiting (press Continue for more)"
    return note


def turn_attrs() -> dict:
    """data-* attributes for the status: the turn number, the wait, whether it was cut and how long it held the
    slot (the load tool reads them)."""
    ticket = current_turn()
    if ticket is None:
        return {}
    return {"turn": ticket.turn, "waited": f"{ticket.waited:.2f}", "cut": int(ticket.cut), "held": f"{ticket.held:.2f}"}


def queue_html(position: int, eta: float, waited: float, sched: FairScheduler) -> str:
    """The Train tab's status while a burst waits for its turn."""
    snap = sched.snapshot()
    place = {1: "next", 2: "2nd", 3: "3rd"}.get(position, f"{position}th")
    length = snap["turn_s"]
    short = f"; while {snap['waiting']} wait, each burst lasts at most {length:.0f} s" if length else ""
    text = (
        f"Waiting for a training slot: you are {place} in line ({snap['waiting']} waiting, "
        f"{snap['slots']} training at once{short}). Estimated start in about {max(1, round(eta))} s "
        f"(waited {waited:.0f} s). Other tabs work meanwhile."
    )
    return (
        f"<div class='pg-stats' id='train-status-inner' data-step='0' data-queue='{position}' "
        f"data-eta='{eta:.1f}'><span class='pg-note'>{html.escape(text)}</span></div>"
    )


# ------------------------------------------------------------------------------------- light work first
def light_pending() -> bool:
    """Is a light event (outside HEAVY_GROUPS) running or queued? Read from any thread without locks: a list or
    dict changed meanwhile raises RuntimeError, read as yes (the safe answer for a keystroke)."""
    queue = getattr(_DEMO[0], "_queue", None) if _DEMO else None
    if queue is None:
        return False
    try:
        for job in list(queue.active_jobs):
            for event in job or ():
                if event.fn.concurrency_id not in HEAVY_GROUPS:
                    return True
        for cid, event_queue in list(queue.event_queue_per_concurrency_id.items()):
            if cid not in HEAVY_GROUPS and event_queue.queue:
                return True
    except (RuntimeError, AttributeError):
        return True
    return False


def pause_for_light(most: float = PAUSE_PER_STEP) -> float:
    """Between two training steps: sleep while light work runs or waits, at most `most` seconds. Returns the
    seconds paused (0.0 at once when nothing light is pending or outside a fair turn)."""
    ticket = current_turn()
    if ticket is None:
        return 0.0
    t0 = time.perf_counter()
    while not ticket.done and light_pending() and time.perf_counter() - t0 < most:
        time.sleep(0.003)
    return time.perf_counter() - t0


# ------------------------------------------------------------------------------ queued learners stay alive
def _keep_busy_sessions() -> None:
    """Restart a session's state time to live when one of its requests arrives, and every second while one is
    queued or running (Gradio's expiry loop calls delete_all_expired_state every second)."""
    try:
        from gradio import queueing, state_holder
    except ImportError:  # pragma: no cover - Gradio moved its internals: keep Gradio's own behaviour
        return
    holder_cls, queue_cls = getattr(state_holder, "StateHolder", None), getattr(queueing, "Queue", None)
    if holder_cls is None or queue_cls is None or getattr(holder_cls, "_pg_busy", False):
        return
    expire, push = holder_cls.delete_all_expired_state, queue_cls.push

    def delete_all_expired_state(self):
        queue = getattr(getattr(self, "blocks", None), "_queue", None)
        for sid in _busy_sessions(queue):
            _touch(self, sid)
        return expire(self)

    async def queue_push(self, body, *args, **kwargs):
        _touch(getattr(self.blocks, "state_holder", None), getattr(body, "session_hash", None))
        result = await push(self, body, *args, **kwargs)
        _touch(getattr(self.blocks, "state_holder", None), getattr(body, "session_hash", None))
        return result

    holder_cls.delete_all_expired_state = delete_all_expired_state
    queue_cls.push = queue_push
    holder_cls._pg_busy = True


def _busy_sessions(queue) -> set[str]:
    busy: set[str] = set()
    if queue is None:
        return busy
    try:
        for job in list(queue.active_jobs):
            busy.update(event.session_hash for event in job or ())
        for event_queue in list(queue.event_queue_per_concurrency_id.values()):
            busy.update(event.session_hash for event in list(event_queue.queue))
    except (RuntimeError, AttributeError):
        pass
    return busy


def _touch(holder, session_hash: str | None) -> None:
    """Restart the time to live of every gr.State of this session (Gradio counts it from `_state_ttl[key][1]`)."""
    data = getattr(holder, "session_data", None)
    if not session_hash or data is None or session_hash not in data:
        return
    ttl = getattr(data[session_hash], "_state_ttl", None)
    if isinstance(ttl, dict):
        now = datetime.datetime.now()
        for key, (time_to_live, _) in list(ttl.items()):
            ttl[key] = (time_to_live, now)
