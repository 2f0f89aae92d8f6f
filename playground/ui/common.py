"""Helpers every tab shares: theme, lesson panel, error handling, model choices and the shared model cache."""

from __future__ import annotations

import functools
import html
import logging
import threading
import time
import weakref
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gradio as gr

from playground import ASSETS, LESSONS, spaces_support
from playground.device import pick_device
from playground.shared_cache import SharedCache

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


class Session(dict):
    """A learner's state: a dict that can be weakly referenced (the memory bound reclaims idle learners' models
    through it without keeping the session alive)."""


def new_session() -> dict[str, Any]:
    """Per-user state: what this learner trained or changed. Deep-copied by gradio for each session."""
    return Session(trained=None, train_run=None, orpo_model=None, tokenizers={})


# ---------------------------------------------------------------------------------------------- lessons
def lesson(name: str, open: bool = True) -> gr.Accordion:
    """The tab's lesson (lessons/<name>.md) in a collapsible panel, LaTeX rendered."""
    text = (LESSONS / f"{name}.md").read_text(encoding="utf-8")
    with gr.Accordion("Lesson", open=open, elem_classes=["pg-lesson"]) as acc:
        gr.Markdown(text, latex_delimiters=LATEX, elem_classes=["pg-lesson-text"])
    return acc


# ----------------------------------------------------------------------------------------------- errors
# Input errors: `playground.*` raises ValueError (or a subclass) with a message written for people, naming the
# bad value. Anything else (RuntimeError, KeyError, OSError, ...) is a bug or a server problem: it is logged with
# its traceback and the learner is told so, instead of being shown as if their input were wrong.
USER_ERRORS = (ValueError,)


def friendly(fn):
    """Turn bad-input errors raised by `playground.*` into a `gr.Error` the learner reads in the UI.

    ValueError carries a message written for people; anything else is logged with its stack trace server-side
    and shown as an internal error, never as a trace.
    """

    def _raise(exc: BaseException):
        if isinstance(exc, gr.Error):
            raise exc
        if isinstance(exc, USER_ERRORS):
            raise gr.Error(_message(exc)) from exc
        log.error("internal error in %s", fn.__name__, exc_info=exc)
        raise gr.Error(
            f"Internal error ({type(exc).__name__}): a bug on our side, not your input. It is logged; the server "
            "keeps running, so try again or try other values."
        ) from exc

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
    from playground.redact import redact

    msg = str(exc.args[0]) if isinstance(exc, KeyError) and exc.args else str(exc)
    return redact(msg)[:500] or type(exc).__name__  # no server folders, no C++ source locations


def _is_generator(fn) -> bool:
    import inspect

    return inspect.isgeneratorfunction(fn)


# ------------------------------------------------------------------------------------------------ models
_CACHE = SharedCache(capacity=6)  # keep memory bounded on a small Space: the least recently used model goes


def shared_bundle(source: str):
    """A read-only model bundle loaded once and shared by every user (never train it in place). Loads run
    outside any lock other visitors need (playground/shared_cache.py): a slow Hub holds up only that model."""
    from playground import checkpoints
    from playground.limits import LIMITS

    key = checkpoints.check_source(source)  # bundled / Hub id; local folders only if allowed (one policy)

    def load():
        bundle = checkpoints.load(key, device=str(DEVICE), local=LIMITS.allow_local_paths)
        bundle.model.eval()
        return bundle

    return _CACHE.get(key, load)


def resolve_bundle(source: str, session: dict | None):
    """The bundle a model dropdown means: this learner's trained model, or a shared one by name / path / Hub id."""
    if not source or not str(source).strip():
        raise ValueError("Choose a model first.")
    if source == TRAINED:
        bundle = (session or {}).get("trained")
        if bundle is None:
            raise ValueError("You have not trained a model in this session yet: run a burst in the Train tab first.")
        touch(bundle.model)
        return bundle
    return shared_bundle(source)


