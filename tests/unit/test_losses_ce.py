"""Cross-entropy by hand (naive and log-sum-exp) against an independent float64 NumPy reference and F.cross_entropy."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from playground import losses, models
from tests.unit._tiny import tiny_model

DTYPES = [torch.float32, torch.bfloat16, torch.float16]
# tolerance on a loss of a few nats: the rounding of the logits is already in the reference (it sees the same
# rounded logits), what is left is rounding inside the computation and of the final mean into the dtype
TOL = {torch.float32: 1e-5, torch.bfloat16: 5e-2, torch.float16: 5e-3, torch.float64: 1e-12}


def reference_nll(logits: torch.Tensor, targets: torch.Tensor, ignore_index: int = -100) -> np.ndarray:
    """-log softmax(z)[y] per kept position in float64 NumPy, written from the definition (max-shifted)."""
    z = logits.detach().to(torch.float64).reshape(-1, logits.shape[-1]).numpy()
    y = targets.reshape(-1).numpy()
    keep = y != ignore_index
    z, y = z[keep], y[keep]
    m = z.max(axis=1, keepdims=True)
    log_z = m[:, 0] + np.log(np.exp(z - m).sum(axis=1))
    return log_z - z[np.arange(len(y)), y]


def sample(shape=(3, 7), V=50, scale=2.0, seed=0, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    logits = (torch.randn(*shape, V, generator=g, dtype=torch.float64) * scale).to(dtype)
    targets = torch.randint(0, V, shape, generator=g)
    return logits, targets


# ------------------------------------------------------------------------------------------------ agreement
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("stable", [True, False])
def test_manual_matches_float64_reference_and_torch(dtype, stable):
    logits, targets = sample(dtype=dtype)
    ref = reference_nll(logits, targets).mean()
    manual = losses.cross_entropy_manual(logits, targets, stable=stable)
    assert manual.dtype == dtype and manual.dim() == 0
    assert float(manual) == pytest.approx(ref, abs=TOL[dtype] * max(1.0, ref))
    torch_loss = losses.cross_entropy_torch(logits, targets)
    assert float(torch_loss) == pytest.approx(float(F.cross_entropy(logits.reshape(-1, 50), targets.reshape(-1))))
    assert float(manual) == pytest.approx(float(torch_loss), abs=2 * TOL[dtype] * max(1.0, ref))


def test_float64_is_exact():
    logits, targets = sample(dtype=torch.float64)
    ref = reference_nll(logits, targets).mean()
    for stable in (True, False):
        assert float(losses.cross_entropy_manual(logits, targets, stable=stable)) == pytest.approx(ref, abs=1e-12)


@pytest.mark.parametrize("ignore_index", [-100, 0, 7])
@pytest.mark.parametrize("stable", [True, False])
def test_ignore_index(ignore_index, stable):
    logits, targets = sample(shape=(4, 9), V=12, seed=3)
    targets[0, :4] = ignore_index  # padding / a masked prompt
    targets[2, 5] = ignore_index
    manual = losses.cross_entropy_manual(logits, targets, stable=stable, ignore_index=ignore_index)
    torch_loss = losses.cross_entropy_torch(logits, targets, ignore_index=ignore_index)
    ref = reference_nll(logits, targets, ignore_index).mean()
    assert float(manual) == pytest.approx(ref, abs=1e-5)
    assert float(torch_loss) == pytest.approx(ref, abs=1e-5)


def test_all_ignored_is_nan_like_pytorch():
    logits, targets = sample()
    targets[:] = -100
    assert math.isnan(float(losses.cross_entropy_manual(logits, targets)))
    assert math.isnan(float(losses.cross_entropy_torch(logits, targets)))


def test_gradient_matches_pytorch():
    logits, targets = sample(seed=5)
    a = logits.clone().requires_grad_()
    b = logits.clone().requires_grad_()
    losses.cross_entropy_manual(a, targets).backward()
    F.cross_entropy(b.reshape(-1, 50), targets.reshape(-1)).backward()
    torch.testing.assert_close(a.grad, b.grad, rtol=1e-5, atol=1e-7)


def test_uniform_logits_give_ln_v():
    logits = torch.zeros(2, 5, 4096)
    targets = torch.randint(0, 4096, (2, 5))
    assert float(losses.cross_entropy_manual(logits, targets)) == pytest.approx(math.log(4096), abs=1e-5)
    assert losses.uniform_loss(4096) == pytest.approx(8.3178, abs=1e-4)
    assert losses.perplexity(losses.uniform_loss(4096)) == pytest.approx(4096)
    assert losses.perplexity(1e6) == math.inf


# ------------------------------------------------------------------------------------------ extreme logits
@pytest.mark.parametrize(
    "dtype, scale",
    [(torch.float32, 100.0), (torch.float32, 1e4), (torch.bfloat16, 100.0), (torch.float16, 10.0)],
)
def test_stable_survives_what_breaks_naive(dtype, scale):
    logits, targets = sample(scale=scale, dtype=dtype)  # |z| up to ~4*scale: exp(z) overflows the dtype
    assert torch.isfinite(logits).all()
    ref = reference_nll(logits, targets).mean()
    naive = losses.cross_entropy_manual(logits, targets, stable=False)
    stable = losses.cross_entropy_manual(logits, targets, stable=True)
    assert not torch.isfinite(naive)
    assert torch.isfinite(stable)
    # the answer itself is large (tens to tens of thousands of nats): compare relatively, at the dtype's precision
    rel = {torch.float32: 1e-5, torch.bfloat16: 1e-2, torch.float16: 2e-3}[dtype]
    assert float(stable) == pytest.approx(ref, rel=rel)
    assert float(losses.cross_entropy_torch(logits, targets)) == pytest.approx(ref, rel=rel)


def test_float16_overflows_at_e_to_the_11():
    # exp(11) = 59874 fits float16 (max 65504), exp(11.2) = 73130 does not
    targets = torch.tensor([0])
    fits = torch.tensor([[11.0, 0.0]], dtype=torch.float16)
    breaks = torch.tensor([[11.2, 0.0]], dtype=torch.float16)
    assert torch.isfinite(losses.cross_entropy_manual(fits, targets, stable=False))
    assert not torch.isfinite(losses.cross_entropy_manual(breaks, targets, stable=False))
    assert float(losses.cross_entropy_manual(breaks, targets)) == pytest.approx(math.log1p(math.exp(-11.2)), abs=1e-4)


def test_naive_underflow_gives_inf_stable_gives_the_right_number():
    logits = torch.tensor([[0.0, -200.0]])  # p(target) = e^-200 underflows to 0 in float32: -log 0 = inf
    targets = torch.tensor([1])
    assert float(losses.cross_entropy_manual(logits, targets, stable=False)) == math.inf
    assert float(losses.cross_entropy_manual(logits, targets)) == pytest.approx(200.0, rel=1e-6)


def test_minus_inf_logits_are_fine():
    logits = torch.tensor([[0.0, -math.inf, 1.0]])  # a banned token
    targets = torch.tensor([2])
    expected = math.log(1 + math.exp(-1))
    assert float(losses.cross_entropy_manual(logits, targets)) == pytest.approx(expected, abs=1e-6)
    assert float(losses.cross_entropy_manual(logits, targets, stable=False)) == pytest.approx(expected, abs=1e-6)


@settings(max_examples=60, deadline=None)
@given(
    st.integers(1, 6),
    st.integers(2, 40),
    st.floats(1e-3, 1e4),
    st.integers(0, 2**31 - 1),
    st.sampled_from(["float32", "bfloat16", "float16"]),
)
def test_property_stable_is_finite_and_non_negative(T, V, scale, seed, dtype_name):
    dtype = losses.BREAK_DTYPES[dtype_name]
    logits, targets = sample(shape=(T,), V=V, scale=scale, seed=seed)
    logits = logits.clamp(-6e4, 6e4).to(dtype)  # stay inside float16's range: the cast itself must not overflow
    loss = losses.cross_entropy_manual(logits, targets)
    assert torch.isfinite(loss) and float(loss) >= 0.0
    ref = reference_nll(logits, targets).mean()
    assert float(loss) == pytest.approx(ref, rel=2e-2, abs=TOL[dtype] * 10)


# ----------------------------------------------------------------------------------------- per-token stats
def test_token_stats_against_numpy_and_sum_to_the_loss():
    logits, targets = sample(shape=(2, 11), V=30, seed=7)
    stats = losses.token_stats(logits, targets)
    assert stats.nll.shape == targets.shape and stats.nll.dtype == torch.float64
    ref = reference_nll(logits, targets)
    np.testing.assert_allclose(stats.nll.reshape(-1).numpy(), ref, atol=1e-5)
    np.testing.assert_allclose(stats.p_target.numpy(), np.exp(-stats.nll.numpy()), rtol=1e-6)
    # the per-token table adds up to the loss
    assert float(stats.nll.sum() / stats.nll.numel()) == pytest.approx(
        float(losses.cross_entropy_manual(logits, targets)), abs=1e-5
    )
    z = logits.double().reshape(-1, 30).numpy()
    y = targets.reshape(-1).numpy()
    p = np.exp(z - z.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    entropy = -(p * np.log(p)).sum(1)
    np.testing.assert_allclose(stats.entropy.reshape(-1).numpy(), entropy, atol=1e-5)
    rank = np.array([1 + (z[i] > z[i, y[i]]).sum() for i in range(len(y))])
    np.testing.assert_array_equal(stats.rank.reshape(-1).numpy(), rank)


def test_token_stats_edge_cases():
    logits = torch.tensor([[5.0, 1.0, 1.0], [0.0, 0.0, 0.0]])
    stats = losses.token_stats(logits, torch.tensor([0, 2]))
    assert stats.rank.tolist() == [1, 1]  # ties count in the target's favour
    assert float(stats.entropy[1]) == pytest.approx(math.log(3))
    one_hot = torch.tensor([[0.0, -math.inf, -math.inf]])  # a certain model: entropy 0, not nan
    s = losses.token_stats(one_hot, torch.tensor([0]))
    assert float(s.entropy[0]) == 0.0 and float(s.nll[0]) == 0.0
    with pytest.raises(ValueError):
        losses.token_stats(logits, torch.tensor([0, -100]))


# ------------------------------------------------------------------------------------------------- break it
def test_break_it_reports_the_three_and_the_reference():
    logits, targets = sample(scale=3.0)
    calm = losses.break_it(logits, targets, scale=1.0, dtype="float32")
    assert calm.finite == {"naive": True, "stable": True, "torch": True}
    assert calm.naive == pytest.approx(calm.reference, rel=1e-5) and calm.stable == pytest.approx(calm.reference)
    for dtype, scale in [("float32", 100.0), ("bfloat16", 100.0), ("float16", 3.0)]:
        r = losses.break_it(logits, targets, scale=scale, dtype=dtype)
        assert r.logits_finite and r.dtype == dtype
        assert r.finite == {"naive": False, "stable": True, "torch": True}, (dtype, scale, r)
        assert r.stable == pytest.approx(r.reference, rel=1e-2)
    overflow = losses.break_it(logits, targets, scale=1e5, dtype=torch.float16)
    assert not overflow.logits_finite and overflow.max_abs_logit == math.inf


def _judged(logits, targets, x, dtype):
    r = losses.break_it(logits, targets, losses.scale_for_largest(logits, 10.0**x), dtype)
    return r, {k: st for k, (st, _) in losses.break_judgement(r).items()}


def test_scale_for_largest_puts_the_largest_logit_at_the_target():
    logits, _ = sample(scale=3.0)
    s = losses.scale_for_largest(logits, 100.0)
    assert float((logits.double() * s).max()) == pytest.approx(100.0)
    with pytest.raises(ValueError):
        losses.scale_for_largest(torch.zeros(2, 5), 1.0)


@pytest.mark.parametrize(
    "dtype, x, expect",
    [
        # all agree -> naive breaks (exp of the largest logit, 10^x, passes the dtype's max) -> even log-sum-exp loses
        ("float16", 1.0, {"naive": "agrees", "stable": "agrees", "torch": "agrees"}),
        ("float16", 1.1, {"naive": "nan", "stable": "agrees", "torch": "agrees"}),
        ("float16", 4.9, {"naive": "nan", "stable": "nan", "torch": "nan"}),
        ("float32", 1.9, {"naive": "agrees", "stable": "agrees", "torch": "agrees"}),
        ("float32", 2.0, {"naive": "nan", "stable": "agrees", "torch": "agrees"}),
        ("float32", 38.0, {"naive": "nan", "stable": "inf", "torch": "inf"}),
        ("bfloat16", 1.9, {"naive": "agrees", "stable": "agrees", "torch": "agrees"}),
        ("bfloat16", 2.0, {"naive": "nan", "stable": "agrees", "torch": "agrees"}),
    ],
)
def test_break_walk_per_dtype(dtype, x, expect):
    """Each dtype's slider range walks through the three regimes; statuses are measured against float64."""
    logits, _ = sample(shape=(60,), V=200, scale=3.0)
    targets = logits.topk(3, dim=-1).indices[:, 2]  # the third guess: no target probability underflows to 0
    r, status = _judged(logits, targets, x, dtype)
    broken = {"nan", "inf"}  # which of the two depends on whether a target's own exp overflowed
    assert {k: "broken" if v in broken else v for k, v in status.items()} == {
        k: "broken" if v in broken else v for k, v in expect.items()
    }, (r, losses.break_judgement(r))
    for key, state in status.items():  # "agrees" means within the stated tolerance of the reference, nothing else
        v = getattr(r, key)
        assert (state == "agrees") == (math.isfinite(v) and abs(v - r.reference) <= losses.break_tolerance(r))


