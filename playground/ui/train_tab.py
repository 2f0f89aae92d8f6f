"""The Train tab: train a GPT (or a Llama) from scratch in short bursts and watch it learn.

Live loss curves, the learning-rate schedule with the current step marked, throughput, a sample after each
burst, and the attention maps of every layer and head. Thin adapters over `playground.train`,
`playground.data` and `playground.introspect`; the model and optimizer of each learner live in that
learner's session (`session["train_run"]`), never in module globals, and the trained model is offered to
the other tabs as `session["trained"]` (a checkpoints.Bundle).
"""

from __future__ import annotations

import dataclasses
import html
import inspect
import logging
import math
import tempfile
import threading
import time
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace

import gradio as gr
import pandas as pd
import torch

from playground import checkpoints, corpus, data, introspect, memory, models, train
from playground.limits import LIMITS, check_float, check_int, check_text
from playground.ui import attention_view, common, scheduler, share, start_tab

log = logging.getLogger(__name__)

MY_TEXT = "my text (paste or upload)"
SOURCES = [*corpus.corpus_names(), MY_TEXT]
# Model shapes offered as presets: what each knob is set to. "tiny" learns visibly in 20 seconds on a CPU, "tiny,
# 1 minute" is the same model trained for a minute (a lower loss, in one burst); "course" is the course's
# 19.8M-parameter model (notes sections 19-21), meant for a GPU.
MINUTE = "tiny, 1 minute"  # the tiny model with its schedule stretched to a minute (train.TINY_MINUTE)
MODEL_PRESET = {"tiny": "tiny", MINUTE: "tiny", "course (GPU)": "course"}  # -> the model module's own preset name
BURST_STEPS = 100  # the default burst: a third of the tiny schedule, ~10-20 s on an idle CPU core


def _ui_preset(name: str, burst: int = BURST_STEPS, **schedule) -> dict:
    """The knobs of a preset, read from the GPT preset and its training recipe (`train.RECIPES`): one source for
    the numbers the tab shows and the command line uses. `schedule` (steps, warmup_steps) replaces the recipe's
    where the tab wants another length (the course's recipe is 100,000 steps); `burst`: the default burst length."""
    cfg = train.model_config("gpt", name, 4096)  # the preset's shape with the recipe's tweaks
    recipe = {**train.RECIPES[name]["train"], **schedule}
    return {"n_layer": cfg.n_layer, "n_head": cfg.n_head, "n_embd": cfg.n_embd, "context": cfg.context_length,
            "lr": recipe["lr"], "batch": recipe["batch_size"], "steps": recipe["steps"],
            "warmup": recipe["warmup_steps"], "burst": burst}  # fmt: skip


PRESETS = {
    "tiny": _ui_preset("tiny"),
    MINUTE: _ui_preset("tiny", burst=train.TINY_MINUTE["steps"], **train.TINY_MINUTE),  # one Start, the whole minute
    "course (GPU)": _ui_preset("course", steps=5000),
}
UI_EVERY = 0.5  # seconds between screen updates while a burst runs (each update redraws two plots)
UI_EVERY_SHARED = 3.0  # the same while others wait for the training slot (their turn waits for each redraw)
MAX_MAP_TOKENS = 32  # attention maps of at most this many prompt tokens (beyond, cells get too small to read)
UNIFORM = "uniform (ln V)"
LOSS_COLOURS = {"batch loss": "#a5b4fc", "train (eval)": "#3730a3", "validation": "#d97706", UNIFORM: "#9ca3af"}
LR_COLOURS = {"schedule": "#cbd5e1", "done": "#3730a3"}
DEFAULT_PROMPT = train.TAB_BURST["sample_prompt"]
ATTN_PROMPT = "Emma Woodhouse, handsome, clever, and rich, had lived nearly twenty-one years"


@dataclass
class Run:
    """One learner's training run: the model being trained, its data, optimizer state and history."""

    model: torch.nn.Module
    tokenizer: object
    data: data.TokenData
    state: train.TrainState
    cfg: train.TrainConfig
    arch: str
    shape: dict
    source: str
    losses: list = field(default_factory=list)  # (step, loss) per step
    evals: list = field(default_factory=list)  # (step, train_loss, val_loss)
    sample: str = ""
    tokens_per_s: float = 0.0
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)  # one step at a time on this model
    stop: threading.Event = field(default_factory=threading.Event, repr=False)  # Stop pressed: no further step
    running: bool = False  # a burst is taking steps
    burst_start: int = 0  # the step the current (or last) burst started from
    burst_t0: float = 0.0  # and when (perf_counter)

    # On ZeroGPU the session (and this run in it) is pickled into each spaces.GPU call and back out with every
    # update: a lock cannot be pickled, and each process needs its own anyway (tests/unit/test_zero_gpu_state.py).
    def __getstate__(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if k not in ("lock", "stop")}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state, lock=threading.Lock(), stop=threading.Event())


