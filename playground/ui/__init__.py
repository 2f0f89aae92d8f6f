"""The Gradio app: one tab per lesson. The only package of the project that imports gradio.

Each tab module exposes `build(ctx)`, called inside the app's `gr.Tabs()`; it lays out its widgets
and wires its events to thin handlers over `playground.*`.
"""

from __future__ import annotations

import importlib

import gradio as gr

from playground.ui import guard, scheduler, share
from playground.ui.common import CSS, HEAD, THEME, TabContext, new_session

# Tab modules in the order learners meet them: text -> tokens -> loss -> training -> sampling -> alignment.
TABS = [
    "start_tab",
    "tokenize_tab",
    "cross_entropy_tab",
    "train_tab",
    "sample_tab",
    "compare_tab",
    "orpo_tab",
]


def build_app() -> gr.Blocks:
    _cap_closed_session_ttl()
    guard.install()  # one session cannot fill the queue; jobs nobody waits for are dropped
    # Gradio's temporary files (uploads, returned files): every hour, those older than an hour are deleted
    with gr.Blocks(title="LLM Playground", analytics_enabled=False, delete_cache=(3600, 3600)) as demo:
        gr.HTML(
            "<div class='pg-header'><h1>LLM Playground</h1>"
            "<p>Build a language model step by step: tokens, loss, training, sampling, alignment.</p></div>"
        )
        instructor = share.instructor_toggle()
        session = gr.State(value=new_session(), time_to_live=_ttl())
        # "wrap": on a phone the tab bar wraps onto more rows instead of folding five lessons into a "⋯" menu, so every
        # label the lessons name ("Click **1 Tokenize**") stays on screen (tests/browser/test_phone_layout.py)
        with gr.Tabs(elem_id="pg-tabs", overflow_behavior="wrap") as tabs:
            ctx = TabContext(demo=demo, session=session, tabs=tabs, instructor=instructor)
            for name in TABS:
                importlib.import_module(f"playground.ui.{name}").build(ctx)
        share.wire(ctx)  # after every tab: one load restores a shared link (tab + inputs) for all of them
    scheduler.install(demo)  # fair training turns, light work first, queued learners keep their state
    return demo


def launch_kwargs() -> dict:
    """What `launch()` takes besides the server address (which Gradio reads from GRADIO_SERVER_NAME/PORT)."""
    from playground.limits import LIMITS

    # state_session_capacity: Gradio keeps every session's config (~0.4 MB here) until this many exist
    kwargs = {
        "theme": THEME,
        "css": CSS,
        "head": HEAD,
        "show_error": True,
        "state_session_capacity": LIMITS.max_sessions,
        "max_file_size": LIMITS.max_upload_bytes,
    }  # Gradio refuses a larger upload before it is written
    # a class of 30: every learner's burst may wait for its turn (an await, no thread) while keystrokes run
    kwargs["max_threads"] = 100
    return kwargs


def queue_kwargs() -> dict:
    """What `queue()` takes: at most LIMITS.max_queue jobs waiting in all (then "queue full")."""
    from playground.limits import LIMITS

    return {"default_concurrency_limit": 1, "max_size": LIMITS.max_queue}


def _cap_closed_session_ttl() -> None:
    """Gradio keeps the state of a closed session (tab closed, heartbeat gone) for an hour
    (SessionState.STATE_TTL_WHEN_CLOSED), even when gr.State's time_to_live is shorter: learners who left held
    their models longer than those who stayed (the load test's memory grew by every departed learner's models).
    Cap it at our time to live. Guarded: if Gradio changes this internal, nothing breaks, the cap is just lost."""
    from gradio import state_holder

    cls = getattr(state_holder, "SessionState", None)
    if cls is None or getattr(cls, "_pg_capped", False):
        return
    original = cls.__init__

    def __init__(self, *args, **kwargs):
        original(self, *args, **kwargs)
        self.STATE_TTL_WHEN_CLOSED = min(getattr(self, "STATE_TTL_WHEN_CLOSED", 3600), _ttl())

    cls.__init__ = __init__
    cls._pg_capped = True


def _ttl() -> int:
    from playground.limits import LIMITS

    return LIMITS.session_ttl_seconds