# ------------------------------------------------------------------------------ per-learner trainable models
@dataclass
class Held:
    """What the memory bounds know of one learner's trainable model. Kept beside the model, not on it: a model
    crosses process boundaries (pickled on ZeroGPU), and a weak reference cannot be pickled."""

    client: str  # the visitor's address
    params: int
    session: weakref.ReferenceType | None  # the session that holds it (to reclaim it from), if known
    used: float  # time.monotonic() of its last use


# every learner's trainable model (Train tab run, ORPO copy) still held by a session -> its Held
_LIVE: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_LIVE_LOCK = threading.Lock()


def register_trainable(model, what: str = "model", session: dict | None = None):
    """Count `model` among the learners' trainable models, or refuse it when they already hold
    LIMITS.max_live_train_params parameters together, or this client (one address: new session ids do not
    help) LIMITS.max_client_train_params. A Train-tab run keeps weights and AdamW moments (12 bytes a
    parameter), an ORPO copy its weights, and a whole class trains at once: this bounds the server's memory.
    Models leave the count by themselves when no session holds them any more (Reset, a new Start, expiry).
    Under memory pressure (live models past half the global bound) the models of sessions idle for
    LIMITS.reclaim_idle_seconds are taken back first (`session` is where this one lives, so it can be too)."""
    from playground.limits import LIMITS

    n = sum(p.numel() for p in model.parameters())
    client = client_id()
    with _LIVE_LOCK:
        if _live_params() + n > LIMITS.max_live_train_params // 2:
            _reclaim_idle(LIMITS.reclaim_idle_seconds)
        live, mine = _live_params(), _live_params(client)
        if mine + n > LIMITS.max_client_train_params or live + n > LIMITS.max_live_train_params:
            import gc

            gc.collect()  # models of reset or expired sessions may wait in reference cycles: count what is held
            live, mine = _live_params(), _live_params(client)
        if mine + n > LIMITS.max_client_train_params:
            raise ValueError(
                f"Your models already hold {mine / 1e6:.0f}M parameters on this server and this {what} would add "
                f"{n / 1e6:.1f}M (the limit per visitor is {LIMITS.max_client_train_params / 1e6:.0f}M): press "
                "Reset in a tab you no longer use, or try again later."
            )
        if live + n > LIMITS.max_live_train_params:
            raise ValueError(
                f"The server is busy: learners' models already hold {live / 1e6:.0f}M parameters and this {what} "
                f"would add {n / 1e6:.1f}M (the limit here is {LIMITS.max_live_train_params / 1e6:.0f}M). "
                "Try again in a few minutes, or pick a smaller model."
            )
        owner = weakref.ref(session) if isinstance(session, Session) else None
        _LIVE[model] = Held(client, n, owner, time.monotonic())
    return model


def touch(model) -> None:
    """Mark a learner's model as used now (it is reclaimed last under memory pressure)."""
    held = _LIVE.get(model)
    if held is not None:
        held.used = time.monotonic()


def _live_params(client: str | None = None) -> int:
    return sum(h.params for h in list(_LIVE.values()) if client is None or h.client == client)


def _reclaim_idle(idle_seconds: float) -> int:
    """Drop, from their sessions, the models unused for `idle_seconds`; returns how many. The learner finds no
    model on return (as after expiry); the memory is freed when the last reference goes."""
    now, dropped = time.monotonic(), 0
    for m, held in sorted(list(_LIVE.items()), key=lambda item: item[1].used):
        session = held.session() if held.session is not None else None
        if now - held.used < idle_seconds or session is None:
            continue
        for key, value in list(session.items()):
            held = value.get("bundle") if isinstance(value, dict) else value
            if held is m or getattr(held, "model", None) is m:
                session[key] = None
        _LIVE.pop(m, None)
        dropped += 1
    if dropped:
        log.info("memory pressure: reclaimed %d idle learners' models", dropped)
    return dropped


