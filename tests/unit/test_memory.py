"""Issue 23 (1): a training run's memory is estimated from its shapes before anything is built, and the burst's
time bound holds inside long steps and evaluations.

The estimate is checked against a measurement: the peak resident memory one real training step adds, in a fresh
process (`memory.measure_train_step`), on a GPT, a GPT with dropout (attention scores kept) and a Llama.
"""

from __future__ import annotations

import time

import pytest
import torch

from playground import memory, train
from playground.data import TokenData

MB = 2**20


@pytest.mark.parametrize(
    "arch, preset, shape, batch",
    [
        ("gpt", "tiny", {"n_layer": 2, "n_head": 4, "n_embd": 128, "context": 256}, 16),
        ("gpt", "course", {"n_layer": 2, "n_head": 4, "n_embd": 128, "context": 256}, 16),  # dropout 0.05
        ("llama", "tiny", {"n_layer": 2, "n_head": 4, "n_embd": 256, "context": 128}, 16),
    ],
)
def test_the_estimate_bounds_a_measured_step(arch, preset, shape, batch):
    # the smaller of two fresh-process measurements: what the step needs; allocator and page-cache noise on a
    # loaded machine only ever adds to one reading (a run on a busy CI machine once read 626 MB for a 419 MB step)
    runs = [memory.measure_train_step(arch, preset, 4096, shape, batch) for _ in range(2)]
    measured = min(runs, key=lambda m: m["peak"] - m["before"])
    added = measured["peak"] - measured["before"]  # activations and the step's temporaries
    est = memory.train_step_bytes(train.model_config(arch, preset, 4096, **shape), batch, shape["context"])
    assert added > 100 * MB, measured  # a real measurement, well above the noise
    assert est.activation_bytes >= added, (est, added)  # an upper estimate ...
    assert est.activation_bytes <= 2.5 * added, (est, added)  # ... and not a wild one


def test_the_train_tabs_maximum_is_refused_with_what_would_fit():
    config = train.model_config("gpt", "tiny", 4096, n_layer=2, n_head=4, n_embd=768, context=1024)
    est = memory.train_step_bytes(config, 128, 1024)
    assert est.params == 25_980_928 and est.total_bytes > 30e9  # the request: 26.0M, OOM at 24 GB
    need = f"{est.total_bytes / 1e9:.2f} GB"  # the estimate depends on the attention kernel torch picks
    with pytest.raises(ValueError, match=rf"would need about {need} .* a batch of \d+ fits at this context"):
        memory.check_train_memory(config, 128, 1024, budget=3_000_000_000)
    fit = int(__import__("re").search(r"a batch of (\d+)", _message(config)).group(1))
    assert memory.train_step_bytes(config, fit, 1024).total_bytes <= 3e9 < memory.train_step_bytes(
        config, fit + 1, 1024).total_bytes  # fmt: skip


def _message(config) -> str:
    try:
        memory.check_train_memory(config, 128, 1024, budget=3_000_000_000)
    except ValueError as exc:
        return str(exc)
    return ""


def test_the_tabs_presets_fit_the_default_budget():
    from playground.limits import LIMITS

    for preset, shape, batch in (("tiny", dict(n_layer=2, n_head=4, n_embd=128, context=32), 32),
                                 ("course", dict(n_layer=7, n_head=7, n_embd=384, context=512), 4)):  # fmt: skip
        est = memory.check_train_memory(train.model_config("gpt", preset, 4096, **shape), batch, shape["context"])
        assert est.total_bytes <= LIMITS.max_train_memory_bytes


def _data(n=20_000):
    g = torch.Generator().manual_seed(0)
    return TokenData(torch.randint(0, 4096, (n,), generator=g), torch.randint(0, 4096, (n,), generator=g))


def test_the_time_bound_holds_inside_a_long_step():
    torch.manual_seed(0)
    # many layers, each a small share of the step: the bound is checked between any two of them
    model = train.build_model("gpt", "tiny", 4096, n_layer=8, n_head=4, n_embd=128, context=512)
    cfg = train.TrainConfig(steps=10, batch_size=32, max_seconds=0.2, eval_interval=1, eval_iters=4, sample_tokens=0)
    before = [p.detach().clone() for p in model.parameters()]
    t0 = time.perf_counter()
    logs = list(train.train_steps(model, _data(), cfg))
    took = time.perf_counter() - t0
    assert len(logs) == 1 and logs[0].last and logs[0].step == 0 and logs[0].loss is None
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))  # no half update
    assert all(p.grad is None for p in model.parameters())
    # the same step without a bound: the bounded call stopped well inside it
    t1 = time.perf_counter()
    full = list(train.train_steps(model, _data(), train.TrainConfig(steps=1, batch_size=32, eval_interval=0,
                                                                    sample_tokens=0)))  # fmt: skip
    whole = time.perf_counter() - t1
    assert full[-1].loss > 0 and took < 0.5 * whole, (took, whole)


def test_a_bounded_evaluation_gives_up_instead_of_running_on():
    torch.manual_seed(0)
    model = train.build_model("gpt", "tiny", 4096, n_layer=2, n_head=4, n_embd=256, context=512)
    cfg = train.TrainConfig(steps=10, batch_size=64, eval_iters=8)
    t0 = time.perf_counter()
    assert train.evaluate(model, _data(), cfg, max_seconds=0.2) is None
    assert time.perf_counter() - t0 < 5 and model.training
    small = train.TrainConfig(steps=10, batch_size=2, eval_iters=1)
    assert set(train.evaluate(model, _data(), small, max_seconds=60)) == {"train", "val"}
