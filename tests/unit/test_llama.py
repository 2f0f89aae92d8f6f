"""Llama: same logits as transformers' LlamaForCausalLM, RoPE layout, GQA, config mapping (causality, the context
bound, the KV cache and overfitting are in test_models.py, for both architectures)."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from playground import checkpoints
from playground.llama import PRESETS, LlamaConfig, Transformer, apply_rotary_emb, precompute_freqs_cis, repeat_kv
from tests.unit._tiny import VOCAB, hf_llama, tiny_model, tiny_tokenizer

CASES = {
    "mha n_rep 1, untied": dict(num_attention_heads=6, num_key_value_heads=6),
    "gqa n_rep 2, tied": dict(num_attention_heads=6, num_key_value_heads=3, tie_word_embeddings=True),
    "gqa n_rep 3, biases, theta 500": dict(
        num_attention_heads=6, num_key_value_heads=2, attention_bias=True, mlp_bias=True, rope_theta=500.0
    ),
    "attn bias only, tied, theta 1e6": dict(attention_bias=True, tie_word_embeddings=True, rope_theta=1e6),
    "mlp bias only, head_dim 16": dict(mlp_bias=True, head_dim=16, rms_norm_eps=1e-6),
}


@pytest.mark.parametrize("case", list(CASES))
def test_hf_llama_loads_with_the_same_logits(case, tmp_path):
    ref = hf_llama(**CASES[case])
    ref.save_pretrained(tmp_path, safe_serialization=True)
    tiny_tokenizer().save(tmp_path)
    bundle = checkpoints.load(str(tmp_path))
    idx = torch.randint(0, VOCAB, (2, 37), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected = ref(idx).logits
        got = bundle.model(idx)
    assert got.dtype == torch.float32
    torch.testing.assert_close(got, expected, atol=1e-4, rtol=1e-4)
    assert bundle.info["arch"] == "llama" and bundle.info["params"] == sum(p.numel() for p in ref.parameters())
    with torch.no_grad():  # the cache path agrees with transformers too
        cache = bundle.model.new_cache(2)
        stepwise = torch.cat([bundle.model(idx[:, :30], cache=cache)] + [
            bundle.model(idx[:, t : t + 1], cache=cache) for t in range(30, 37)], dim=1)  # fmt: skip
    torch.testing.assert_close(stepwise, expected, atol=1e-4, rtol=1e-4)


def test_our_llama_loads_in_transformers(tmp_path):
    from transformers import AutoModelForCausalLM

    for tied in (False, True):
        ours = tiny_model("llama", vocab_size=VOCAB, tie_word_embeddings=tied, attention_bias=True)
        with torch.no_grad():
            for p in ours.parameters():
                p.add_(0.05 * torch.randn_like(p))
        folder = checkpoints.save(checkpoints.Bundle(ours, tiny_tokenizer(), {"preset": "test"}), tmp_path / str(tied))
        ref = AutoModelForCausalLM.from_pretrained(folder).float().eval()
        idx = torch.randint(0, VOCAB, (2, 25))
        with torch.no_grad():
            torch.testing.assert_close(ref(idx).logits, ours(idx), atol=1e-4, rtol=1e-4)
        assert checkpoints.load(str(folder)).info["preset"] == "test"


def meta_rotary(x, theta):
    """Meta's original RoPE: adjacent pairs (2i, 2i+1) as complex numbers. x (B, n, T, hs)."""
    hs, T = x.shape[-1], x.shape[-2]
    freqs = 1.0 / theta ** (torch.arange(0, hs, 2).float() / hs)
    cis = torch.polar(torch.ones(T, hs // 2), torch.outer(torch.arange(T).float(), freqs))  # (T, hs/2)
    xc = torch.view_as_complex(x.float().reshape(*x.shape[:-1], hs // 2, 2))
    return torch.view_as_real(xc * cis).flatten(-2)


def test_rope_layouts_differ_by_a_fixed_permutation():
    """Meta rotates pairs (2i, 2i+1), we (and HF) rotate (i, i+hs/2): the same rotation after reordering dims
    [0, 2, 4, ..., 1, 3, 5, ...] of every head, which is how HF's converter permutes Meta's wq/wk rows."""
    hs, T = 8, 11
    x = torch.randn(2, 3, T, hs)
    perm = torch.cat([torch.arange(0, hs, 2), torch.arange(1, hs, 2)])
    cos, sin = precompute_freqs_cis(hs, T, 10000.0)
    ours, _ = apply_rotary_emb(x[..., perm], x[..., perm], cos, sin)
    torch.testing.assert_close(ours, meta_rotary(x, 10000.0)[..., perm], atol=1e-5, rtol=1e-5)


def test_rope_preserves_dot_products_of_equal_offsets():
    hs = 16
    cos, sin = precompute_freqs_cis(hs, 20)
    q, k = torch.randn(1, 1, 1, hs), torch.randn(1, 1, 1, hs)

    def score(i, j):  # noqa: E306
        qi, _ = apply_rotary_emb(q, q, cos[i : i + 1], sin[i : i + 1])
        kj, _ = apply_rotary_emb(k, k, cos[j : j + 1], sin[j : j + 1])
        return (qi * kj).sum()

    torch.testing.assert_close(score(3, 1), score(13, 11), atol=1e-5, rtol=1e-5)  # depends on i - j only


def test_repeat_kv():
    x = torch.arange(2 * 3 * 4).float().view(1, 2, 3, 4)  # (B, nkv, S, hs)
    y = repeat_kv(x, 3)
    assert y.shape == (1, 6, 3, 4)
    assert torch.equal(y[:, 0], x[:, 0]) and torch.equal(y[:, 2], x[:, 0]) and torch.equal(y[:, 3], x[:, 1])


def test_config_checks_and_hf_mapping():
    with pytest.raises(ValueError, match="multiple of n_kv_heads"):
        LlamaConfig(n_heads=6, n_kv_heads=4)
    with pytest.raises(ValueError, match="llama3"):
        LlamaConfig.from_hf({"model_type": "llama", "rope_scaling": {"rope_type": "llama3", "factor": 8.0}})
    with pytest.raises(ValueError, match="mistral"):
        LlamaConfig.from_hf({"model_type": "mistral"})
    cfg = PRESETS["smollm2-135m"]
    assert LlamaConfig.from_hf(cfg.to_hf()).to_hf() == cfg.to_hf()
    wider = dataclasses.replace(PRESETS["tiny"], dim=256, n_heads=8)  # derived sizes follow, not stale
    assert (wider.head_size, wider.kv_heads, wider.ffn_dim) == (32, 2, 352)
    assert (LlamaConfig(dim=96, n_heads=3).head_size, LlamaConfig(dim=96, n_heads=3).ffn_dim) == (32, 256)


def test_smollm2_shape_has_135m_params():
    with torch.device("meta"):
        n = sum(p.numel() for p in Transformer(PRESETS["smollm2-135m"]).parameters())
    assert n == 134_515_008