@dataclass(frozen=True)
class TrainForm:
    """What Start and Continue read from the tab, one field per widget, as the widgets send it (or an API client:
    any value). `shape()` and `train_config()` check the values and say what is wrong; Continue reads only the
    training and view fields (the data and the shape are the run's own)."""

    source: str  # a corpus name, or MY_TEXT
    text: str | None  # pasted text (MY_TEXT only)
    file: str | None  # an uploaded .txt file's path (MY_TEXT only; wins over `text`)
    arch: str  # "gpt" or "llama"
    preset: str  # a key of PRESETS
    n_layer: int
    n_head: int
    n_embd: int
    context: int
    lr: float  # the peak learning rate
    batch: int
    total: int  # steps of the whole schedule
    warmup: int  # warmup steps
    mode: str  # the burst is bounded by "steps" or "seconds"
    amount: float  # how many of them
    prompt: str  # the sample prompt ("" means DEFAULT_PROMPT)
    attn_prompt: str  # the attention maps' prompt ("" means ATTN_PROMPT)
    layer: int  # the layer whose maps show first

    @classmethod
    def from_values(cls, values) -> TrainForm:
        """The form from the widgets' values, in the order of the fields (Gradio's `inputs=` after the session)."""
        return cls(*values)

    @classmethod
    def names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in dataclasses.fields(cls))

    def shape(self) -> dict:
        return _shape(self.arch, self.n_layer, self.n_head, self.n_embd, self.context)

    def train_config(self) -> tuple[train.TrainConfig, int | None]:
        return _train_config(self.lr, self.batch, self.total, self.warmup, self.mode, self.amount, self.prompt)


# ------------------------------------------------------------------------------------------ checking inputs
def _shape(arch, n_layer, n_head, n_embd, context) -> dict:
    shape = {
        "n_layer": check_int(n_layer, "Layers", 1, 12),
        "n_head": check_int(n_head, "Heads", 1, 16),
        "n_embd": check_int(n_embd, "Width (embedding size)", 16, 768),
        "context": check_int(context, "Context length", 8, 1024),
    }
    # No divisibility rule: like the course (and gpt.py), each head gets n_embd // n_head dimensions and the
    # heads concatenate to n_head * head size (384 / 7 heads: 54 each, 378 together), projected back to n_embd.
    if shape["n_head"] > shape["n_embd"]:
        raise ValueError(f"{shape['n_head']} heads need a width of at least {shape['n_head']} (one dimension each).")
    if arch not in ("gpt", "llama"):
        raise ValueError(f"Architecture must be gpt or llama, got {arch!r}.")
    return shape


def _preset_name(preset: str, arch: str = "gpt") -> str:
    """The model module's preset behind a UI preset; a module without it (llama has no "course") starts from tiny
    (every shape knob of the UI is given anyway)."""
    import importlib

    name = MODEL_PRESET.get(preset, "tiny")
    return name if name in importlib.import_module(f"playground.{arch}").PRESETS else "tiny"


def heads_note(shape: dict) -> str:
    """How the width splits into heads, in words: exact, or rounded down as in the course (384 / 7)."""
    nh, c = shape["n_head"], shape["n_embd"]
    hs = c // nh
    if hs * nh == c:
        return f"{nh} heads of {hs} dimensions"
    return f"{nh} heads of {c} // {nh} = {hs} dimensions, concatenated to {nh * hs} and projected back to {c}"


def _config(arch: str, preset: str, shape: dict, vocab_size: int):
    """The model config of the knobs. A Llama whose head count its preset's k/v heads do not divide (7 heads,
    2 k/v heads) gets one k/v head per query head (plain multi-head attention) instead of an error."""
    if arch != "llama":
        return train.model_config(arch, _preset_name(preset, arch), vocab_size, **shape)
    config = train.model_config(arch, _preset_name(preset, arch), vocab_size, **{**shape, "n_head": None})
    nh = shape["n_head"]
    return dataclasses.replace(config, n_heads=nh, n_kv_heads=None if nh % config.kv_heads else config.n_kv_heads)


def _build(arch: str, preset: str, shape: dict, vocab_size: int, batch: int = 1) -> torch.nn.Module:
    """A fresh model, refused (ValueError) if it is bigger than this machine lets a learner train."""
    # count first, from the shapes alone: no memory (and no seconds) spent on a model we will refuse
    config = _config(arch, preset, shape, vocab_size)
    n = introspect.param_count_of(config).total
    if n > LIMITS.max_train_params:
        raise ValueError(
            f"This model has {n / 1e6:.1f}M parameters; the limit here is {LIMITS.max_train_params / 1e6:.0f}M."
        )
    memory.check_train_memory(config, batch, shape["context"])  # weights + optimizer + one batch's activations
    torch.manual_seed(0)  # the same knobs give the same starting weights
    from playground.gpt import GPT
    from playground.llama import Transformer

    return (GPT if arch == "gpt" else Transformer)(config).to(common.DEVICE)


def _train_config(lr, batch, total_steps, warmup, mode, amount, prompt) -> tuple[train.TrainConfig, int | None]:
    """The run's config and the burst's step bound (None when the burst is bounded by seconds)."""
    total = check_int(total_steps, "Total steps (schedule length)", 1, 100_000)
    cfg = train.TrainConfig(
        steps=total,
        lr=check_float(lr, "Learning rate", 1e-6, 1.0),
        batch_size=check_int(batch, "Batch size", 1, 128),
        warmup_steps=min(check_int(warmup, "Warmup steps", 0, 100_000), total),
        **dict(train.TAB_BURST, sample_prompt=check_text(prompt or DEFAULT_PROMPT, "sample prompt", 500)),
        max_seconds=LIMITS.max_train_seconds,
        device=str(common.DEVICE),
        dtype="bfloat16" if common.DEVICE.type == "cuda" else "float32",  # bf16 autocast on a GPU
    )
    if mode == "seconds":
        seconds = check_float(amount, "Burst length (seconds)", 1, LIMITS.max_train_seconds)
        return dataclasses.replace(cfg, max_seconds=seconds), None
    return cfg, check_int(amount, "Burst length (steps)", 1, LIMITS.max_train_steps)


def _burst_seconds(a: dict) -> float:
    """GPU seconds a burst asks ZeroGPU for: its time bound, or ~50 ms a step; plus building and evaluating.
    `a`: the handler's arguments by name (`session`, `form`)."""
    form = vars(a["form"])
    amount = common.gpu_seconds(form, "amount", BURST_STEPS)
    return 20 + (amount if form.get("mode") == "seconds" else 0.05 * amount)


