"""Training bursts: optimizer groups, the learning-rate schedule, clipping, evaluation, a StepLog stream.

The loop of the course (notes sections 44-50), as an iterator the UI, the CLI and the tests all drive:

    for log in train_steps(model, data, config, state):   # one StepLog per optimizer step
        ...                                                 # plot it, print it, or just stop iterating

Each step: a random batch -> forward -> cross-entropy -> backward -> clip the gradient norm -> AdamW step
with the learning rate `lr_at(step)`. Stopping is simply not asking for the next record: the model is
always left after a whole step, usable and in training mode. A `TrainState` carries everything a later
call needs to continue exactly where the last one stopped (optimizer moments, step, the batch and dropout
random streams), so bursts of 30 + 70 steps give the same numbers as one run of 100.

`python -m playground pretrain` (pretrain.py) runs the same loop with a progress bar, periodic checkpoints,
resume, bf16 autocast and torch.compile. Saved runs are safetensors + JSON only (never pickle).
"""

from __future__ import annotations

import collections
import json
import logging
import math
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

from playground import device as devices
from playground import distributed
from playground.checkpoints import atomic_write
from playground.data import TokenData
from playground.models import device_of, eval_mode, require_context

log = logging.getLogger(__name__)


# ------------------------------------------------------------------------------------------------ config
@dataclass
class TrainConfig:
    steps: int = 600  # the run's length: the horizon of the LR schedule, and where training stops
    max_seconds: float | None = None  # wall-clock bound of ONE call of train_steps (evaluation included)
    batch_size: int = 16
    lr: float = 3e-3  # peak learning rate, reached at the end of warmup
    min_lr: float | None = None  # floor of the cosine decay; None means lr / 10 (as the course's eta_min)
    warmup_steps: int = 30
    weight_decay: float = 0.01  # only on matrices (dim >= 2): see make_optimizer
    grad_clip: float = 1.0  # max global gradient norm; 0 turns clipping off
    betas: tuple[float, float] = (0.9, 0.99)  # the course's AdamW betas
    eval_interval: int = 100  # evaluate both splits every this many steps (and at the last step); 0 = never
    eval_iters: int = 4  # batches per split per evaluation
    log_interval: int = 1  # read the loss back to the host every this many steps (a GPU sync; 1 on a CPU)
    sample_every: int = 0  # also sample every this many steps; 0 = only at evaluations
    sample_prompt: str = "It is a truth"
    sample_tokens: int = 30  # 0 turns samples off
    seed: int = 1337
    dtype: str = "float32"  # autocast dtype: "bfloat16" on a GPU
    compile: bool = False  # torch.compile the model for the training step (GPU; slow to start)
    device: str = "auto"

    def __post_init__(self):
        self.betas = tuple(float(b) for b in self.betas)
        for name in ("steps", "batch_size"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"TrainConfig.{name} must be at least 1, got {getattr(self, name)!r}")
        for name in ("warmup_steps", "eval_interval", "eval_iters", "sample_every", "sample_tokens", "log_interval"):
            if int(getattr(self, name)) < 0:
                raise ValueError(f"TrainConfig.{name} must be >= 0, got {getattr(self, name)!r}")
        if not self.lr > 0:
            raise ValueError(f"TrainConfig.lr must be positive, got {self.lr!r}")
        if self.min_lr is not None and not 0 <= self.min_lr <= self.lr:
            raise ValueError(f"TrainConfig.min_lr must be in [0, lr={self.lr}], got {self.min_lr!r}")
        if self.max_seconds is not None and not self.max_seconds > 0:
            raise ValueError(f"TrainConfig.max_seconds must be positive or None, got {self.max_seconds!r}")
        if self.grad_clip < 0 or self.weight_decay < 0:
            raise ValueError(f"grad_clip and weight_decay must be >= 0, got {self.grad_clip}, {self.weight_decay}")
        devices.parse_dtype(self.dtype)

    @property
    def final_lr(self) -> float:
        return self.lr / 10 if self.min_lr is None else self.min_lr

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> TrainConfig:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})


