"""Property tests (hypothesis) for the pure functions: distributions sum to one, losses are finite and
non-negative, the bundled tokenizer round-trips arbitrary text, and the limit helpers refuse NaN.

Bounded: few examples, no shrinking marathons (conftest sets one torch thread).

The tokenizer's identity: the bundled SentencePiece model uses normalization "identity" (no NFKC),
remove_extra_whitespaces=False and byte_fallback=True, so decode(encode(s)) == s for every Unicode string
without surrogates (which UTF-8 cannot hold): runs of spaces, leading spaces, tabs, CR/LF, control characters,
combining marks, full-width and ligature forms, emoji and characters never seen in training (as bytes) all
come back unchanged. What it does NOT promise: the same ids for NFC and NFD spellings of one text.
"""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from playground import limits, losses, sampling

SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow], derandomize=True)


finite = st.floats(min_value=-1e4, max_value=1e4, allow_nan=False, width=32)
logit_rows = st.integers(2, 40).flatmap(lambda v: st.lists(finite, min_size=v, max_size=v))
temperatures = st.one_of(st.just(0.0), st.floats(min_value=1e-3, max_value=10.0))
top_ks = st.one_of(st.none(), st.integers(0, 100))
top_ps = st.floats(min_value=1e-3, max_value=1.0)


# ------------------------------------------------------------------------------------------- sampling
@SETTINGS
@given(row=logit_rows, t=temperatures, k=top_ks, p=top_ps)
def test_next_token_probs_is_a_distribution(row, t, k, p):
    probs = sampling.next_token_probs(torch.tensor(row), t, k, p)
    assert probs.dtype == torch.float32 and torch.isfinite(probs).all() and (probs >= 0).all()
    assert abs(float(probs.sum()) - 1.0) < 1e-5
    kept = int((probs > 0).sum())
    z = torch.tensor(row).float()
    if t == 0:  # greedy: the tokens tied for the largest logit
        assert kept == int((z == z.max()).sum())
    elif k not in (None, 0):  # top-k keeps the k largest and every token tied with the k-th (transformers' rule)
        z = (z - z.max()) / t
        kth = z.topk(min(k, len(row))).values[-1]
        assert 1 <= kept <= int((z >= kth).sum())
    assert kept >= 1


@SETTINGS
@given(row=logit_rows, t=temperatures, k=top_ks, p=top_ps)
def test_every_stage_is_a_distribution_and_the_last_is_what_generate_draws(row, t, k, p):
    logits = torch.tensor(row)
    stages = sampling.distribution_stages(logits, t, k, p)
    for s in stages:
        assert abs(float(s.probs.sum()) - 1.0) < 1e-5 and (s.probs >= 0).all()
        assert 0.0 <= s.entropy <= math.log(len(row)) + 1e-4
    torch.testing.assert_close(stages[-1].probs, sampling.next_token_probs(logits, t, k, p))


# --------------------------------------------------------------------------------------------- losses
@st.composite
def batches(draw, scale=1e4):
    b, t, v = draw(st.integers(1, 3)), draw(st.integers(1, 6)), draw(st.integers(2, 12))
    values = draw(st.lists(st.floats(-scale, scale, allow_nan=False, width=32), min_size=b * t * v, max_size=b * t * v))
    targets = draw(st.lists(st.integers(0, v - 1), min_size=b * t, max_size=b * t))
    return torch.tensor(values).reshape(b, t, v), torch.tensor(targets).reshape(b, t)


@SETTINGS
@given(batch=batches())
def test_cross_entropy_is_finite_non_negative_and_agrees(batch):
    logits, targets = batch
    manual = losses.cross_entropy_manual(logits, targets, stable=True)
    torch_ = losses.cross_entropy_torch(logits, targets)
    assert torch.isfinite(manual) and float(manual) >= 0
    ref = torch.nn.functional.cross_entropy(logits.double().reshape(-1, logits.shape[-1]), targets.reshape(-1))
    # float32 holds log-sum-exp = max + small to one ulp of the largest logit (0.0005 at 4096)
    tol = 1e-4 * max(1.0, float(ref)) + 4 * torch.finfo(torch.float32).eps * float(logits.abs().max())
    assert abs(float(manual) - float(ref)) <= tol
    assert abs(float(torch_) - float(ref)) <= tol


