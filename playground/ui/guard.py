"""Queue guards: one visitor cannot fill the queue, and a job nobody waits for any more is not run.

Gradio's queue (6.x) bounds its total size (`queue(max_size=...)`, see `playground.ui.queue_kwargs`) but not what
one session may have waiting, and it runs a posted job whose result stream nobody reads. Two guarded patches of
`gradio.queueing.Queue` (as `_cap_closed_session_ttl` in `playground.ui`: if Gradio changes these internals,
nothing breaks, the guard is just lost):

- `push`: a session with `LIMITS.max_session_jobs` jobs not yet delivered (waiting, running, or finished but
  unread) gets "queue full" (HTTP 503 with our message) for the next one;
- `get_events`: whenever a job is about to start, the waiting jobs whose session has nobody reading its results
  (no pending read of the session's message stream for `ABANDONED_AFTER` seconds) are taken out of the queue, and
  running streaming jobs of such sessions are marked dead (Gradio stops them at their next update).
"""

from __future__ import annotations

import asyncio
import logging
import time

log = logging.getLogger(__name__)

ABANDONED_AFTER = 10.0  # seconds without anyone reading a session's results before its waiting jobs are dropped


class _TrackedQueue(asyncio.Queue):
    """A session's message queue that remembers when someone last read it."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.last_read = time.monotonic()

    async def get(self):
        self.last_read = time.monotonic()
        try:
            return await super().get()
        finally:
            self.last_read = time.monotonic()

    def abandoned(self, now: float) -> bool:
        return not self._getters and now - self.last_read > ABANDONED_AFTER


def install() -> None:
    _redact_errors()
    from gradio import queueing

    cls = getattr(queueing, "Queue", None)
    if cls is None or getattr(cls, "_pg_guarded", False) or not hasattr(cls, "push") or not hasattr(cls, "get_events"):
        return
    push, get_events = cls.push, cls.get_events

    async def guarded_push(self, body, request, username):
        from playground.limits import LIMITS

        session = getattr(body, "session_hash", None)
        if session:
            waiting = len(self.pending_event_ids_session.get(session, ()))
            if waiting >= LIMITS.max_session_jobs:
                return (
                    False,
                    (
                        f"You already have {waiting} requests waiting or unread (the limit is "
                        f"{LIMITS.max_session_jobs}): wait for them to finish."
                    ),
                    "queue_full",
                )
            messages = self.pending_messages_per_session.get(session)
            if messages is None:
                self.pending_messages_per_session[session] = _TrackedQueue()
            elif isinstance(messages, _TrackedQueue):
                messages.last_read = time.monotonic()  # the client just posted: it has time to open its stream
        result = await push(self, body, request, username)
        if result[0] and not session:  # Gradio named the session after the event: track it from now on
            _track(self, result[1])
        return result

    def guarded_get_events(self):
        _drop_abandoned(self)
        return get_events(self)

    cls.push, cls.get_events, cls._pg_guarded = guarded_push, guarded_get_events, True


def _track(queue, event_id: str) -> None:
    event = queue.event_ids_to_events.get(event_id)
    if event is None:
        return
    old = queue.pending_messages_per_session.get(event.session_hash)
    if old is not None and not isinstance(old, _TrackedQueue) and not old._getters:
        new = _TrackedQueue()
        while not old.empty():
            new.put_nowait(old.get_nowait())
        queue.pending_messages_per_session[event.session_hash] = new


def _drop_abandoned(queue) -> None:
    """Take out of the queue the waiting jobs whose session nobody reads (called under Gradio's delete lock)."""
    now = time.monotonic()
    for event_queue in list(queue.event_queue_per_concurrency_id.values()):
        for event in list(event_queue.queue):
            messages = queue.pending_messages_per_session.get(event.session_hash)
            if not (isinstance(messages, _TrackedQueue) and messages.abandoned(now)):
                continue
            event.alive = False
            event_queue.queue.remove(event)
            queue.event_ids_to_events.pop(event._id, None)
            ids = queue.pending_event_ids_session.get(event.session_hash)
            if ids is not None:
                ids.discard(event._id)
                if not ids:
                    queue.pending_event_ids_session.pop(event.session_hash, None)
            log.warning("dropped a %s job: nobody reads its results", getattr(event.fn, "api_name", "?"))
    for job in list(queue.active_jobs):  # a streaming job stops at its next update once marked dead
        for event in job or ():
            messages = queue.pending_messages_per_session.get(event.session_hash)
            if event.alive and isinstance(messages, _TrackedQueue) and messages.abandoned(now):
                event.alive = False


def _redact_errors() -> None:
    """Gradio's own error messages (e.g. "Cannot move <working folder>/file:/etc/passwd ...") pass through
    playground.redact as ours do: no server folder reaches a visitor."""
    from gradio import queueing, routes, utils

    original = getattr(utils, "error_payload", None)
    if original is None or getattr(original, "_pg_redacted", False):
        return

    def error_payload(error, show_error):
        from playground.redact import redact

        content = original(error, show_error)
        if isinstance(content.get("error"), str):
            content["error"] = redact(content["error"])
        return content

    error_payload._pg_redacted = True
    for module in (utils, queueing, routes):
        if getattr(module, "error_payload", None) is original:
            module.error_payload = error_payload