def _read_text(text: str | None, file) -> str:
    """The learner's training text: the uploaded .txt file if any, else the pasted text (both bounded)."""
    if file:
        path = Path(file if isinstance(file, str) else getattr(file, "name", ""))
        if path.suffix.lower() not in (".txt", ".md", ""):
            raise ValueError(f"Upload a plain .txt file, got {path.name!r}.")
        if path.stat().st_size > min(LIMITS.max_upload_bytes, 4 * LIMITS.max_train_text_chars):
            raise ValueError(f"{path.name} is {path.stat().st_size:,} bytes: too big to train on here.")
        text = path.read_text(encoding="utf-8", errors="replace")
    return check_text(text, "training text", LIMITS.max_train_text_chars)


def _data_for(source: str, text: str | None, file, tokenizer, context: int) -> data.TokenData:
    if source == MY_TEXT:
        return data.text_data(_read_text(text, file), tokenizer, context=context)
    if source not in corpus.corpus_names():
        raise ValueError(f"Unknown training data {source!r}; choose one of {SOURCES}.")
    d = data.corpus_data(source, tokenizer)  # encoded once per process and shared read-only
    _PREP["ready"].add(source)
    d.check_fits(context)
    return d


# ------------------------------------------------------------------------------------------------- views
def status_html(
    run: Run | None, note: str = "", burst: tuple[int, int] | None = None, attrs: dict | None = None
) -> str:
    """Step, tokens seen, tokens/s, the latest losses and a progress bar for the burst (done, planned);
    `attrs` become data-* attributes (the burst's turn and queue wait, read by the load tool)."""
    if run is None:
        note = html.escape(note or "No model yet: press Start.")
        return f"<div class='pg-stats' id='train-status-inner' data-step='0'><span>{note}</span></div>"
    s, last = run.state, run.evals[-1] if run.evals else None
    items = [
        ("step", f"{s.step:,} / {run.cfg.steps:,}"),
        ("tokens seen", f"{s.tokens_seen:,}"),
        ("tokens/s", f"{run.tokens_per_s:,.0f}"),
        ("train loss", f"{run.losses[-1][1]:.3f}" if run.losses else "-"),
        ("val loss", f"{last[2]:.3f}" if last else "-"),
        ("lr", f"{train.lr_at(max(s.step - 1, 0), run.cfg):.2e}"),
    ]
    spans = "".join(f"<span class='pg-stat' data-key='{k}'>{k}: <b>{v}</b></span>" for k, v in items)
    bar = ""
    if burst is not None:
        done, planned = burst
        bar = f"<progress id='train-progress' max='{planned}' value='{done}'></progress>"
    tail = f"<span class='pg-note'>{html.escape(note)}</span>" if note else ""
    data = "".join(f" data-{k}='{html.escape(str(v))}'" for k, v in (attrs or {}).items())
    return f"<div class='pg-stats' id='train-status-inner' data-step='{s.step}'{data}>{spans}{bar}{tail}</div>"