def test_f_cross_entropy_float16_mean_overflows_while_each_loss_fits():
    """F.cross_entropy on float16 (CPU) sums per-token losses in float16: two tokens of 40000 overflow 65504."""
    z = torch.full((2, 4), -40000.0, dtype=torch.float64)
    z[:, 0] = 0.0  # the targets are token 1: each loss is 40000 + log(1 + 2 e^-40000) ~ 40000, fine in float16
    targets = torch.tensor([1, 1])
    r = losses.break_it(z, targets, 1.0, "float16")
    judged = losses.break_judgement(r)
    assert r.reference == pytest.approx(40000.0) and math.isfinite(r.stable)
    assert judged["stable"][0] == "agrees"
    if math.isinf(r.torch):  # what this PyTorch does on the CPU; the verdict must follow the number either way
        assert judged["torch"][0] == "inf" and "sum (8e+04)" in judged["torch"][1] and "float16" in judged["torch"][1]
    else:
        assert judged["torch"][0] == "agrees"


def test_minus_inf_logits_alone_leave_the_stable_loss_right():
    """Logits that overflow to -inf have probability 0: unless one is a target, log-sum-exp still agrees."""
    z = torch.tensor([[3.0, 1.0, -1e6], [0.5, 2.0, -1e6]], dtype=torch.float64)
    r = losses.break_it(z, torch.tensor([0, 1]), 1.0, "float16")
    judged = losses.break_judgement(r)
    assert r.neg_inf == 2 and r.pos_inf == 0 and r.target_neg_inf == 0 and not r.logits_finite
    assert judged["stable"][0] == "agrees" and judged["torch"][0] == "agrees"
    r = losses.break_it(z, torch.tensor([2, 1]), 1.0, "float16")  # now a target is -inf: p = 0, the loss is inf
    assert r.target_neg_inf == 1 and r.reference == math.inf
    assert "target logit" in losses.break_judgement(r)["stable"][1]


