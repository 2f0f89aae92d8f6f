"""Sampling against independent references: float64 math written here, argmax, a chi-square test, and the
models' uncached forward (for the KV-cache path)."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from playground import models, sampling
from playground.sampling import distribution_stages, generate, generate_steps, next_token_probs


def _logits(v: int = 50, seed: int = 0) -> torch.Tensor:
    return torch.randn(v, generator=torch.Generator().manual_seed(seed)) * 3


# ------------------------------------------------------------------------------ float64 reference
def ref_probs(logits: torch.Tensor, temperature: float, top_k: int | None, top_p: float) -> torch.Tensor:
    """Textbook definition in float64 with Python loops over the sorted tokens (independent of sampling.py)."""
    z = [float(x) / temperature for x in logits.double()]
    order = sorted(range(len(z)), key=lambda i: -z[i])
    keep = order[: top_k or len(z)]
    m = max(z[i] for i in keep)
    w = {i: math.exp(z[i] - m) for i in keep}
    total = sum(w.values())
    nucleus, mass = [], 0.0
    for i in keep:  # most likely first, until the kept mass reaches top_p
        nucleus.append(i)
        mass += w[i] / total
        if mass >= top_p:
            break
    total = sum(w[i] for i in nucleus)
    out = torch.zeros(len(z), dtype=torch.float64)
    for i in nucleus:
        out[i] = w[i] / total
    return out


@pytest.mark.parametrize(
    "temperature,top_k,top_p",
    [(1.0, None, 1.0), (0.5, None, 1.0), (2.0, 10, 1.0), (1.0, None, 0.7), (0.8, 20, 0.9), (1.5, 5, 0.5)],
)
def test_matches_float64_reference(temperature, top_k, top_p):
    logits = _logits(50, seed=1)
    got = next_token_probs(logits, temperature, top_k, top_p).double()
    want = ref_probs(logits, temperature, top_k, top_p)
    assert torch.equal(got == 0, want == 0), "the kept set differs from the reference"
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)
    assert abs(got.sum().item() - 1) < 1e-6


def test_cut_tokens_are_exactly_zero_and_rest_sums_to_one():
    logits = _logits(200, seed=2)
    probs = next_token_probs(logits, 1.0, top_k=7)
    assert int((probs > 0).sum()) == 7
    kept = set(logits.topk(7).indices.tolist())
    assert all(probs[i] == 0.0 for i in range(200) if i not in kept)
    assert abs(probs.double().sum().item() - 1) < 1e-6
    probs = next_token_probs(logits, 1.0, top_p=0.5)
    full = logits.double().softmax(-1)
    kept = probs > 0
    assert full[kept].sum() >= 0.5 - 1e-6  # the nucleus reaches p ...
    smallest_kept = full[kept].min()
    assert full[kept].sum() - smallest_kept < 0.5  # ... and is the smallest set that does
    assert abs(probs.double().sum().item() - 1) < 1e-6


def test_greedy_and_top1_equal_argmax():
    logits = torch.randn(4, 3, 100)  # any leading shape
    arg = logits.argmax(-1)
    for probs in (next_token_probs(logits, 0.0), next_token_probs(logits, 1.3, top_k=1)):
        assert torch.equal(probs.argmax(-1), arg)
        assert torch.equal(probs.sum(-1), torch.ones(4, 3))
        assert int((probs > 0).sum()) == 12


def test_top_k_above_vocab_is_clamped_and_zero_is_off():
    logits = _logits(30)
    base = next_token_probs(logits, 0.9)
    torch.testing.assert_close(next_token_probs(logits, 0.9, top_k=10_000), base)
    torch.testing.assert_close(next_token_probs(logits, 0.9, top_k=0), base)


def test_temperature_sharpens_and_flattens():
    logits = _logits(100)
    h = [distribution_stages(logits, t)[1].entropy for t in (0.3, 1.0, 3.0)]
    assert h[0] < h[1] < h[2] < math.log(100) + 1e-6
    assert distribution_stages(logits, 0.0)[1].entropy == 0.0


@pytest.mark.parametrize(
    "kwargs,needle",
    [
        ({"temperature": -0.1}, "temperature"),
        ({"temperature": float("nan")}, "temperature"),
        ({"temperature": float("inf")}, "temperature"),
        ({"top_p": 0.0}, "top_p"),
        ({"top_p": 1.5}, "top_p"),
        ({"top_p": -0.2}, "top_p"),
        ({"top_p": float("nan")}, "top_p"),
        ({"top_k": -1}, "top_k"),
        ({"top_k": 2.5}, "top_k"),
    ],
)
def test_bad_settings_raise_with_the_value(kwargs, needle):
    args = {"temperature": 1.0, "top_k": None, "top_p": 1.0, **kwargs}
    with pytest.raises(ValueError, match=needle) as err:
        next_token_probs(_logits(), **args)
    bad = next(iter(kwargs.values()))
    assert repr(bad) in str(err.value)


def test_nan_logits_raise():
    logits = _logits()
    logits[3] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        next_token_probs(logits)


def test_float32_softmax_from_bf16_logits():
    probs = next_token_probs(_logits().to(torch.bfloat16), 0.7, top_p=0.9)
    assert probs.dtype == torch.float32
    assert abs(probs.sum().item() - 1) < 1e-5


@settings(max_examples=60, deadline=None)
@given(
    v=st.integers(1, 300),
    seed=st.integers(0, 10_000),
    scale=st.floats(0.01, 50),
    temperature=st.floats(0.0, 5.0),
    top_k=st.one_of(st.none(), st.integers(0, 400)),
    top_p=st.floats(0.001, 1.0),
)
def test_property_probs_sum_to_one(v, seed, scale, temperature, top_k, top_p):
    logits = torch.randn(v, generator=torch.Generator().manual_seed(seed)) * scale
    probs = next_token_probs(logits, temperature, top_k, top_p)
    assert torch.all(probs >= 0)
    assert abs(probs.double().sum().item() - 1) < 1e-5
    assert probs[logits.argmax()] > 0  # the most likely token always survives every filter
    if top_k:
        assert int((probs > 0).sum()) <= top_k


# ------------------------------------------------------------------------------------------- stages
def test_stages_end_in_next_token_probs():
    logits = _logits(80, seed=3)
    stages = distribution_stages(logits, 0.7, 12, 0.8)
    assert [s.name.split(" ")[0] for s in stages] == ["raw", "temperature", "top-k", "top-p"]
    torch.testing.assert_close(stages[0].probs, logits.softmax(-1))
    torch.testing.assert_close(stages[-1].probs, next_token_probs(logits, 0.7, 12, 0.8))
    assert stages[2].kept == 12 and stages[3].kept <= 12
    for s in stages:
        p = s.probs.double()
        want = -(p[p > 0] * p[p > 0].log()).sum().item()
        assert s.entropy == pytest.approx(want, abs=1e-5)


# ---------------------------------------------------------------------------------- drawing tokens
def test_sampled_frequencies_match_distribution():
    """Pearson chi-square goodness of fit, 20,000 draws, fixed seed: the statistic stays under the 0.999 quantile."""
    probs = next_token_probs(torch.tensor([2.0, 1.5, 1.0, 0.5, 0.0, -0.5, -1.0, -3.0]), 1.0)
    gen = torch.Generator().manual_seed(1234)
    n = 20_000
    counts = torch.bincount(torch.tensor([sampling.draw(probs, gen) for _ in range(n)]), minlength=8).double()
    expected = probs.double() * n
    chi2 = ((counts - expected) ** 2 / expected).sum().item()
    assert chi2 < 24.32, f"chi-square {chi2:.1f} with 7 degrees of freedom (0.999 quantile 24.32)"


def test_draw_respects_zeroed_tokens():
    probs = next_token_probs(_logits(40), 2.0, top_k=3)
    gen = torch.Generator().manual_seed(0)
    drawn = {sampling.draw(probs, gen) for _ in range(500)}
    assert drawn <= set(torch.nonzero(probs).flatten().tolist())


# ------------------------------------------------------------------------------------------- models
def _gpt(context: int = 32, vocab: int = 64):
    from playground.gpt import GPT, GPTConfig

    torch.manual_seed(0)
    return GPT(GPTConfig(vocab_size=vocab, context_length=context, n_embd=32, n_layer=2, n_head=4)).eval()


def _llama(context: int = 32, vocab: int = 64):
    llama = pytest.importorskip("playground.llama")
    torch.manual_seed(0)
    config = llama.LlamaConfig(
        vocab_size=vocab, max_seq_len=context, dim=32, n_layers=2, n_heads=4, n_kv_heads=2, hidden_dim=64
    )
    return llama.Transformer(config).eval()


MODELS = {"gpt": _gpt, "llama": _llama}


class NoCache(torch.nn.Module):
    """A model without `new_cache`: generate must fall back to recomputing (the course's loop)."""

    def __init__(self, inner):
        super().__init__()
        self.inner, self.config = inner, inner.config

    def forward(self, idx):
        return self.inner(idx)


def _course_generate(model, prompt, n, context, temperature, top_k, gen):
    """The course's loop (notes 35/68) with our filters: crop to the context, full forward, last logits, draw."""
    ids = list(prompt)
    out = []
    with torch.no_grad():
        for _ in range(n):
            logits = model(torch.tensor([ids[-context:]]))[0, -1]
            token = sampling.draw(next_token_probs(logits, temperature, top_k), gen)
            out.append(token)
            ids.append(token)
    return out


@pytest.mark.parametrize("arch", ["gpt", "llama"])
def test_cached_equals_uncached_and_reference(arch):
    model = MODELS[arch](context=32)
    prompt = [1, 5, 9, 2, 7]
    # 40 new tokens run past the 32-token context: the cache route must switch to the sliding window
    runs = {
        "cache": list(generate(model, prompt, 40, 0.8, 20, 1.0, torch.Generator().manual_seed(7))),
        "nocache": list(generate(model, prompt, 40, 0.8, 20, 1.0, torch.Generator().manual_seed(7), use_cache=False)),
        "nomethod": list(generate(NoCache(model), prompt, 40, 0.8, 20, 1.0, torch.Generator().manual_seed(7))),
        "course": _course_generate(model, prompt, 40, 32, 0.8, 20, torch.Generator().manual_seed(7)),
    }
    assert len(runs["cache"]) == 40
    assert runs["cache"] == runs["nocache"] == runs["nomethod"] == runs["course"]


@pytest.mark.parametrize("arch", ["gpt", "llama"])
def test_cached_logits_match_full_forward(arch):
    model = MODELS[arch](context=16)
    ids = torch.randint(0, 64, (1, 12), generator=torch.Generator().manual_seed(3))
    cache = model.new_cache(1, 12)
    with torch.no_grad():
        full = model(ids)
        parts = [model(ids[:, :5], cache=cache)] + [model(ids[:, t : t + 1], cache=cache) for t in range(5, 12)]
    torch.testing.assert_close(torch.cat(parts, dim=1), full, rtol=1e-4, atol=1e-5)


def test_same_seed_same_tokens_and_steps_agree():
    model = _gpt()
    a = list(generate(model, [3, 4], 15, 1.2, None, 0.95, torch.Generator().manual_seed(42)))
    b = list(generate(model, torch.tensor([[3, 4]]), 15, 1.2, None, 0.95, torch.Generator().manual_seed(42)))
    c = list(generate(model, [3, 4], 15, 1.2, None, 0.95, torch.Generator().manual_seed(43)))
    steps = list(generate_steps(model, [3, 4], 15, 1.2, None, 0.95, torch.Generator().manual_seed(42)))
    assert a == b
    assert a != c  # 15 draws at temperature 1.2 from a random model: a collision is vanishingly unlikely
    assert [s.token_id for s in steps] == a
    for s in steps:
        assert s.prob == pytest.approx(float(s.stages[-1].probs[s.token_id]))
        assert s.prob > 0 and 0 < s.raw_prob <= 1 and s.rank >= 0


def test_greedy_generation_is_argmax_of_full_forward():
    model = _gpt()
    tokens = list(generate(model, [1, 2, 3], 10, temperature=0.0))
    ids = [1, 2, 3]
    with torch.no_grad():
        for t in tokens:
            assert t == int(model(torch.tensor([ids]))[0, -1].argmax())
            ids.append(t)


def test_stops_at_eos_and_yields_it():
    model = _gpt()
    greedy = list(generate(model, [1, 2], 10, temperature=0.0))
    eos = greedy[3]
    stopped = list(generate(model, [1, 2], 10, temperature=0.0, eos_id=eos))
    assert stopped == greedy[: greedy.index(eos) + 1]


def test_long_prompt_is_cropped():
    model = _gpt(context=16)
    prompt = list(range(40))
    kept, dropped = sampling.crop_prompt(prompt, models.context_length(model))
    assert kept == prompt[-16:] and dropped == 24
    a = list(generate(model, prompt, 5, 0.0))
    b = list(generate(model, kept, 5, 0.0))
    assert a == b


def test_generate_restores_training_mode_and_leaves_grad_mode():
    model = _gpt().train()
    list(generate(model, [1], 3))
    assert model.training
    it = generate(model, [1], 3)
    next(it)
    assert not torch.is_inference_mode_enabled()  # the mode is on only inside the generator's own steps


def test_bad_generate_arguments_raise_at_call():
    model = _gpt()
    with pytest.raises(ValueError, match="temperature"):
        generate(model, [1], 5, temperature=-1)
    with pytest.raises(ValueError, match="no tokens"):
        generate(model, [], 5)
    with pytest.raises(ValueError, match="max_new_tokens"):
        generate(model, [1], -3)
    assert list(generate(model, [1], 0)) == []


# ------------------------------------------------------------------- ties and boundaries: transformers' rules
def _hf_kept(logits: torch.Tensor, temperature: float, top_k: int | None, top_p: float) -> set[int]:
    """The tokens Hugging Face's warpers leave finite (temperature, then top-k, then top-p, as `generate`)."""
    from transformers.generation.logits_process import (
        TemperatureLogitsWarper,
        TopKLogitsWarper,
        TopPLogitsWarper,
    )

    scores = logits.float()[None].clone()
    ids = torch.zeros(1, 1, dtype=torch.long)
    scores = TemperatureLogitsWarper(temperature)(ids, scores)
    if top_k:
        scores = TopKLogitsWarper(top_k)(ids, scores)
    if top_p < 1.0:
        scores = TopPLogitsWarper(top_p)(ids, scores)
    return set(torch.isfinite(scores[0]).nonzero().flatten().tolist())


def _kept(logits, temperature, top_k=None, top_p=1.0) -> set[int]:
    return set((next_token_probs(logits, temperature, top_k, top_p) > 0).nonzero().flatten().tolist())


TIED = [
    torch.tensor([3.0, 3.0, 1.0, 0.0]),  # a tied maximum
    torch.tensor([5.0, 2.0, 2.0, 2.0, -1.0]),  # three tied for second place
    torch.tensor([1.0, 1.0, 1.0, 1.0]),  # all tied
    torch.tensor([4.0, 4.0, 4.0, 0.5, 0.5, -2.0]),
]


@pytest.mark.parametrize("logits", TIED, ids=lambda t: str(t.tolist()))
@pytest.mark.parametrize("top_k", [1, 2, 3])
@pytest.mark.parametrize("temperature", [1.0, 0.5])  # 0.5: dividing by a power of two is exact in both
def test_top_k_keeps_what_transformers_keeps_on_ties(logits, top_k, temperature):
    assert _kept(logits, temperature, top_k) == _hf_kept(logits, temperature, top_k, 1.0)


@pytest.mark.parametrize("logits", TIED, ids=lambda t: str(t.tolist()))
@pytest.mark.parametrize("top_p", [0.3, 0.5, 0.8, 0.95])
def test_top_p_keeps_what_transformers_keeps_on_ties(logits, top_p):
    assert _kept(logits, 1.0, None, top_p) == _hf_kept(logits, 1.0, None, top_p)
    assert _kept(logits, 1.0, 2, top_p) == _hf_kept(logits, 1.0, 2, top_p)  # both filters, in generate's order


def test_top_p_at_a_rounding_boundary_equals_transformers():
    """[0.9, 0.09, 0.01] with p = 0.99: the third token's mass is exactly 1 - p; transformers keeps two tokens."""
    logits = torch.tensor([0.9, 0.09, 0.01]).log()
    hf = _hf_kept(logits, 1.0, None, 0.99)
    assert _kept(logits, 1.0, None, 0.99) == hf == {0, 1}


def test_greedy_and_top1_agree_on_a_tied_maximum():
    """t = 0 (the limit of softmax(z / t)) and top-k 1 keep the same tokens: both tied maxima, half each."""
    logits = torch.tensor([3.0, 3.0, 1.0, 0.0])
    greedy, top1 = next_token_probs(logits, 0.0), next_token_probs(logits, 1.0, top_k=1)
    assert greedy.tolist() == top1.tolist() == [0.5, 0.5, 0.0, 0.0]
    assert _kept(logits, 0.0) == _hf_kept(logits, 1.0, 1, 1.0) == {0, 1}
    draws = {sampling.draw(greedy, torch.Generator().manual_seed(s)) for s in range(40)}
    assert draws == {0, 1}  # either tied token can come out, never another