logps = st.floats(min_value=-50.0, max_value=0.0, allow_nan=False)


@SETTINGS
@given(
    chosen=st.lists(logps, min_size=1, max_size=4),
    data=st.data(),
    nll=st.floats(0.0, 50.0),
    lam=st.floats(0.0, 10.0),
)
def test_orpo_loss_is_finite_and_non_negative(chosen, data, nll, lam):
    rejected = data.draw(st.lists(logps, min_size=len(chosen), max_size=len(chosen)))
    out = losses.orpo_loss(torch.tensor(chosen), torch.tensor(rejected), torch.tensor(nll), lam)
    for name in ("loss", "nll", "or_loss", "log_odds", "ratio"):
        assert torch.isfinite(getattr(out, name)).all(), name
    assert float(out.loss) >= 0 and (out.or_loss >= 0).all()
    assert ((out.ratio >= 0) & (out.ratio <= 1)).all()
    assert abs(float(out.loss) - (float(out.nll) + lam * float(out.or_loss.mean()))) < 1e-4 * max(1.0, float(out.loss))


@pytest.mark.parametrize("lam", [math.nan, -0.1, math.inf])
def test_orpo_refuses_bad_lambda(lam):
    with pytest.raises(ValueError, match="lam"):
        losses.orpo_loss(torch.tensor([-1.0]), torch.tensor([-2.0]), torch.tensor(1.0), lam)


# ------------------------------------------------------------------------------------------ tokenizer
@pytest.fixture(scope="module")
def bundled():
    from playground.tokenizer import load_tokenizer

    return load_tokenizer()


# Unicode text without surrogates (UTF-8 cannot hold them); weighted towards what learners paste
texts = st.one_of(
    st.text(st.characters(exclude_categories=("Cs",)), max_size=200),
    st.text(st.sampled_from(list(" \t\n\r\x00\x1b\u200b\u202e\ufeffe\u0301ﬁＡ東京🚀שלוםab1.<|>")), max_size=80),
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=texts)
def test_the_bundled_tokenizer_round_trips(bundled, text):
    ids = bundled.encode(text)
    assert all(0 <= i < bundled.vocab_size for i in ids)
    assert bundled.decode(ids) == text


# ------------------------------------------------------------------------------------ limit helpers
letters = st.text(st.characters(categories=["L"]), max_size=5)


@SETTINGS
@given(value=st.one_of(st.floats(-1e6, -1), st.floats(1e6, 1e300), letters))
def test_limit_helpers_refuse_out_of_range_and_nonsense(value):
    with pytest.raises(ValueError, match="must be"):
        limits.check_int(value, "Steps", 1, 100)
    with pytest.raises(ValueError, match="must be"):
        limits.check_float(value, "Rate", 0.0, 1.0)


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf, None, "x", "", [1]])
def test_limit_helpers_refuse_nan_and_non_numbers(value):
    with pytest.raises(ValueError, match="must be"):
        limits.check_int(value, "Steps", 1, 100)
    with pytest.raises(ValueError, match="must be"):
        limits.check_float(value, "Rate", 0.0, 1.0)


@SETTINGS
@given(value=st.integers(1, 100))
def test_limit_helpers_pass_values_in_range(value):
    assert limits.check_int(float(value), "Steps", 1, 100) == value
    assert limits.check_float(value / 100, "Rate", 0.0, 1.0) == value / 100


@SETTINGS
@given(text=st.text(st.sampled_from(" \t\n\r\u3000\u00a0"), max_size=20))
def test_blank_text_is_refused(text):
    with pytest.raises(ValueError, match="empty"):
        limits.check_text(text)