@pytest.mark.parametrize("kw", [{"scale": 0.0}, {"scale": float("nan")}, {"scale": -1.0}, {"dtype": "int8"}])
def test_break_it_rejects_bad_settings(kw):
    logits, targets = sample()
    args = {"scale": 1.0, "dtype": "float32", **kw}
    with pytest.raises(ValueError):
        losses.break_it(logits, targets, **args)


# --------------------------------------------------------------------------------------------- bad inputs
def test_bad_inputs_raise_value_error_with_the_value():
    logits, targets = sample(V=10)
    with pytest.raises(ValueError, match="10"):
        bad = targets.clone()
        bad[0, 0] = 10
        losses.cross_entropy_manual(logits, bad)
    with pytest.raises(ValueError, match=r"\(3, 7, 10\)"):
        losses.cross_entropy_manual(logits, targets[:, :3])
    with pytest.raises(ValueError, match="integer"):
        losses.cross_entropy_manual(logits, targets.float())
    with pytest.raises(ValueError):
        losses.uniform_loss(0)


# ------------------------------------------------------------------------------------ long texts in windows
WINDOWED = {"vocab_size": 64, "n_embd": 16, "n_layer": 2, "n_head": 2}  # a tiny GPT; each test sets its context


@pytest.mark.parametrize("n, window", [(10, 16), (16, 16), (17, 16), (40, 16), (41, 9), (70, 32)])
def test_windowed_logits_give_each_target_half_a_context(n, window):
    model = tiny_model("gpt", context=window, **WINDOWED)
    ids = torch.randint(0, 64, (n,), generator=torch.Generator().manual_seed(n)).tolist()
    logits, passes = losses.windowed_logits(model, ids, models.context_length(model))
    assert logits.shape == (n - 1, 64)
    assert passes == 1 if n <= window else passes > 1
    with torch.no_grad():  # every window the model could have read, once each
        outs = {s: model(torch.tensor(ids[s : s + window])[None])[0] for s in range(max(1, n - window + 1))}
    for t in range(1, n):  # target t: which window produced its row? it must have >= window//2 context
        found = [
            s
            for s in range(max(0, t - window + 1), t)
            if s in outs and torch.allclose(outs[s][t - 1 - s], logits[t - 1], atol=1e-5)
        ]
        assert found and (found[0] == 0 or t - found[0] >= window - window // 2), (t, found)


def test_windowed_logits_match_one_pass_when_the_text_fits():
    model = tiny_model("gpt", context=64, **WINDOWED)
    ids = list(range(30))
    logits, passes = losses.windowed_logits(model, ids, None)
    with torch.no_grad():
        torch.testing.assert_close(logits, model(torch.tensor(ids)[None])[0, :-1])
    assert passes == 1


def test_context_window_reads_gpt_llama_and_hf_names():
    from types import SimpleNamespace

    assert models.context_length(tiny_model("gpt", context=24, **WINDOWED)) == 24
    assert models.context_length(SimpleNamespace(config=SimpleNamespace(max_seq_len=256))) == 256
    assert models.context_length(SimpleNamespace(config=SimpleNamespace(max_position_embeddings=2048))) == 2048
    assert models.context_length(SimpleNamespace()) is None


def test_token_surfaces_rebuild_the_text():
    pytest.importorskip("gradio")
    from playground import tokenizer as tk
    from playground.ui.cross_entropy_tab import token_surfaces

    tok = tk.load_tokenizer("bundled")
    text = "It is a truth héllo 😀 naïve\nnew <b>line</b> & 東京"
    ids = tok.encode(text)
    surfaces = token_surfaces(tok, ids)
    assert len(surfaces) == len(ids) and "".join(surfaces) == tok.decode(ids)
    assert "😀" in surfaces  # the byte pieces of the emoji: empty surfaces, then the whole character