# ----------------------------------------------------------------------------------------- LR schedule
def lr_at(step: int, cfg: TrainConfig) -> float:
    """The learning rate of optimizer step `step` (0-based): linear warmup, then cosine decay to min_lr.

    Warmup: lr * (step + 1) / warmup_steps, reaching the peak lr at step warmup_steps - 1 (the course's
    `step / warmup` wastes step 0 on lr = 0). Then, with progress p going from 0 to 1 over the remaining
    steps, lr_t = min_lr + (lr - min_lr) * 0.5 * (1 + cos(pi * p)): the factor goes 1 -> 0, so the rate goes
    lr -> min_lr and the last step of the run uses exactly min_lr. (One version in the course notes writes
    0.5 * (1.0 * cos(...)), which goes 0.5 -> -0.5 and, clamped at 0, stops learning half-way; the factor
    must be 0.5 * (1 + cos).) Past the horizon the rate stays at min_lr.
    """
    if step < 0:
        raise ValueError(f"step must be >= 0, got {step}")
    lr, floor = cfg.lr, cfg.final_lr
    if step < cfg.warmup_steps:
        return lr * (step + 1) / cfg.warmup_steps
    decay_steps = cfg.steps - 1 - cfg.warmup_steps  # steps warmup .. steps-1 decay
    progress = 1.0 if decay_steps <= 0 else min(1.0, (step - cfg.warmup_steps) / decay_steps)
    return floor + (lr - floor) * 0.5 * (1.0 + math.cos(math.pi * progress))


def lr_schedule(cfg: TrainConfig) -> list[float]:
    """The whole schedule, one rate per step (for plots)."""
    return [lr_at(s, cfg) for s in range(cfg.steps)]


# ------------------------------------------------------------------------------------------- optimizer
def decay_groups(model: nn.Module) -> tuple[list[str], list[str]]:
    """Names of the parameters that get weight decay (matrices: dim >= 2) and those that do not (biases, norms).

    Decay pulls weights towards zero; on a weight matrix that keeps the model simple, but on a bias or a
    LayerNorm gain it would only fight the offsets and scales the model needs (notes section 45).
    """
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if p.requires_grad:
            (decay if p.dim() >= 2 else no_decay).append(name)
    return decay, no_decay


def make_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.AdamW:
    """AdamW with two groups (the course's): weight decay on matrices, none on vectors. Fused kernel on CUDA."""
    params = dict(model.named_parameters())
    decay, no_decay = decay_groups(model)
    groups = [
        {"params": [params[n] for n in decay], "weight_decay": cfg.weight_decay},
        {"params": [params[n] for n in no_decay], "weight_decay": 0.0},
    ]
    on_cuda = next(model.parameters()).device.type == "cuda"
    return torch.optim.AdamW(groups, lr=lr_at(0, cfg), betas=cfg.betas, fused=on_cuda or None)


# ------------------------------------------------------------------------------------------- records
@dataclass
class StepLog:
    """What one optimizer step did. `step` counts steps done, this one included (1 = the first step).

    `loss` is the training batch's cross-entropy (nats/token) before the update; it and `grad_norm` are None
    on steps that do not read back to the host (log_interval > 1). `train_loss`/`val_loss` are set on
    evaluation steps, measured after the update; `sample` on sampling steps.
    """

    step: int
    loss: float | None
    lr: float
    grad_norm: float | None
    tokens_seen: int  # training tokens over the whole run
    tokens_per_s: float  # recent training throughput: over the last RATE_WINDOW steps of this call, evaluation excluded
    elapsed: float  # wall seconds of this call so far, evaluation included
    train_loss: float | None = None
    val_loss: float | None = None
    sample: str | None = None
    last: bool = False  # the last step of this call (the step or time bound is reached)

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class TrainState:
    """Everything a later call of train_steps needs to continue a run exactly (the model lives outside)."""

    optimizer: torch.optim.Optimizer
    generator: torch.Generator  # draws the training batches (CPU)
    step: int = 0
    tokens_seen: int = 0
    train_seconds: float = 0.0  # over all calls
    rng: torch.Tensor | None = None  # CPU torch RNG state for dropout, isolated from other users of torch's RNG
    cuda_rng: torch.Tensor | None = None
    compiled: nn.Module | None = field(default=None, repr=False)  # torch.compile(model), kept across calls


def new_state(model: nn.Module, cfg: TrainConfig) -> TrainState:
    generator = torch.Generator().manual_seed(cfg.seed)
    rng = torch.Generator().manual_seed(cfg.seed + 1).get_state()  # dropout's own stream, seeded too
    return TrainState(make_optimizer(model, cfg), generator, rng=rng)


