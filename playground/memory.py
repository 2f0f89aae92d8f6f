"""How much memory one training step takes, estimated from the shapes alone, before anything is built.

A training step holds the weights, their gradients and AdamW's two moments (16 bytes a parameter in float32)
and, between forward and backward, the activations every layer saves for its backward pass: they grow with
batch x context x (width x layers + vocabulary), and with batch x heads x context^2 where attention scores are
materialised. `train_step_bytes` is an upper estimate calibrated against `measure_train_step` (peak resident
memory of one real step in a fresh process) on a few shapes; `tests/unit/test_memory.py` re-measures and checks
the estimate stays above the measurement and within a small factor of it.

No gradio here, no model built by the estimate: the Train tab calls `check_train_memory` before `build_model`.
"""

from __future__ import annotations

import json
import subprocess
import sys
from typing import NamedTuple

FLOAT = 4  # bytes: training runs in float32 on a CPU (bfloat16 autocast on a GPU keeps float32 master weights)

# Calibration (measured by `measure_train_step` on the 2-core CPU, torch 2.13, see docs/reliability.md): bytes
# saved per token per layer, in units of the width C and of the MLP's hidden width; per token for the logits
# (logits, log-softmax, their gradient: 3 x V floats, plus slack); per attention score when scores are
# materialised (softmax output, dropout mask and dropped copy, and the backward's temporaries).
PER_TOKEN_LAYER_WIDTH = 12
PER_TOKEN_LAYER_HIDDEN = 4
PER_TOKEN_VOCAB = 4
PER_SCORE = 12
OVERHEAD = 64_000_000  # the allocator's slack and the batch itself


class Estimate(NamedTuple):
    params: int
    state_bytes: int  # weights + gradients + AdamW moments
    activation_bytes: int
    total_bytes: int

    def describe(self) -> str:
        return (
            f"about {_gb(self.total_bytes)} ({_gb(self.state_bytes)} for the {self.params / 1e6:.1f}M weights, "
            f"their gradients and the optimizer, {_gb(self.activation_bytes)} for the activations of one batch)"
        )


def _gb(n: int) -> str:
    return f"{n / 1e9:.2f} GB" if n >= 1e9 else f"{n / 1e6:.0f} MB"


def _shape(config) -> dict:
    """Width, MLP hidden width, layers, heads, vocabulary of a GPTConfig or LlamaConfig."""
    if hasattr(config, "n_embd"):  # GPTConfig
        c = config
        return {
            "width": c.n_embd,
            "hidden": c.mlp_ratio * c.n_embd,
            "layers": c.n_layer,
            "heads": c.n_head,
            "vocab": c.vocab_size,
            "dropout": c.dropout,
        }
    c = config  # LlamaConfig
    return {
        "width": c.dim,
        "hidden": 3 * c.ffn_dim,
        "layers": c.n_layers,
        "heads": c.n_heads,
        "vocab": c.vocab_size,
        "dropout": c.dropout,
    }


def scores_materialised(dropout: float) -> bool:
    """Whether attention scores (B x heads x T x T) are kept for backward: PyTorch's fused CPU/GPU kernels keep
    only O(T) per row, but with dropout the CPU falls back to the math path that keeps the whole matrix."""
    return dropout > 0


def train_step_bytes(config, batch: int, context: int) -> Estimate:
    """Peak memory of one training step of a model with this config on `batch` windows of `context` tokens."""
    from playground.introspect import param_count_of

    s = _shape(config)
    params = param_count_of(config).total
    state = 4 * FLOAT * params
    tokens = batch * context
    per_token = s["layers"] * (PER_TOKEN_LAYER_WIDTH * s["width"] + PER_TOKEN_LAYER_HIDDEN * s["hidden"])
    act = tokens * FLOAT * (per_token + PER_TOKEN_VOCAB * s["vocab"])
    if scores_materialised(s["dropout"]):
        act += PER_SCORE * batch * s["heads"] * context * context * s["layers"]
    return Estimate(params, state, act, state + act + OVERHEAD)


def check_train_memory(config, batch: int, context: int, budget: int | None = None) -> Estimate:
    """The estimate, or ValueError saying what does not fit in `budget` bytes (default: the
    max_train_memory_bytes limit) and what would."""
    if budget is None:
        from playground.limits import LIMITS

        budget = LIMITS.max_train_memory_bytes
    est = train_step_bytes(config, batch, context)
    if est.total_bytes <= budget:
        return est
    fit = _largest_batch(config, context, budget)
    hint = (
        f"a batch of {fit} fits at this context"
        if fit
        else "even a batch of 1 does not fit at this context: make the model smaller or the context shorter"
    )
    raise ValueError(
        f"This run would need {est.describe()}; the limit here is {_gb(budget)} per run. "
        f"Lower the batch size, the context or the width: {hint}."
    )


def _largest_batch(config, context: int, budget: int) -> int:
    lo, hi = 0, 1024
    while lo < hi:  # the largest batch whose estimate fits (0 if none)
        mid = (lo + hi + 1) // 2
        if train_step_bytes(config, mid, context).total_bytes <= budget:
            lo = mid
        else:
            hi = mid - 1
    return lo


# ----------------------------------------------------------------------------------------------- measuring
_MEASURE = r"""
import json, resource, sys
import torch
from playground import models, train
from playground.data import TokenData
torch.set_num_threads(1)
arch, preset, vocab, shape, batch = json.loads(sys.argv[1])
torch.manual_seed(0)
model = train.build_model(arch, preset, vocab, **shape)
ctx = models.require_context(model)
n = ctx * 4 + 8
data = TokenData(torch.randint(0, vocab, (n,)), torch.randint(0, vocab, (n,)))
cfg = train.TrainConfig(steps=3, batch_size=1, eval_interval=0, sample_tokens=0, warmup_steps=0)
state = train.new_state(model, cfg)
list(train.train_steps(model, data, cfg, state, max_steps=1))  # gradients and AdamW moments now exist
def rss():
    with open('/proc/self/statm') as f:
        return int(f.read().split()[1]) * resource.getpagesize()
def high_water():  # the peak resident size since the last reset (VmHWM)
    with open('/proc/self/status') as f:
        return next(int(line.split()[1]) * 1024 for line in f if line.startswith('VmHWM'))
before = rss()
try:  # reset the high-water mark (Linux): the peak is then the step's, not an earlier one's (imports, the warm-up)
    with open('/proc/self/clear_refs', 'w') as f:
        f.write('5')
except OSError:
    pass
cfg.batch_size = batch
list(train.train_steps(model, data, cfg, state, max_steps=1))
try:
    peak = high_water()
except (OSError, StopIteration):
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
print(json.dumps({"before": before, "peak": peak}))
"""


def measure_train_step(arch: str, preset: str, vocab: int, shape: dict, batch: int) -> dict:
    """Run one real training step in a fresh process (Linux): resident memory before the step (weights, gradients
    and optimizer already allocated) and the process's peak. `peak - before` is what the batch's step added."""
    args = json.dumps([arch, preset, vocab, shape, batch])
    out = subprocess.run(
        [sys.executable, "-c", _MEASURE, args], capture_output=True, text=True, timeout=600, check=True
    )
    return json.loads(out.stdout.strip().splitlines()[-1])
