"""Helpers every tab shares: theme, lesson panel, error handling, model choices and the shared model cache."""

from __future__ import annotations

import functools
import logging
import threading
import weakref
from dataclasses import dataclass, field
from typing import Any

import gradio as gr

from playground import ASSETS, LESSONS, spaces_support
from playground.device import pick_device

log = logging.getLogger(__name__)

THEME = gr.themes.Soft(
    primary_hue="indigo",
    secondary_hue="amber",
    font=["DejaVu Sans", "Helvetica", "Arial", "sans-serif"],
    font_mono=["DejaVu Sans Mono", "Menlo", "monospace"],
).set(
    # WCAG AA (4.5:1) for text, checked by axe in tests/browser/test_accessibility.py: Soft's indigo-500 labels on
    # indigo-100 reach only 3.6:1, its grey-400 hints on white 2.5:1 and white on indigo-500 buttons 4.46:1.
    block_title_text_color="*primary_700",
    block_label_text_color="*primary_700",
    body_text_color_subdued="*neutral_600",
    body_text_color_subdued_dark="*neutral_400",
    color_accent="*primary_600",
    button_primary_background_fill="*primary_600",
    button_primary_background_fill_hover="*primary_700",
    button_primary_background_fill_dark="*primary_600",
    button_primary_background_fill_hover_dark="*primary_700",
    button_secondary_background_fill_hover_dark="*primary_600",
    button_primary_border_color="*primary_600",
    checkbox_label_background_fill_selected="*primary_600",
    link_text_color="*secondary_800",
    link_text_color_active="*secondary_800",
    link_text_color_visited="*secondary_800",
    link_text_color_visited_dark="*secondary_500",
)
CSS = (ASSETS / "style.css").read_text(encoding="utf-8") if (ASSETS / "style.css").exists() else ""
HEAD = f"<script>{(ASSETS / 'page.js').read_text(encoding='utf-8')}</script>"  # accessibility patches (page.js)
LATEX = [{"left": "$$", "right": "$$", "display": True}, {"left": "$", "right": "$", "display": False}]

# Event queues. A 2-vCPU Space: heavy events (training, generation, ORPO steps) share one queue with a small
# limit; light ones (tokenize, tables) run several at once. Use as `btn.click(..., **HEAVY)`.
HEAVY = {"concurrency_id": "heavy", "concurrency_limit": 2}
LIGHT = {"concurrency_limit": 8}

TRAINED = "my model (Train tab)"  # the choice that means "the model this learner trained in this session"

# ZeroGPU: `spaces` (when installed) is imported before anything asks for CUDA, so that it can patch torch;
# `gpu(duration=...)` wraps the GPU-heavy handlers in spaces.GPU, or leaves them as they are (spaces_support.py).
spaces_support.spaces_module()
gpu = spaces_support.gpu
gpu_seconds = spaces_support.number  # a handler argument as seconds-relevant number

# Where the app runs its models: cuda > mps > cpu, or $PLAYGROUND_DEVICE. Shared models load there once.
DEVICE = pick_device()


@dataclass
class TabContext:
    demo: gr.Blocks
    session: gr.State  # per-user dict (see new_session), shared by every tab
    tabs: gr.Tabs | None = None  # the app's tab set: `gr.Tabs(selected="<tab id>")` switches tab
    shared: dict = field(default_factory=dict)  # tab id -> {link key: component}, filled by share.register
    instructor: gr.Checkbox | None = None  # the header's instructor-mode toggle (share.py)
    presets: gr.Dropdown | None = None  # the Start tab's demo presets (share.presets_picker)


def new_session() -> dict[str, Any]:
    """Per-user state: what this learner trained or changed. Deep-copied by gradio for each session."""
    return {"trained": None, "train_run": None, "orpo_model": None, "tokenizers": {}}


# ---------------------------------------------------------------------------------------------- lessons
def lesson(name: str, open: bool = True) -> gr.Accordion:
    """The tab's lesson (lessons/<name>.md) in a collapsible panel, LaTeX rendered."""
    text = (LESSONS / f"{name}.md").read_text(encoding="utf-8")
    with gr.Accordion("Lesson", open=open, elem_classes=["pg-lesson"]) as acc:
        gr.Markdown(text, latex_delimiters=LATEX, elem_classes=["pg-lesson-text"])
    return acc


# ----------------------------------------------------------------------------------------------- errors
USER_ERRORS = (ValueError, FileNotFoundError, PermissionError, KeyError, OSError, RuntimeError)


def friendly(fn):
    """Turn bad-input errors raised by `playground.*` into a `gr.Error` the learner reads in the UI.

    ValueError and friends carry a message written for people; anything else is logged with its stack
    trace server-side and shown as a short apology, never as a trace.
    """

    def _raise(exc: BaseException):
        if isinstance(exc, gr.Error):
            raise exc
        if isinstance(exc, USER_ERRORS):
            raise gr.Error(_message(exc)) from exc
        log.exception("unexpected error in %s", fn.__name__)
        raise gr.Error(f"Something went wrong ({type(exc).__name__}). The server keeps running; try again.") from exc

    if _is_generator(fn):

        @functools.wraps(fn)
        def gen_wrapper(*args, **kwargs):
            try:
                yield from fn(*args, **kwargs)
            except Exception as exc:  # noqa: BLE001 - converted for the UI
                _raise(exc)

        return gen_wrapper

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except Exception as exc:  # noqa: BLE001 - converted for the UI
            _raise(exc)

    return wrapper