# -------------------------------------------------------------------------------------------- evaluation
@torch.no_grad()
def estimate_loss(
    model: nn.Module, data: TokenData, batch_size: int, context: int, iters: int, seed: int = 0, dtype: str = "float32"
) -> dict[str, float]:
    """Mean cross-entropy (nats/token) on `iters` batches of each split, in eval mode (no dropout).

    The batches come from a generator seeded with `seed`, so every evaluation of a run scores the same
    windows: the curve moves because the model changes, not because the sample did. Training mode is
    restored afterwards, and the training random streams are untouched.
    """
    device = device_of(model)
    out = {}
    with eval_mode(model):
        for split in ("train", "val"):
            generator = torch.Generator().manual_seed(seed)
            losses = torch.zeros(iters, device=device)
            for i in range(iters):
                x, y = data.get_batch(split, batch_size, context, generator, device)
                with devices.autocast(device, devices.parse_dtype(dtype)):
                    logits = model(x)  # (B, T, V)
                losses[i] = F.cross_entropy(logits.float().flatten(0, 1), y.flatten())
            out[split] = losses.mean().item()
    return out


def sample_text(model: nn.Module, tokenizer, prompt: str, n_tokens: int, seed: int = 0) -> str:
    """The prompt and `n_tokens` sampled after it (temperature 0.8, top-k 40, a fixed seed so that samples
    taken at different steps differ only because the model changed)."""
    from playground.sampling import generate

    ids = tokenizer.encode(prompt) or [tokenizer.bos_id]
    gen = torch.Generator().manual_seed(seed)
    new = list(generate(model, ids, n_tokens, temperature=0.8, top_k=40, generator=gen))
    return tokenizer.decode(list(ids) + new)


# ------------------------------------------------------------------------------------------ the loop
RATE_WINDOW = 20  # steps over which the logged throughput is measured: a first step's compile is soon forgotten


class _Rate:
    """Tokens per second over the last RATE_WINDOW steps of training time (evaluation excluded), so the figure
    shows the speed now, not an average that still carries a first step's compilation or warm-up."""

    def __init__(self):
        self.points: collections.deque[tuple[float, int]] = collections.deque([(0.0, 0)], maxlen=RATE_WINDOW + 1)

    def add(self, train_seconds: float, tokens: int) -> float:
        self.points.append((train_seconds, tokens))
        (t0, n0), (t1, n1) = self.points[0], self.points[-1]
        return (n1 - n0) / max(t1 - t0, 1e-9)