def client_id() -> str:
    """Who sent the request being handled: the address the connection came from, or behind a trusted proxy (on a
    Space, or with PLAYGROUND_TRUST_PROXY=1) the last X-Forwarded-For entry, which the proxy itself appended
    (without a proxy a visitor could write any address there). '' outside a request."""
    import os

    from playground.limits import LIMITS

    try:
        from gradio.context import LocalContext

        request = LocalContext.request.get(None)
    except LookupError:
        request = None
    if request is None:
        return ""
    headers = getattr(request, "headers", None) or {}
    forwarded = headers.get("x-forwarded-for", "") if hasattr(headers, "get") else ""
    if forwarded.strip() and (LIMITS.trust_proxy or os.environ.get("SPACE_ID")):
        return forwarded.split(",")[-1].strip()
    client = getattr(request, "client", None)
    return str(getattr(client, "host", "") or "")


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


# ----------------------------------------------------------------------------------------------- plots
def plot_legend(colours: dict[str, str], elem_id: str) -> gr.HTML:
    """The colour legend of the line plot just above, as a list that wraps onto more rows on a narrow screen.

    Gradio draws its plots with Vega-Lite, whose bottom legend stays on one row: at phone width (390 px) the last
    entries fell outside the plot and were cut off, and Gradio offers no legend setting. So the plot is given these
    colours (`color_map`), this list names them, and style.css hides Vega's own legend in the page (the exported PNG
    still draws it, on one row)."""
    items = "".join(
        f"<li><span class='pg-swatch' style='background:{colour}'></span>{html.escape(name)}</li>"
        for name, colour in colours.items()
    )
    return gr.HTML(
        f"<ul class='pg-legend' aria-label='Legend of the plot above'>{items}</ul>",
        elem_id=elem_id,
        padding=False,
    )


# ----------------------------------------------------------------------------------------------- exports
def csv_export(table: gr.Dataframe, elem: str, api_name: str, label: str = "Download the table as CSV"):
    """A button under `table` that writes what it shows to a CSV file offered for download."""
    with gr.Row(elem_classes=["pg-export"]):
        btn = gr.Button(label, size="sm", scale=0, min_width=200, elem_id=f"{elem}-csv-btn")
        out = gr.File(label="CSV", interactive=False, height=60, scale=3, elem_id=f"{elem}-csv")
    btn.click(friendly(table_to_csv), table, out, api_name=f"{api_name}_csv", **LIGHT)
    return btn, out


DOWNLOAD_PREFIX = "pg-download-"  # temporary folders of files offered for download
DOWNLOAD_KEEP_SECONDS = 60  # Gradio copies a returned file into its cache at once: ours can go soon after


def prune_downloads(keep_seconds: float = DOWNLOAD_KEEP_SECONDS, folder: Path | None = None,
                    pattern: str = f"{DOWNLOAD_PREFIX}*") -> int:  # fmt: skip
    """Delete this app's download folders (or `pattern` files in `folder`) older than `keep_seconds`: Gradio
    serves its own cached copy, which `delete_cache` removes. Returns how many went."""
    import shutil
    import tempfile

    now, gone = time.time(), 0
    for item in Path(folder or tempfile.gettempdir()).glob(pattern):
        try:
            if now - item.stat().st_mtime <= keep_seconds:
                continue
            if item.is_dir():
                shutil.rmtree(item, ignore_errors=True)
            else:
                item.unlink(missing_ok=True)
            gone += 1
        except OSError:
            continue
    return gone


def download_dir() -> Path:
    """A fresh folder for one file offered for download; older ones go first (prune_downloads)."""
    import tempfile
    from pathlib import Path

    prune_downloads()
    return Path(tempfile.mkdtemp(prefix=DOWNLOAD_PREFIX))


def table_to_csv(frame) -> str | None:
    """A Dataframe's value (pandas frame, or dict with headers/data) -> path of a CSV file; None when empty."""
    import csv

    if frame is None:
        return None
    if hasattr(frame, "to_csv"):
        headers, rows = [str(c) for c in frame.columns], frame.values.tolist()
    else:
        headers, rows = list(frame.get("headers") or []), list(frame.get("data") or [])
    if not rows:
        raise ValueError("The table is empty: compute something first.")
    path = download_dir() / "table.csv"
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(headers)
        writer.writerows(rows)
    return str(path)