def loss_frame(run: Run | None) -> pd.DataFrame:
    """Long format for gr.LinePlot: the per-step batch loss (thinned) and the evaluated train/val losses, over a
    flat reference line at ln V (the loss of a model that spreads its bets evenly) across the whole schedule, so
    that even the empty plot has honest axes (steps 0..Total steps, loss from 0 to ln V).

    The evaluation at step 0 is not on the eval lines: joined straight to the next one 25 steps later, it drew a
    diagonal that no measurement supports (the batch loss falls much faster); the status line shows it. A series
    with no point yet gets one at (0, ln V), hidden under the reference line: Gradio fixes its colour legend from
    the first value it draws, so every series must be named from the start.
    """
    tokenizer = run.tokenizer if run is not None else _tokenizer()
    uniform = math.log(tokenizer.vocab_size)
    cfg = run.cfg if run is not None else _default_config()
    end = max(cfg.steps, run.state.step if run is not None else 0)
    rows = [(0, uniform, UNIFORM), (end, uniform, UNIFORM)]
    if run is not None:
        stride = max(1, len(run.losses) // 400)  # at most ~400 points: the browser redraws this often
        rows += [(st, lo, "batch loss") for st, lo in run.losses[::stride]]
        rows += [(st, tr, "train (eval)") for st, tr, _ in run.evals if st > 0]
        rows += [(st, va, "validation") for st, _, va in run.evals if st > 0]
    named = {r[2] for r in rows}
    rows += [(0, uniform, name) for name in LOSS_COLOURS if name not in named]
    return _frame(rows, "loss")


def lr_frame(run: Run | None, cfg: train.TrainConfig | None = None) -> pd.DataFrame:
    """The whole schedule, and the part already run (so the current step shows where the lines part)."""
    cfg = run.cfg if run is not None else (cfg or _default_config())
    stride = max(1, cfg.steps // 300)
    steps = list(range(0, cfg.steps, stride)) + [cfg.steps - 1]
    rows = [(st + 1, train.lr_at(st, cfg), "schedule") for st in steps]
    done = run.state.step if run is not None else 0
    rows += [(st + 1, train.lr_at(st, cfg), "done") for st in steps if st < done]
    rows.append((max(done, 1), train.lr_at(max(done - 1, 0), cfg), "done"))  # the current step, exactly
    return _frame(rows, "lr")


def _default_config() -> train.TrainConfig:
    tiny = PRESETS["tiny"]
    return train.TrainConfig(steps=tiny["steps"], lr=tiny["lr"], warmup_steps=tiny["warmup"])


def _frame(rows: list[tuple], y: str) -> pd.DataFrame:
    """(step, value, series) rows with fixed column types: an empty plot must still say its axes are numbers,
    or the browser draws the first real data on a categorical axis."""
    df = pd.DataFrame(rows, columns=["step", y, "series"])
    return df.astype({"step": "int64", y: "float64", "series": "str"})


def _pieces(tokenizer, ids: list[int]) -> list[str]:
    return [tokenizer.id_to_piece(i) if hasattr(tokenizer, "id_to_piece") else tokenizer.decode([i]) for i in ids]


def attention_views(run: Run | None, prompt: str, layer) -> tuple[str, str]:
    """The interactive maps (every layer and head; the chosen layer's head average shown large first) and a
    reading of what each head does (attention_view.py)."""
    if run is None:
        return "", ""
    prompt = check_text(prompt or ATTN_PROMPT, "attention prompt", 2000)
    ids = run.tokenizer.encode(prompt)[: min(MAX_MAP_TOKENS, models.context_length(run.model))]
    if not ids:
        raise ValueError("The attention prompt gives no tokens.")
    with models.eval_mode(run.model):  # no dropout on the weights we look at
        maps = introspect.attention_maps(run.model, ids)  # (L, nh, T, T)
    n_layers = maps.shape[0]
    layer = min(max(int(layer or n_layers), 1), n_layers)
    maps, pieces = maps.numpy(), _pieces(run.tokenizer, ids)
    return attention_view.view_html(maps, pieces, run.state.step, layer), attention_view.reading_html(maps)


# ---------------------------------------------------------------------------------------------- handlers
_TOKENIZER: list = []  # the bundled tokenizer, loaded once (read-only, shared)


def _tokenizer():
    if not _TOKENIZER:
        from playground.tokenizer import load_tokenizer

        _TOKENIZER.append(load_tokenizer("bundled"))
    return _TOKENIZER[0]


# What the first burst of a fresh server needs (the tokenizer, the default corpus encoded, PyTorch's first
# backward pass) is prepared by a background thread started when the tab is built; a Start meanwhile says so.
_PREP = {"thread": None, "note": "", "ready": set()}  # ready: corpus names whose ids are in memory
_PREP_LOCK = threading.Lock()


def prepare(source: str = "austen") -> None:
    """Load the tokenizer, encode `source` (cached on disk and in memory) and run one tiny training step."""
    _PREP["note"] = "loading the tokenizer"
    tokenizer = _tokenizer()
    _PREP["note"] = f"encoding the {source} corpus into token ids (once per server)"
    d = data.corpus_data(source, tokenizer)
    _PREP["ready"].add(source)
    if common.DEVICE.type == "cpu":  # on a GPU (ZeroGPU above all) no computation may run outside a GPU call
        _PREP["note"] = "warming up PyTorch (a first evaluation and training step)"
        _warm_up(tokenizer, d)
    _PREP["note"] = ""


def _warm_up(tokenizer, d: data.TokenData) -> None:
    """An evaluation and two steps of a throwaway model of the tiny preset's shape: PyTorch's first passes of a
    process are several times slower than the next ones. The weights are built on the meta device and filled
    without random numbers, so the shared random generator that seeds learners' models is never touched."""
    tiny = PRESETS["tiny"]
    shape = {k: tiny[k] for k in ("n_layer", "n_head", "n_embd", "context")}
    with torch.device("meta"):
        model = train.build_model("gpt", "tiny", tokenizer.vocab_size, **shape)
    model = model.to_empty(device="cpu")
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.linspace(-0.02, 0.02, p.numel()).view_as(p))
    cfg, _ = _train_config(tiny["lr"], tiny["batch"], tiny["steps"], tiny["warmup"], "steps", 2, DEFAULT_PROMPT)
    train.evaluate(model, d, cfg)
    for _ in train.train_steps(model, d, dataclasses.replace(cfg, sample_tokens=0), max_steps=2):
        pass


def start_preparing(source: str = "austen") -> threading.Thread:
    """Start `prepare` once per process in a daemon thread (a failure is logged; Start then does the work)."""

    def work():
        try:
            prepare(source)
        except Exception:  # noqa: BLE001 - preparation is an optimisation: Start does the same work if it failed
            log.exception("preparing the Train tab failed")
            _PREP["note"] = ""

    with _PREP_LOCK:
        if _PREP["thread"] is None:
            _PREP["thread"] = threading.Thread(target=work, name="pg-train-prepare", daemon=True)
            _PREP["thread"].start()
        return _PREP["thread"]


def _preparing_note(source: str) -> str | None:
    """What a Start must wait for before its first step, in words, or None when nothing is pending."""
    if _PREP["note"]:
        return f"Preparing the first run: {_PREP['note']}..."
    if source in corpus.corpus_names() and source not in _PREP["ready"]:
        return f"Preparing: encoding the {source} corpus into token ids (once per server)..."
    return None


SLOW_ON_CPU = 5_000_000  # parameters above which a CPU step takes seconds: Start says so before the first step


def _speed_note(model) -> str:
    """An honest word before a big model's first step on a CPU, "" otherwise."""
    n = introspect.count_params(model).total
    if common.DEVICE.type != "cpu" or n <= SLOW_ON_CPU:
        return ""
    return (
        f"Built a {n / 1e6:.1f}M-parameter model. This machine has no GPU: scoring the untrained model and each "
        f"training step take seconds here (milliseconds on a GPU), and a burst stops after "
        f"{LIMITS.max_train_seconds:.0f} s. The first step follows the step-0 evaluation."
    )


def _session(session) -> dict:
    return session if isinstance(session, dict) else common.new_session()


def _bundle(run: Run) -> checkpoints.Bundle:
    """What the other tabs see as "my model (Train tab)": the same model object, so it is always the latest."""
    info = {
        "arch": run.arch,
        "source": common.TRAINED,
        "params": introspect.count_params(run.model).total,
        "context": models.context_length(run.model),
        "vocab_size": run.tokenizer.vocab_size,
        "step": run.state.step,
        "data": run.source,
        "val_loss": run.evals[-1][2] if run.evals else None,
    }
    return checkpoints.Bundle(run.model, run.tokenizer, info)


def _record(run: Run, r) -> None:
    """Keep one step's results on the run (losses, evaluations, sample, speed)."""
    if r.loss is not None:
        run.losses.append((r.step, r.loss))
    if r.val_loss is not None:
        run.evals.append((r.step, r.train_loss, r.val_loss))
    if r.sample:
        run.sample = r.sample
    run.tokens_per_s = r.tokens_per_s


def _burst(run: Run, session: dict, max_steps: int | None, attn_prompt: str, layer):
    """Run one burst, yielding a screen update at most every UI_EVERY seconds and a full one at the end."""
    common.touch(run.model)  # in use: reclaimed last under memory pressure
    it = train.train_steps(run.model, run.data, run.cfg, run.state, max_steps=max_steps)
    start, shown, t0 = run.state.step, 0.0, time.perf_counter()
    with run.lock:
        run.stop.clear()
        run.running, run.burst_start, run.burst_t0 = True, start, t0
    try:
        t_step = time.perf_counter()
        while True:
            scheduler.pause_for_light()  # a keystroke elsewhere goes first (at most a fraction of a second)
            # One step at a time under the run's lock, and none after Stop: Stop sets `run.stop` under the same
            # lock, so the step running when it is pressed is the last one, and an update built before it (also
            # under the lock) is the last "training..." one. After a Stop, a step still finishing in the cancelled
            # burst's thread completes before a new burst touches the same model.
            update = None
            with run.lock:
                r = None if run.stop.is_set() else next(it, None)
                if r is None or r.last:
                    if r is not None:
                        _record(run, r)
                    break
                _record(run, r)
                # others wait for the slot and this turn had its share, or the next step (as long as this one, its
                # pause included) would carry it past (scheduler.py): end here, without the last evaluation and
                # sample, which would cost a waiting learner as much time again as a short turn
                now = time.perf_counter()
                if scheduler.turn_over(r.step - start, now - t_step):
                    break
                t_step = now
                if max_steps is not None:
                    burst = (r.step - start, max_steps)
                else:
                    burst = (round(time.perf_counter() - t0, 1), run.cfg.max_seconds)
                # the first step is shown at once (training has begun); while others wait, fewer redraws: each
                # one is drawn between two steps, and a turn of a second or two needs none but the last
                every = UI_EVERY if scheduler.time_left() is None else UI_EVERY_SHARED
                if time.perf_counter() - shown >= every:
                    shown = time.perf_counter()
                    update = (status_html(run, "training...", burst), loss_frame(run), lr_frame(run), run.sample)
            if update is not None:
                yield (*update, gr.skip(), gr.skip(), session)
    finally:
        with run.lock:
            run.running = False
    session["trained"] = _bundle(run)
    scheduler.end_turn()  # training done: the next learner's turn starts while the maps are drawn
    if run.stop.is_set():  # the same final status as the Stop button's own answer, whichever arrives last
        status = status_html(run, stop_note(run))
        yield status, loss_frame(run), lr_frame(run), run.sample, gr.skip(), gr.skip(), session
        return
    grid, labelled = attention_views(run, attn_prompt, layer)
    note = f"burst done: {run.state.step - start} steps in {time.perf_counter() - t0:.1f} s"
    if run.state.step >= run.cfg.steps:
        note += " - the schedule is complete (raise Total steps to go on)"
    elif run.state.step == start:
        note += " - one step takes longer than a burst here: lower the batch size, the context or the width"
    if scheduler.turn_note():
        note += f" ({scheduler.turn_note()})"
    seconds = round(time.perf_counter() - t0, 1)
    done = (run.state.step - start, max_steps) if max_steps is not None else (seconds, run.cfg.max_seconds)
    yield (
        status_html(run, note, done if run.state.step > start else None, scheduler.turn_attrs()),
        loss_frame(run),
        lr_frame(run),
        run.sample,
        grid,
        labelled,
        session,
    )


_STEP0: dict = {}  # (knobs, data, eval settings) -> the untrained model's evaluation (seeded weights: the same)
_STEP0_LOCK = threading.Lock()


def _step0_eval(model, d: data.TokenData, cfg: train.TrainConfig, knobs: tuple | None) -> dict | None:
    """train.evaluate of a fresh model (None when it cannot finish in a quarter of the burst's time). The same
    knobs give the same seeded weights (`_build`), so on a shared corpus the result is the same for every learner
    who presses Start with them: a class of 30 with the same preset computes it once, not 30 times while the
    others wait for their turn."""
    limit = cfg.max_seconds / 4 if cfg.max_seconds else None
    if knobs is None:  # the learner's own text: their own numbers
        return train.evaluate(model, d, cfg, max_seconds=limit)
    key = (*knobs, cfg.batch_size, cfg.eval_iters, cfg.seed, cfg.dtype, str(common.DEVICE))
    with _STEP0_LOCK:
        hit = _STEP0.get(key)
    if hit is None:
        hit = train.evaluate(model, d, cfg, max_seconds=limit)
        if hit is None:
            return None
        with _STEP0_LOCK:
            _STEP0[key] = hit
            while len(_STEP0) > 64:
                _STEP0.pop(next(iter(_STEP0)))
    return dict(hit)


@common.friendly
@common.gpu(duration=lambda a: _burst_seconds(a))
def start(session, form: TrainForm):
    """A fresh model (the form's shape, seeded weights) and its first burst."""
    session = _session(session)
    shape = form.shape()
    cfg, max_steps = form.train_config()
    waiting = _preparing_note(form.source)
    if waiting:  # say what the wait is for, instead of "No model yet" (the work itself waits on the data lock)
        yield (status_html(session.get("train_run"), waiting), *[gr.skip()] * 5, session)
    tokenizer = _tokenizer()
    d = _data_for(form.source, form.text, form.file, tokenizer, shape["context"])
    model = _build(form.arch, form.preset, shape, tokenizer.vocab_size, cfg.batch_size)
    model = common.register_trainable(model, "model", session)  # memory bounds: all learners, this visitor
    slow = _speed_note(model)
    if slow:
        yield (status_html(session.get("train_run"), slow), *[gr.skip()] * 5, session)
    run = Run(model, tokenizer, d, train.new_state(model, cfg), cfg, form.arch, shape, form.source)
    # Step 0 on the curves: the untrained model, scored on the same windows as every later evaluation.
    knobs = (form.source, form.arch, form.preset, tuple(shape.items())) if form.source != MY_TEXT else None
    ev = _step0_eval(model, d, cfg, knobs)
    if ev is not None:  # None: too slow for the burst's time, no step-0 point
        run.evals.append((0, ev["train"], ev["val"]))
    yield scheduler.TURN  # built, scored and ready: only now does the burst take the training slot
    session["train_run"] = run  # the learner's previous model stays theirs while this one waits (Stop keeps it)
    session["trained"] = _bundle(run)
    yield from _burst(run, session, max_steps, form.attn_prompt, form.layer)


@common.friendly
@common.gpu(duration=lambda a: _burst_seconds(a))
def resume(session, form: TrainForm):
    """Another burst of the same run; the training knobs (lr, batch, schedule, burst) may have changed, the data and
    the model's shape may not (the form's are ignored)."""
    session = _session(session)
    run = session.get("train_run")
    if run is None:
        raise ValueError("There is no run to continue in this session: press Start first.")
    cfg, max_steps = form.train_config()
    if run.state.step >= cfg.steps:
        raise ValueError(
            f"This run has done all {cfg.steps:,} steps of its schedule: raise Total steps to continue, "
            "or press Start for a fresh model."
        )
    memory.check_train_memory(run.model.config, cfg.batch_size, run.shape["context"])  # the batch may have grown
    yield scheduler.TURN  # checked: now the burst takes the training slot
    run.cfg = dataclasses.replace(cfg, seed=run.cfg.seed)
    yield from _burst(run, session, max_steps, form.attn_prompt, form.layer)


@common.friendly
def reset(session):
    session = _session(session)
    if session.get("train_run") is not None:
        session["train_run"].stop.set()  # a burst still running ends after its current step
    session["train_run"] = None
    session["trained"] = None
    return (
        status_html(None, "Reset: the model is gone. Press Start for a fresh one."),
        loss_frame(None),
        lr_frame(None),
        "",
        None,
        None,
        session,
    )


def stop_note(run: Run) -> str:
    return f"stopped at step {run.state.step:,} ({run.state.step - run.burst_start} steps in this burst)"


def stopped(session):
    """Stop: no step after the one now running. Waits for that step (the run's lock), then shows the final state.

    Gradio also cancels the burst's event (needed for a burst still waiting in the queue); the burst itself, if
    its answer still gets through, ends with this same status.
    """
    run = _session(session).get("train_run")
    if run is None:
        return status_html(None, "Nothing is training: press Start.")
    with run.lock:
        was_running = run.running
        run.stop.set()
        step = run.state.step
    if not was_running:
        return status_html(run, f"Not training: the run is at step {step:,}.")
    return status_html(run, stop_note(run))


def param_info(arch, preset, n_layer, n_head, n_embd, context) -> str:
    """The parameter count of the knobs' model, shown live (a message instead of an error while typing)."""
    try:
        shape = _shape(arch, n_layer, n_head, n_embd, context)
        config = _config(arch, preset, shape, _tokenizer().vocab_size)
    except (ValueError, TypeError) as exc:
        return f"<span class='pg-bad' id='train-params-inner'>{html.escape(str(exc))}</span>"
    count = introspect.param_count_of(config)
    warn = " (over this machine's training limit)" if count.total > LIMITS.max_train_params else ""
    text = f"{count.describe()}; {heads_note(shape)}{warn}"
    return f"<span id='train-params-inner' data-params='{count.total}'>{html.escape(text)}</span>"


def apply_preset(preset, mode="steps", amount=BURST_STEPS):
    """The preset's knobs, and its burst length where the learner has not chosen their own (a burst in seconds, or a
    number of steps that is no preset's default, stays as it is)."""
    p = PRESETS.get(preset, PRESETS["tiny"])
    defaults = {q["burst"] for q in PRESETS.values()}
    keep = mode == "seconds" or (isinstance(amount, (int, float)) and amount not in defaults)
    burst = amount if keep else p["burst"]
    return p["n_layer"], p["n_head"], p["n_embd"], p["context"], p["lr"], p["batch"], p["steps"], p["warmup"], burst


@common.friendly
@common.gpu(duration=15)
def attention(session, prompt, layer):
    run = _session(session).get("train_run")
    if run is None:
        raise ValueError("Train a model first (press Start): the maps are those of your model.")
    with run.lock:
        return attention_views(run, prompt, layer)


@common.friendly
def download(session):
    """The trained model as a zip: config.json + model.safetensors + tokenizer files (checkpoints.load reads it)."""
    run = _session(session).get("train_run")
    if run is None:
        raise ValueError("Train a model first: there is nothing to download yet.")
    common.prune_downloads()  # earlier zips: Gradio has served its own copy of each (deleted with its cache)
    folder = Path(tempfile.mkdtemp(prefix=common.DOWNLOAD_PREFIX))
    zip_path = folder / f"my-{run.arch}-step{run.state.step}.zip"
    with tempfile.TemporaryDirectory(prefix="pg-save-") as model_dir:  # the unzipped files go at once
        with run.lock:
            checkpoints.save(_bundle(run), Path(model_dir) / "model")
        with zipfile.ZipFile(zip_path, "w", zipfile.ZIP_DEFLATED) as z:
            for f in sorted((Path(model_dir) / "model").iterdir()):
                z.write(f, arcname=f"my-{run.arch}/{f.name}")
    return str(zip_path)


# ------------------------------------------------------------------------------------------------ layout
def _fair_bursts(start_btn: gr.Button, cont_btn: gr.Button, inputs: list, outs: list):
    """Start and Continue take fair turns (scheduler.py): round-robin over learners, shorter when many wait; while a
    burst waits, `outs[0]` (the status) shows its place in line and an estimated start, the rest is left as is."""

    def waiting(note: str) -> tuple:
        return (note, *[gr.skip()] * (len(outs) - 1))

    fair_start = scheduler.fair(_from_widgets(start), waiting)
    fair_resume = scheduler.fair(_from_widgets(resume), waiting)
    start_ev = start_btn.click(fair_start, inputs, outs, api_name="train_start", **scheduler.TRAIN_EVENTS)
    cont_ev = cont_btn.click(fair_resume, inputs, outs, api_name="train_continue", **scheduler.TRAIN_EVENTS)
    return start_ev, cont_ev


def _from_widgets(handler):
    """`handler(session, form)` as Gradio calls it: the session, then one value per TrainForm field, positionally in
    the order of the `inputs=` list (so the API's `/train_start` and `/train_continue` take them in that order).
    The form is built here, outside spaces.GPU: what crosses to a ZeroGPU worker is the session and one TrainForm."""

    def from_widgets(session, *values):
        yield from handler(session, TrainForm.from_values(values))

    # scheduler.fair reads this signature (and adds the request): one named parameter per input
    names = ("session", *TrainForm.names())
    from_widgets.__signature__ = inspect.Signature(
        [inspect.Parameter(name, inspect.Parameter.POSITIONAL_OR_KEYWORD) for name in names]
    )
    from_widgets.__name__ = from_widgets.__qualname__ = handler.__name__
    return from_widgets


def _data_panel(w: SimpleNamespace) -> None:
    with gr.Accordion("Data", open=True):
        w.source = gr.Dropdown(
            SOURCES,
            value="austen",
            label="Training text",
            elem_id="train-source",
            info="; ".join(f"{k}: {v}" for k, v in corpus.DESCRIPTIONS.items()),
        )
        with gr.Row():
            w.text = gr.Textbox(
                label="Your text (used when 'my text' is chosen)", lines=3, max_lines=8, elem_id="train-text"
            )
            w.file = gr.File(label="or upload a .txt", file_types=[".txt"], type="filepath", elem_id="train-file")


def _model_panel(w: SimpleNamespace, tiny: dict) -> None:
    with gr.Accordion("Model", open=True):
        with gr.Row():
            w.arch = gr.Radio(["gpt", "llama"], value="gpt", label="Architecture", elem_id="train-arch")
            w.preset = gr.Radio(
                list(PRESETS),
                value="tiny",
                label="Preset",
                info=f"tiny: a {PRESETS['tiny']['steps']}-step schedule, ~20 s on a CPU; {MINUTE}: the same model, "
                f"{PRESETS[MINUTE]['steps']} steps in one burst of about a minute (a lower loss); course: the "
                "course's 19.8M-parameter model, for a GPU",
                elem_id="train-preset",
            )
        with gr.Row(elem_classes=["pg-advanced"]):
            w.n_layer = gr.Number(tiny["n_layer"], label="Layers", precision=0, minimum=1, maximum=12)
            w.n_head = gr.Number(tiny["n_head"], label="Heads", precision=0, minimum=1, maximum=16)
            w.n_embd = gr.Number(tiny["n_embd"], label="Width", precision=0, minimum=16, maximum=768)
            w.context = gr.Number(tiny["context"], label="Context", precision=0, minimum=8, maximum=1024)
        w.params = gr.HTML(
            param_info("gpt", "tiny", tiny["n_layer"], tiny["n_head"], tiny["n_embd"], tiny["context"]),
            elem_id="train-params",
        )


def _training_panel(w: SimpleNamespace, tiny: dict) -> None:
    with gr.Accordion("Training", open=True):
        with gr.Row():  # instructor mode keeps the learning rate and total steps (lesson steps 2 and 4)
            w.lr = gr.Number(tiny["lr"], label="Peak learning rate", minimum=1e-6, maximum=1.0, elem_id="train-lr")
            w.batch = gr.Number(
                tiny["batch"],
                label="Batch size",
                precision=0,
                minimum=1,
                maximum=128,
                elem_id="train-batch",
                elem_classes=["pg-advanced"],
            )
            w.total = gr.Number(
                tiny["steps"], label="Total steps (schedule)", precision=0, minimum=1, elem_id="train-total"
            )
            w.warmup = gr.Number(
                tiny["warmup"], label="Warmup steps", precision=0, minimum=0, elem_classes=["pg-advanced"]
            )
        with gr.Row():
            w.mode = gr.Radio(["steps", "seconds"], value="steps", label="Burst by", elem_id="train-mode")
            w.amount = gr.Number(BURST_STEPS, label="Burst length", minimum=1, elem_id="train-amount")
            w.prompt = gr.Textbox(DEFAULT_PROMPT, label="Sample prompt", elem_id="train-prompt")


def _plots(w: SimpleNamespace) -> None:
    common_args = dict(x="step", color="series", x_axis_format="d", height=260, buttons=["export", "fullscreen"])
    with gr.Row():
        with gr.Column(scale=3, min_width=300):  # wider than the LR plot: its legend has four entries
            w.loss_plot = gr.LinePlot(
                loss_frame(None),
                y="loss",
                color_map=LOSS_COLOURS,
                colors_in_legend=list(LOSS_COLOURS),
                y_axis_format=".1f",
                y_lim=[0, None],
                label="Loss (nats/token)",
                elem_id="train-loss-plot",
                **common_args,
            )
            common.plot_legend(LOSS_COLOURS, "train-loss-legend")
        with gr.Column(scale=2, min_width=240):
            w.lr_plot = gr.LinePlot(
                lr_frame(None),
                y="lr",
                color_map=LR_COLOURS,
                colors_in_legend=list(LR_COLOURS),
                y_axis_format="~g",
                label="Learning rate",
                elem_id="train-lr-plot",
                **common_args,
            )
            common.plot_legend(LR_COLOURS, "train-lr-legend")


def _results_panel(w: SimpleNamespace) -> None:
    with gr.Row():
        w.start_btn = gr.Button("Start (fresh model)", variant="primary", elem_id="train-start")
        w.cont_btn = gr.Button("Continue", elem_id="train-continue")
        w.stop_btn = gr.Button("Stop", variant="stop", elem_id="train-stop")
        w.reset_btn = gr.Button("Reset", elem_id="train-reset")
    w.status = gr.HTML(status_html(None), elem_id="train-status")
    _plots(w)
    w.sample = gr.Textbox(
        label="Sample after the last evaluation (temperature 0.8, top-k 40, fixed seed)",
        lines=3,
        interactive=False,
        elem_id="train-sample",
    )
    with gr.Accordion("Attention maps (into the AI matrix)", open=True):
        with gr.Row():
            w.attn_prompt = gr.Textbox(ATTN_PROMPT, label="Prompt", scale=3, elem_id="train-attn-prompt")
            w.layer = gr.Number(2, label="Layer shown first", precision=0, minimum=1, scale=1)
            w.attn_btn = gr.Button("Redraw", scale=1, elem_id="train-attn-redraw")
        w.grid = gr.HTML(elem_id="train-attention")  # interactive maps (attention_view.py)
        w.labelled = gr.HTML(elem_id="train-attention-reading")
    with gr.Row():
        w.dl_btn = gr.Button(
            "Download the model (.zip: safetensors + config + tokenizer)", elem_id="train-download-btn"
        )
        w.dl_file = gr.File(label="Your model", interactive=False, elem_id="train-download")


def _wire(ctx: common.TabContext, w: SimpleNamespace) -> None:
    knobs = [getattr(w, name) for name in TrainForm.names()]  # the widget of each TrainForm field, in order
    outs = [w.status, w.loss_plot, w.lr_plot, w.sample, w.grid, w.labelled, ctx.session]
    start_ev, cont_ev = _fair_bursts(w.start_btn, w.cont_btn, [ctx.session, *knobs], outs)
    bursts = [start_ev, cont_ev]
    w.stop_btn.click(stopped, [ctx.session], [w.status], cancels=bursts, api_name="train_stop", **common.LIGHT)
    w.reset_btn.click(reset, [ctx.session], outs, cancels=bursts, api_name="train_reset", **common.LIGHT)
    shape_in = [w.arch, w.preset, w.n_layer, w.n_head, w.n_embd, w.context]
    knobs_changed = [k.change for k in (w.arch, w.n_layer, w.n_head, w.n_embd, w.context)]  # one event: in order
    gr.on(knobs_changed, param_info, shape_in, [w.params], api_name=False, trigger_mode="always_last", **common.LIGHT)
    preset_out = [w.n_layer, w.n_head, w.n_embd, w.context, w.lr, w.batch, w.total, w.warmup, w.amount]
    preset_in = [w.preset, w.mode, w.amount]
    w.preset.change(apply_preset, preset_in, preset_out, api_name="train_preset", **common.LIGHT).then(
        param_info, shape_in, [w.params], api_name="train_params", **common.LIGHT
    )
    w.attn_btn.click(
        attention, [ctx.session, w.attn_prompt, w.layer], [w.grid, w.labelled], api_name="train_attention",
        **common.LIGHT,
    )  # fmt: skip
    w.dl_btn.click(download, [ctx.session], [w.dl_file], api_name="train_download", **common.LIGHT)


def build(ctx: common.TabContext) -> None:
    tiny, w = PRESETS["tiny"], SimpleNamespace()
    start_preparing()  # the first Start of a fresh server should not wait for the corpus encoding
    with gr.Tab("3 Train", id="train", elem_id="tab-train"):
        with gr.Row():
            with gr.Column(scale=2, min_width=320):
                common.lesson("train")
            with gr.Column(scale=3, min_width=340):
                _data_panel(w)
                _model_panel(w, tiny)
                _training_panel(w, tiny)
                _results_panel(w)
                # the preset's own numbers (layers, width, lr, ...) follow from `preset`: a link carries the choices
                share.register(
                    ctx,
                    "train",
                    {"source": w.source, "arch": w.arch, "preset": w.preset, "mode": w.mode, "amount": w.amount,
                     "prompt": w.prompt},
                )  # fmt: skip
                start_tab.next_step(ctx, "train")  # the path through the tabs
        _wire(ctx, w)