def train_steps(
    model: nn.Module,
    data: TokenData,
    config: TrainConfig,
    state: TrainState | None = None,
    max_steps: int | None = None,
) -> Iterator[StepLog]:
    """Train `model` in place, yielding a StepLog after every optimizer step.

    Stops when the run reaches `config.steps`, or this call has run `max_steps` steps or `config.max_seconds`
    seconds (the step that reaches a bound is marked `last` and is evaluated: a burst always ends with a
    point on the validation curve); the caller may also stop iterating at any time.
    Pass the same `state` to a later call to continue the run: the numbers are those of one long run.
    The config may change between calls (lr, batch size, bounds); the model's shape may not.
    Under torchrun pass the DDP-wrapped model (`distributed.wrap`): each rank trains on its slice of every global
    batch, the logged loss is the mean over ranks, and only rank 0 evaluates and samples (on the plain model).
    """
    cfg = config
    state = new_state(model, cfg) if state is None else state
    net = distributed.unwrap(model)  # the plain model: evaluated and sampled without DDP's collectives
    device, dtype = device_of(model), devices.parse_dtype(cfg.dtype)
    context = require_context(net)
    data.check_fits(context)
    forward = _forward_fn(model, cfg, state)
    tokens_per_step = cfg.batch_size * context
    model.train()
    t0, eval_seconds, call_tokens, counted, rate = time.perf_counter(), 0.0, 0, 0.0, _Rate()
    end = cfg.steps if max_steps is None else min(cfg.steps, state.step + max_steps)
    step_at, eval_at = _deadlines(cfg, t0)
    while state.step < end:
        if distributed.world_size() > 1:  # each rank its own dropout stream, re-derived from the step (resume)
            state.rng, state.cuda_rng = distributed.rank_streams(cfg.seed, state.step, device)
        t_step = time.perf_counter()
        try:
            with deadline(net, step_at):
                loss, norm, lr = _train_step(model, forward, data, cfg, state, context, device, dtype)
        except Deadline:  # the time bound passed inside this step: drop it (no update) and end the call
            state.optimizer.zero_grad(set_to_none=True)
            elapsed = time.perf_counter() - t0
            yield StepLog(
                state.step,
                None,
                lr_at(state.step, cfg),
                None,
                state.tokens_seen,
                rate.add(elapsed - eval_seconds, call_tokens),
                elapsed,
                last=True,
            )
            return
        step_seconds = time.perf_counter() - t_step
        state.step += 1
        state.tokens_seen += tokens_per_step
        call_tokens += tokens_per_step
        elapsed = time.perf_counter() - t0
        # Stop after the step that the next one would carry past the bound (a step as long as this one), so
        # that a burst ends near its bound rather than one long step after it.
        # the clock differs between ranks: they agree (a collective) so that all stop after the same step
        over = elapsed + (step_seconds if step_at is not None else 0.0) >= (cfg.max_seconds or math.inf)
        timed_out = cfg.max_seconds is not None and distributed.agree(over, device)
        last = state.step >= end or timed_out
        evaluate = cfg.eval_interval > 0 and (state.step % cfg.eval_interval == 0 or last)
        read = evaluate or last or cfg.log_interval <= 1 or state.step % cfg.log_interval == 0
        record = StepLog(
            step=state.step,
            # .item() waits for the device: only when logging needs it; under DDP the mean of the ranks' slices
            loss=distributed.mean_of(loss).item() if read else None,
            lr=lr,
            grad_norm=norm.item() if read else None,
            tokens_seen=state.tokens_seen,
            tokens_per_s=rate.add(elapsed - eval_seconds, call_tokens),
            elapsed=elapsed,
            last=last,
        )
        state.train_seconds += (elapsed - eval_seconds) - counted
        counted = elapsed - eval_seconds
        t_eval = time.perf_counter()
        if distributed.is_main():  # the others go on to the next step and wait for rank 0 in its all-reduce
            try:
                with deadline(net, eval_at):
                    _evaluate_into(record, net, data, cfg, context, evaluate)
            except Deadline:  # out of time mid-evaluation: this step has no point on the curve
                record.last = last = True
        eval_seconds += time.perf_counter() - t_eval
        record.elapsed = time.perf_counter() - t0
        yield record
        if last:
            return


class Deadline(Exception):
    """A call's time bound passed inside a training step or an evaluation (raised by `deadline`'s hooks)."""


def _deadlines(cfg: TrainConfig, t0: float) -> tuple[float | None, float | None]:
    """Clock times past which a step, and an evaluation, are cut short; None: never. The bound is checked inside
    the step too (a step of a large batch can take minutes on a CPU); the evaluation that ends a call gets a
    tenth more (at least 2 s). Not under torchrun (ranks must stop together) nor with torch.compile."""
    if cfg.max_seconds is None or cfg.compile or distributed.world_size() > 1:
        return None, None
    return t0 + cfg.max_seconds, t0 + cfg.max_seconds + max(2.0, cfg.max_seconds / 10)


class deadline:
    """Inside this block, every module of `model` checks the clock before its forward and, through a gradient
    hook on its output, again during the backward pass: past `at` (a time.perf_counter() value) it raises
    Deadline, so that a long step or evaluation stops within one layer's work. `at=None`: no hooks at all."""

    def __init__(self, model: nn.Module, at: float | None):
        self.model, self.at, self.handles = model, at, []

    def _check(self, *_):
        if time.perf_counter() > self.at:
            raise Deadline(f"time bound passed ({self.at:.1f})")

    def _after(self, _module, _inputs, output):
        if isinstance(output, torch.Tensor) and output.requires_grad:
            output.register_hook(self._check)

    def __enter__(self):
        if self.at is not None:
            self._check()
            for m in self.model.modules():
                self.handles += [m.register_forward_pre_hook(self._check), m.register_forward_hook(self._after)]
        return self

    def __exit__(self, *exc):
        for h in self.handles:
            h.remove()
        self.handles = []
        return False