def _message(exc: BaseException) -> str:
    msg = str(exc.args[0]) if isinstance(exc, KeyError) and exc.args else str(exc)
    return msg[:500] or type(exc).__name__


def _is_generator(fn) -> bool:
    import inspect

    return inspect.isgeneratorfunction(fn)


# ------------------------------------------------------------------------------------------------ models
_CACHE: dict[str, Any] = {}
_CACHE_LOCK = threading.Lock()


def shared_bundle(source: str):
    """A read-only model bundle loaded once and shared by every user (never train it in place)."""
    from playground import checkpoints
    from playground.limits import LIMITS

    key = checkpoints.check_source(source)  # bundled / Hub id; local folders only if allowed (one policy)
    with _CACHE_LOCK:
        if key not in _CACHE:
            bundle = checkpoints.load(key, device=str(DEVICE), local=LIMITS.allow_local_paths)
            bundle.model.eval()
            _CACHE[key] = bundle
            if len(_CACHE) > 6:  # keep memory bounded on a small Space: forget the oldest Hub model
                _CACHE.pop(next(iter(_CACHE)))
        return _CACHE[key]


def resolve_bundle(source: str, session: dict | None):
    """The bundle a model dropdown means: this learner's trained model, or a shared one by name / path / Hub id."""
    if not source or not str(source).strip():
        raise ValueError("Choose a model first.")
    if source == TRAINED:
        bundle = (session or {}).get("trained")
        if bundle is None:
            raise ValueError("You have not trained a model in this session yet: run a burst in the Train tab first.")
        return bundle
    return shared_bundle(source)


# ------------------------------------------------------------------------------ per-learner trainable models
_LIVE = weakref.WeakSet()  # every learner's trainable model (Train tab run, ORPO copy) still held by a session
_LIVE_LOCK = threading.Lock()


def register_trainable(model, what: str = "model"):
    """Count `model` among the learners' trainable models, or refuse it when they already hold
    LIMITS.max_live_train_params parameters together. A Train-tab run keeps weights and AdamW moments (12 bytes a
    parameter), an ORPO copy its weights, and a whole class trains at once: this bounds the server's memory.
    Models leave the count by themselves when no session holds them any more (Reset, a new Start, expiry)."""
    from playground.limits import LIMITS

    n = sum(p.numel() for p in model.parameters())
    with _LIVE_LOCK:
        live = sum(sum(p.numel() for p in m.parameters()) for m in list(_LIVE))
        if live + n > LIMITS.max_live_train_params:
            raise ValueError(
                f"The server is busy: learners' models already hold {live / 1e6:.0f}M parameters and this {what} "
                f"would add {n / 1e6:.1f}M (the limit here is {LIMITS.max_live_train_params / 1e6:.0f}M). "
                "Try again in a few minutes, or pick a smaller model."
            )
        _LIVE.add(model)
    return model


def model_choices(kinds: tuple[str, ...] = ("gpt", "llama"), trained: bool = True) -> list[str]:
    from playground import checkpoints

    names = [name for name, meta in checkpoints.BUNDLED.items() if meta["arch"] in kinds]
    return names + ([TRAINED] if trained else [])


def model_picker(label: str = "Model", value: str | None = None, kinds=("gpt", "llama"), trained=True, **kw):
    choices = model_choices(kinds, trained)
    return gr.Dropdown(
        choices=choices,
        value=value or (choices[0] if choices else None),
        label=label,
        allow_custom_value=True,
        info=source_hint("A bundled model, your trained one"),
        **kw,
    )


def source_hint(first: str) -> str:
    """A picker's hint: `first`, then a local folder only where this server allows them (limits.py), and a Hub id."""
    from playground.limits import LIMITS

    folder = ", a local folder" if LIMITS.allow_local_paths else ""
    return f"{first}{folder}, or a Hub id such as HuggingFaceTB/SmolLM2-135M"


# ----------------------------------------------------------------------------------------------- exports
def csv_export(table: gr.Dataframe, elem: str, api_name: str, label: str = "Download the table as CSV"):
    """A button under `table` that writes what it shows to a CSV file offered for download."""
    with gr.Row(elem_classes=["pg-export"]):
        btn = gr.Button(label, size="sm", scale=0, min_width=200, elem_id=f"{elem}-csv-btn")
        out = gr.File(label="CSV", interactive=False, height=60, scale=3, elem_id=f"{elem}-csv")
    btn.click(friendly(table_to_csv), table, out, api_name=f"{api_name}_csv", **LIGHT)
    return btn, out


def table_to_csv(frame) -> str | None:
    """A Dataframe's value (pandas frame, or dict with headers/data) -> path of a CSV file; None when empty."""
    import csv
    import tempfile

    if frame is None:
        return None
    if hasattr(frame, "to_csv"):
        headers, rows = [str(c) for c in frame.columns], frame.values.tolist()
    else:
        headers, rows = list(frame.get("headers") or []), list(frame.get("data") or [])
    if not rows:
        raise ValueError("The table is empty: compute something first.")
    with tempfile.NamedTemporaryFile("w", suffix=".csv", prefix="pg-table-", delete=False, newline="") as f:
        writer = csv.writer(f)
        writer.writerow(headers)
        writer.writerows(rows)
    return f.name
