"""playground.train: the LR schedule, decay groups, the StepLog loop, bounds, resume, saved runs, the CLI."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from playground import data, pretrain, train
from tests.unit._tiny import tiny_model

ARCHS = ["gpt", "llama"]


def small(arch: str, **kw):
    """The model of these tests (_tiny.tiny_model's names): 2 layers, width 32, 2 heads, context 32, 4096 ids (the
    bundled tokenizer's)."""
    return tiny_model(arch, **{"vocab_size": 4096, "n_layer": 2, "n_embd": 32, "n_head": 2, "context": 32, **kw})


def random_data(vocab: int = 4096, n: int = 4000, seed: int = 0) -> data.TokenData:
    ids = torch.randint(vocab, (n,), generator=torch.Generator().manual_seed(seed))
    return data.TokenData(ids[: n * 9 // 10], ids[n * 9 // 10 :], source="random ids")


def quiet(**kw) -> train.TrainConfig:
    """A config with no evaluation or samples unless asked."""
    return train.TrainConfig(**{"eval_interval": 0, "sample_tokens": 0, "batch_size": 4, **kw})


# -------------------------------------------------------------------------------------------- schedule
def test_lr_schedule_shape():
    cfg = train.TrainConfig(steps=200, lr=1e-3, warmup_steps=20)
    lrs = train.lr_schedule(cfg)
    assert len(lrs) == 200
    # linear warmup: equal increments, from lr/warmup up to exactly the peak
    warm = lrs[:20]
    assert all(math.isclose(b - a, 1e-3 / 20, rel_tol=1e-9) for a, b in zip(warm, warm[1:], strict=False))
    assert math.isclose(lrs[19], 1e-3) and math.isclose(max(lrs), 1e-3)
    # cosine decay: monotone non-increasing, halfway at the midpoint, ends exactly at lr/10
    decay = lrs[19:]
    assert all(b <= a + 1e-15 for a, b in zip(decay, decay[1:], strict=False))
    assert math.isclose(lrs[-1], 1e-4, rel_tol=1e-12)
    assert min(decay) >= 1e-4 - 1e-15
    # halfway through the decay the rate is halfway between peak and floor (cos(pi/2) = 0)
    odd = train.TrainConfig(steps=201, lr=1e-3, warmup_steps=20)  # decays over steps 20..200: midpoint 110
    assert train.lr_at(110, odd) == pytest.approx((1e-3 + 1e-4) / 2, rel=1e-12)
    # past the horizon it stays at the floor; the buggy 0.5 * (1.0 * cos) factor would go negative instead
    assert train.lr_at(10_000, cfg) == pytest.approx(1e-4)


def test_lr_schedule_against_an_independent_formula():
    cfg = train.TrainConfig(steps=50, lr=2e-3, min_lr=0.0, warmup_steps=5)
    for s in range(50):
        if s < 5:
            want = 2e-3 * (s + 1) / 5
        else:  # cosine annealing from lr to 0 over steps 5..49, written as in Loshchilov & Hutter (SGDR)
            t, T = s - 5, 44
            want = 0.0 + 0.5 * (2e-3 - 0.0) * (1 + math.cos(t / T * math.pi))
        assert train.lr_at(s, cfg) == pytest.approx(want, rel=1e-12, abs=1e-18)


def test_tiny_recipe_schedule_against_a_float64_reference():
    """The Train tab's tiny preset (issue 22): linear warmup to the peak, then the cosine from the peak to a tenth
    of it over exactly the rest of the schedule, step by step against the formula in numpy float64. (The course's
    slip, 0.5 * (1.0 * cos), would reach 0 half-way and stop learning.)"""
    cfg = train.TrainConfig(**train.RECIPES["tiny"]["train"])
    peak, floor, w, n = cfg.lr, cfg.lr / 10, cfg.warmup_steps, cfg.steps
    s = np.arange(n, dtype=np.float64)
    p = np.clip((s - w) / (n - 1 - w), 0.0, 1.0)
    want = np.where(s < w, peak * (s + 1) / w, floor + (peak - floor) * 0.5 * (1.0 + np.cos(np.pi * p)))
    np.testing.assert_allclose(train.lr_schedule(cfg), want, rtol=1e-12, atol=0)
    assert want[w - 1] == peak and want[-1] == pytest.approx(floor, rel=1e-12)


def test_config_checks():
    with pytest.raises(ValueError, match="steps"):
        train.TrainConfig(steps=0)
    with pytest.raises(ValueError, match="lr"):
        train.TrainConfig(lr=-1)
    with pytest.raises(ValueError, match="min_lr"):
        train.TrainConfig(lr=1e-3, min_lr=1e-2)
    with pytest.raises(ValueError, match="dtype"):
        train.TrainConfig(dtype="float8")
    assert train.TrainConfig(lr=1e-3).final_lr == pytest.approx(1e-4)
    cfg = train.TrainConfig(steps=7, betas=[0.8, 0.9])
    assert train.TrainConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg


# ----------------------------------------------------------------------------------------- optimizer
@pytest.mark.parametrize("arch", ARCHS)
def test_decay_groups(arch):
    model = small(arch)
    decay, no_decay = train.decay_groups(model)
    params = dict(model.named_parameters())
    assert sorted(decay + no_decay) == sorted(params)
    # independent rule by name: biases and norm gains never decay; weight matrices and embeddings do
    for name in no_decay:
        assert name.endswith("bias") or "ln" in name or "norm" in name, name
    for name in decay:
        assert name.endswith("weight") and "ln" not in name and "norm" not in name, name
    if arch == "gpt":
        assert {"wte.weight", "wpe.weight", "lm_head.weight"} <= set(decay) and "ln_f.weight" in no_decay
    opt = train.make_optimizer(model, train.TrainConfig(weight_decay=0.1))
    g0, g1 = opt.param_groups
    assert g0["weight_decay"] == 0.1 and g1["weight_decay"] == 0.0
    assert {id(p) for p in g0["params"]} == {id(params[n]) for n in decay}
    assert opt.defaults["betas"] == (0.9, 0.99)


# ---------------------------------------------------------------------------------------------- loop
@pytest.mark.parametrize("arch", ARCHS)
def test_overfits_one_batch(arch):
    model = small(arch, vocab_size=64, context=16)
    ids = torch.randint(64, (17,), generator=torch.Generator().manual_seed(1))
    one = data.TokenData(ids, ids)  # one window per split: every batch is the same batch
    cfg = quiet(steps=150, lr=1e-2, warmup_steps=5, batch_size=2, weight_decay=0.0)
    logs = list(train.train_steps(model, one, cfg))
    assert len(logs) == 150
    assert logs[0].loss == pytest.approx(math.log(64), abs=0.3)
    assert logs[-1].loss < 0.1, [round(r.loss, 3) for r in logs[::15]]


def test_loss_falls_on_real_text():
    from playground import corpus
    from playground.tokenizer import load_tokenizer

    tok = load_tokenizer("bundled")
    d = data.text_data(corpus.read_corpus("austen")[:60_000], tok, context=32)
    model = small("gpt", vocab_size=tok.vocab_size, context=32)
    cfg = train.TrainConfig(
        steps=40, lr=3e-3, warmup_steps=5, batch_size=8, eval_interval=40, eval_iters=2, sample_tokens=5
    )
    logs = list(train.train_steps(model, d, cfg))
    start, end = sum(r.loss for r in logs[:3]) / 3, sum(r.loss for r in logs[-3:]) / 3
    assert start == pytest.approx(math.log(4096), abs=0.3)  # untrained: about ln V = 8.3 nats
    assert end < start - 1.5, (start, end)
    assert logs[-1].val_loss < 7.0 and logs[-1].sample.startswith("It is a truth")


def test_steplog_fields_and_eval_schedule():
    model, d = small("gpt"), random_data()
    cfg = quiet(steps=12, eval_interval=5, eval_iters=1)
    logs = list(train.train_steps(model, d, cfg))
    assert [r.step for r in logs] == list(range(1, 13))
    assert [r.step for r in logs if r.val_loss is not None] == [5, 10, 12]  # every 5 and the last
    assert logs[-1].last and not any(r.last for r in logs[:-1])
    assert logs[-1].tokens_seen == 12 * 4 * 32
    assert all(r.lr == train.lr_at(r.step - 1, cfg) for r in logs)
    assert all(r.grad_norm > 0 and r.tokens_per_s > 0 for r in logs)
    assert model.training  # left in training mode


def test_log_interval_reads_the_loss_back_only_when_due():
    logs = list(train.train_steps(small("gpt"), random_data(), quiet(steps=7, log_interval=3)))
    assert [r.step for r in logs if r.loss is not None] == [3, 6, 7]


def test_time_bound_stops_and_evaluates_the_last_step():
    model, d = small("gpt"), random_data()
    cfg = quiet(steps=10_000, max_seconds=0.3, eval_interval=1000, eval_iters=1)
    logs = list(train.train_steps(model, d, cfg))
    assert 1 <= len(logs) < 10_000 and logs[-1].last and logs[-1].val_loss is not None
    assert logs[-1].elapsed < 5


def test_stopping_early_leaves_the_model_usable():
    model, d = small("gpt"), random_data()
    state = train.new_state(model, quiet(steps=50))
    for r in train.train_steps(model, d, quiet(steps=50), state):
        if r.step == 3:
            break
    assert state.step == 3 and model.training
    logits = model(torch.zeros(1, 5, dtype=torch.long))
    assert logits.shape == (1, 5, 4096) and torch.isfinite(logits).all()


def test_estimate_loss_restores_mode_and_leaves_rng_alone():
    model, d = small("gpt", dropout=0.2), random_data()
    model.train()
    before = torch.get_rng_state()
    a = train.estimate_loss(model, d, 4, 32, 2, seed=3)
    b = train.estimate_loss(model, d, 4, 32, 2, seed=3)
    assert a == b and model.training and torch.equal(before, torch.get_rng_state())
    assert a["val"] == pytest.approx(math.log(4096), abs=0.3)


# -------------------------------------------------------------------------------------------- resume
@pytest.mark.parametrize("arch", ARCHS)
def test_resume_equals_an_uninterrupted_run(arch):
    d = random_data(seed=3)
    cfg = quiet(steps=16, lr=3e-3, warmup_steps=4)
    whole = [r.loss for r in train.train_steps(small(arch, dropout=0.1), d, cfg)]

    model = small(arch, dropout=0.1)
    state = train.new_state(model, cfg)
    first = []
    for r in train.train_steps(model, d, cfg, state):  # the learner presses Stop after 6 steps
        first.append(r.loss)
        if r.step == 6:
            break
    torch.rand(100)  # other work between bursts draws from torch's RNG: must not shift dropout masks
    rest = [r.loss for r in train.train_steps(model, d, cfg, state)]
    assert first + rest == whole  # exactly, not approximately


def test_saved_run_resumes_exactly(tmp_path):
    pytest.importorskip("playground.checkpoints")
    from playground.tokenizer import load_tokenizer

    tok = load_tokenizer("bundled")
    d = random_data(vocab=tok.vocab_size, seed=4)
    cfg = quiet(steps=12, lr=3e-3, warmup_steps=3)
    whole = [r.loss for r in train.train_steps(small("gpt", dropout=0.1), d, cfg)]

    model = small("gpt", dropout=0.1)
    state = train.new_state(model, cfg)
    first = []
    for r in train.train_steps(model, d, cfg, state):
        first.append(r.loss)
        if r.step == 5:
            break
    train.save_run(tmp_path / "run", model, tok, state, cfg, info={"preset": "tiny"})
    assert not list((tmp_path / "run").glob("*.tmp")) and not list((tmp_path / "run").glob("*.pt"))
    bundle, state2, cfg2 = train.load_run(tmp_path / "run")
    assert state2.step == 5 and cfg2 == cfg
    rest = [r.loss for r in train.train_steps(bundle.model, d, cfg2, state2)]
    assert first + rest == pytest.approx(whole, abs=1e-6)


def test_load_run_refuses_a_folder_that_is_not_a_run(tmp_path):
    with pytest.raises(ValueError, match="not a saved training run"):
        train.load_run(tmp_path)


# ----------------------------------------------------------------------------------------------- CLI
def test_build_model_applies_shape_and_refuses_unknowns():
    m = train.build_model("gpt", "tiny", 100, n_layer=1, context=16)
    assert m.config.n_layer == 1 and m.config.context_length == 16 and m.config.vocab_size == 100
    assert train.build_model("llama", "tiny", 100, n_embd=64, n_head=2).config.dim == 64
    with pytest.raises(ValueError, match="preset"):
        train.build_model("gpt", "huge", 100)
    with pytest.raises(ValueError, match="arch"):
        train.build_model("rnn", "tiny", 100)


def test_cli_trains_saves_and_resumes(tmp_path):
    from playground import checkpoints

    out = tmp_path / "run"
    small = ["--n-layer", "1", "--n-embd", "32", "--n-head", "2", "--context", "16", "--batch-size", "2"]
    common = ["--corpus", "kjv", "--eval-interval", "2", "--eval-iters", "1", "--final-eval-iters", "1"]
    assert pretrain.cli([*small, *common, "--steps", "5", "--max-seconds", "600", "--out", str(out)]) == 0
    log = json.loads((out / "train_log.json").read_text())
    assert log["command"].startswith("python -m playground pretrain --n-layer 1")
    assert log["step"] == 5
    assert [e["step"] for e in log["evals"]][:2] == [2, 4] and log["final"]["val_loss"] > 0
    assert checkpoints.load(str(out)).model.config.n_layer == 1
    assert "python -m playground pretrain" in (out / "README.md").read_text()
    # --resume continues the saved run to a longer schedule and keeps the history
    assert pretrain.cli(["--resume", str(out), "--steps", "7", "--out", str(out), *common]) == 0
    log = json.loads((out / "train_log.json").read_text())
    assert log["step"] == 7 and [e["step"] for e in log["evals"]] == [2, 4, 5, 6, 7]


def test_logged_throughput_is_recent_not_a_cumulative_average():
    # a first step that takes 30 s (compiling), then steps of 0.1 s of 1,000 tokens each: once the first step
    # has left the window, the figure is the speed now (10,000 tok/s), not the average since the start
    rate, t, n = train._Rate(), 30.0, 1000
    assert rate.add(t, n) == pytest.approx(1000 / 30)
    for _ in range(train.RATE_WINDOW):
        t, n = t + 0.1, n + 1000
        figure = rate.add(t, n)
    assert figure == pytest.approx(10_000)
    assert n / t < 700  # what a cumulative average would still show