def _forward_fn(model: nn.Module, cfg: TrainConfig, state: TrainState):
    if not cfg.compile:
        return model
    if state.compiled is None:  # compiled once per run; later bursts reuse it
        log.info("torch.compile: the first steps are slow while kernels are generated")
        state.compiled = torch.compile(model)
    return state.compiled


def _train_step(model, forward, data, cfg, state, context, device, dtype):
    """One optimizer step; returns (loss, grad norm) as device tensors (no host sync) and the lr used."""
    lr = lr_at(state.step, cfg)
    for group in state.optimizer.param_groups:
        group["lr"] = lr
    state.optimizer.param_groups[0]["weight_decay"] = cfg.weight_decay  # group 0 holds the matrices
    # (B, T) each; under DDP this rank's (B / world, T) slice of the same global batch
    x, y = distributed.local_batch(data, "train", cfg.batch_size, context, state.generator, device)
    with _own_rng(state, device), devices.autocast(device, dtype):
        logits = forward(x)  # (B, T, V)
    loss = F.cross_entropy(logits.float().flatten(0, 1), y.flatten())  # mean nats/token, in float32
    state.optimizer.zero_grad(set_to_none=True)
    loss.backward()
    # The returned norm is the one before clipping: what the gradient wanted, not what it was allowed.
    norm = nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip if cfg.grad_clip > 0 else math.inf)
    state.optimizer.step()
    return loss.detach(), norm, lr


class _own_rng:
    """Run dropout on the run's own random stream: swap it into torch's global RNG, then save it back.

    Anything else that draws from torch's RNG between two steps (another learner, a sample) cannot shift
    this run's dropout masks, which is what makes a resumed run equal an uninterrupted one.
    """

    def __init__(self, state: TrainState, device: torch.device):
        self.state, self.cuda = state, device.type == "cuda"

    def __enter__(self):
        self.outer = torch.get_rng_state()
        if self.state.rng is not None:
            torch.set_rng_state(self.state.rng)
        if self.cuda:
            self.outer_cuda = torch.cuda.get_rng_state()
            if self.state.cuda_rng is not None:
                torch.cuda.set_rng_state(self.state.cuda_rng)

    def __exit__(self, *exc):
        self.state.rng = torch.get_rng_state()
        torch.set_rng_state(self.outer)
        if self.cuda:
            self.state.cuda_rng = torch.cuda.get_rng_state()
            torch.cuda.set_rng_state(self.outer_cuda)
        return False


def evaluate(model: nn.Module, data: TokenData, cfg: TrainConfig, max_seconds: float | None = None):
    """The run's periodic evaluation: `cfg.eval_iters` batches per split, the same windows every time.
    With `max_seconds`, None if it could not finish within that many seconds."""
    at = None if max_seconds is None else time.perf_counter() + max_seconds
    try:
        with deadline(model, at):
            return estimate_loss(
                model, data, cfg.batch_size, require_context(model), cfg.eval_iters, cfg.seed + 2, cfg.dtype
            )
    except Deadline:
        return None


def _evaluate_into(record: StepLog, model, data: TokenData, cfg: TrainConfig, context: int, evaluate: bool) -> None:
    if evaluate and cfg.eval_iters > 0:
        losses = estimate_loss(model, data, cfg.batch_size, context, cfg.eval_iters, cfg.seed + 2, cfg.dtype)
        record.train_loss, record.val_loss = losses["train"], losses["val"]
    due = evaluate or (cfg.sample_every > 0 and record.step % cfg.sample_every == 0)
    if due and cfg.sample_tokens > 0 and data.tokenizer is not None:
        record.sample = sample_text(model, data.tokenizer, cfg.sample_prompt, cfg.sample_tokens, cfg.seed)


# -------------------------------------------------------------------------------------- saving a run
# A run folder: what checkpoints.save writes (config.json + model.safetensors + tokenizer files), plus
#   optimizer.safetensors  the AdamW moments and the random-stream states (tensors only)
#   train_state.json       step, tokens seen, the TrainConfig and the optimizer's hyper-parameters
OPTIMIZER_FILE, STATE_FILE = "optimizer.safetensors", "train_state.json"


def save_run(folder: str | Path, model: nn.Module, tokenizer, state: TrainState, cfg: TrainConfig, info=None) -> Path:
    """Save the model (via checkpoints.save) and everything needed to resume training from this step."""
    from safetensors.torch import save_file

    from playground import checkpoints

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    info = {**(info or {}), "step": state.step, "tokens_seen": state.tokens_seen}
    checkpoints.save(checkpoints.Bundle(model, tokenizer, info), folder)
    tensors, groups = _flatten_optimizer(state.optimizer.state_dict())
    tensors["rng.batches"] = state.generator.get_state()
    for name in ("rng", "cuda_rng"):
        if getattr(state, name) is not None:
            tensors[f"rng.{name}"] = getattr(state, name).cpu()
    atomic_write(folder / OPTIMIZER_FILE, lambda p: save_file(tensors, p))
    meta = {
        "step": state.step,
        "tokens_seen": state.tokens_seen,
        "train_seconds": state.train_seconds,
        "config": cfg.to_dict(),
        "param_groups": groups,
    }
    atomic_write(folder / STATE_FILE, lambda p: Path(p).write_text(json.dumps(meta, indent=2), encoding="utf-8"))
    return folder


def load_run(folder: str | Path, device: str | torch.device = "cpu"):
    """(bundle, state, config) of a run saved by save_run, the model on `device` and ready to continue."""
    from safetensors.torch import load_file

    from playground import checkpoints

    folder = Path(folder)
    if not (folder / STATE_FILE).exists() or not (folder / OPTIMIZER_FILE).exists():
        raise ValueError(f"{folder} is not a saved training run (no {STATE_FILE} / {OPTIMIZER_FILE} in it)")
    meta = json.loads((folder / STATE_FILE).read_text(encoding="utf-8"))
    cfg = TrainConfig.from_dict(meta["config"])
    bundle = checkpoints.load(str(folder), device=str(device))
    model = bundle.model.to(device)
    tensors = load_file(str(folder / OPTIMIZER_FILE))
    state = new_state(model, cfg)
    state.optimizer.load_state_dict(_unflatten_optimizer(tensors, meta["param_groups"], state.optimizer))
    state.generator.set_state(tensors["rng.batches"])
    state.rng, state.cuda_rng = tensors.get("rng.rng"), tensors.get("rng.cuda_rng")
    state.step, state.tokens_seen = int(meta["step"]), int(meta["tokens_seen"])
    state.train_seconds = float(meta.get("train_seconds", 0.0))
    return bundle, state, cfg


def _flatten_optimizer(sd: dict) -> tuple[dict[str, torch.Tensor], list[dict]]:
    """An optimizer state_dict as flat tensors ("state.<param index>.<name>") + JSON-able param groups."""
    tensors = {}
    for index, per_param in sd["state"].items():
        for name, value in per_param.items():
            t = value if isinstance(value, torch.Tensor) else torch.tensor(value)
            tensors[f"state.{index}.{name}"] = t.detach().cpu().contiguous()
    groups = [{k: (list(v) if isinstance(v, tuple) else v) for k, v in g.items()} for g in sd["param_groups"]]
    return tensors, groups


def _unflatten_optimizer(tensors: dict, groups: list[dict], optimizer: torch.optim.Optimizer) -> dict:
    state: dict[int, dict] = {}
    for key, value in tensors.items():
        if key.startswith("state."):
            _, index, name = key.split(".", 2)
            state.setdefault(int(index), {})[name] = value
    # Kernel choices (fused/foreach/capturable) belong to this machine, not to the machine that saved the run.
    local = ("fused", "foreach", "capturable", "differentiable")
    if len(groups) != len(optimizer.param_groups):
        raise ValueError(f"saved optimizer has {len(groups)} groups, this model's has {len(optimizer.param_groups)}")
    param_groups = []
    for saved, current in zip(groups, optimizer.param_groups, strict=True):
        g = {k: (tuple(v) if k == "betas" else v) for k, v in saved.items()}
        g.update({k: current[k] for k in local if k in current})
        param_groups.append(g)
    return {"state": state, "param_groups": param_groups}


# ------------------------------------------------------------------------------------------- recipes
# How the Train tab runs a burst (train_tab.py; the bench's CPU-burst row reproduces it): a point on the
# validation curve every 25 steps from 2 batches per split (cheap on a CPU), and a 40-token sample with it.
TAB_BURST: dict = {"eval_interval": 25, "eval_iters": 2, "sample_tokens": 40,
                   "sample_prompt": "It is a truth universally acknowledged"}  # fmt: skip
# The tiny model trained for one minute of one CPU thread (issue 22): batch 24 and a 720-step schedule ended in
# 51.3 s on an idle core, the tab's evaluations included (~71 ms a step). Measured on Austen, the tab's held-out
# figure at the end of a burst of the whole schedule: 300 steps of batch 32 (the tiny preset) 5.46; 600 of 32 4.91
# in 61 s; 760 of 24 4.89 in 59 s; 720 of 24 4.90 in 51 s; 1,100 of 16 4.95 in 58 s; lr 7e-3 4.95. The Train tab
# offers it as "tiny, 1 minute" and the bench's CPU-burst row measures it in 60 s
# (`python -m playground bench --only burst --threads 1`).
TINY_MINUTE: dict = {"batch_size": 24, "steps": 720, "warmup_steps": 30}
# Training settings that go with each model preset: "tiny" is tuned to learn visibly on a 2-core CPU
# (validation loss from ln 4096 = 8.3 to below 5.5 nats/token within 20 seconds); "course" is the course's
# run for a GPU (notes sections 19-21: batch 4 at context 512, lr 3e-4, dropout 0.05, weight decay 0.01).
RECIPES: dict[str, dict] = {
    "tiny": {
        # measured on the 2-core CPU: 32 windows of 32 tokens learn faster per step than 16 of 64 (less
        # correlated tokens in a batch), and 2 blocks beat 4 at equal time (val 5.32 after 283 steps in 58 s)
        "model": {"context": 32, "n_layer": 2},  # shape options (SHAPE_FIELDS keys), for either architecture
        "train": {"batch_size": 32, "lr": 5e-3, "warmup_steps": 20, "steps": 300, "eval_interval": 50},
    },
    "small": {
        "model": {},
        "train": {"batch_size": 16, "lr": 1e-3, "warmup_steps": 100, "steps": 3000, "eval_interval": 250},
    },
    "course": {
        "model": {},
        "train": {
            "batch_size": 4,
            "lr": 3e-4,
            "warmup_steps": 100,
            "steps": 100_000,
            "eval_interval": 50,
            "eval_iters": 3,
        },
    },
}

# The CLI's shape flags, and the config field each means for each architecture (GPT-2 vs Meta names).
SHAPE_FIELDS = {
    "n_layer": ("n_layer", "n_layers"),
    "n_head": ("n_head", "n_heads"),
    "n_embd": ("n_embd", "dim"),
    "context": ("context_length", "max_seq_len"),
    "dropout": ("dropout",),
    "tie_weights": ("tie_weights", "tie_word_embeddings"),  # one matrix for token embeddings and the output head
}


def build_model(arch: str, preset: str, vocab_size: int, **shape) -> nn.Module:
    """A fresh model of `arch` ("gpt" or "llama") from its preset, the recipe's tweaks and `shape` overrides
    (keys of SHAPE_FIELDS: n_layer, n_head, n_embd, context, dropout, tie_weights; None values are ignored)."""
    import importlib

    config = model_config(arch, preset, vocab_size, **shape)
    module = importlib.import_module(f"playground.{arch}")
    return (module.GPT if arch == "gpt" else module.Transformer)(config)


def model_config(arch: str, preset: str, vocab_size: int, **shape):
    """The typed config `build_model` would build (GPTConfig or LlamaConfig), without building anything."""
    import dataclasses
    import importlib

    if arch not in ("gpt", "llama"):
        raise ValueError(f"arch must be 'gpt' or 'llama', got {arch!r}")
    module = importlib.import_module(f"playground.{arch}")
    if preset not in module.PRESETS:
        raise ValueError(f"unknown {arch} preset {preset!r}; choose one of {sorted(module.PRESETS)}")
    base = module.PRESETS[preset]
    names = {f.name for f in dataclasses.fields(base)}
    overrides = {}
    given = {k: v for k, v in shape.items() if v is not None}
    for key, value in {**RECIPES.get(preset, {}).get("model", {}), **given}.items():
        if key not in SHAPE_FIELDS:
            raise ValueError(f"unknown shape option {key!r}; choose from {sorted(SHAPE_FIELDS)}")
        field_name = next((f for f in SHAPE_FIELDS[key] if f in names), None)
        if field_name is None:
            raise ValueError(f"the {arch} model has no {key} setting")
        overrides[field_name] = value
    return dataclasses.replace(base, vocab_size=vocab_size, **overrides)
