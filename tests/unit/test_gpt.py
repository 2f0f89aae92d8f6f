"""The course's GPT: parameter count, shapes, causality, KV cache, overfitting, init."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from playground.gpt import GPT, PRESETS, GPTConfig, count_params, new_gpt


def tiny(**kw) -> GPT:
    torch.manual_seed(0)
    cfg = dict(vocab_size=61, context_length=32, n_embd=42, n_layer=2, n_head=4, dropout=0.0)  # hs 10, A 40
    return GPT(GPTConfig(**{**cfg, **kw})).eval()


def test_course_preset_is_19_8M_params():
    n = count_params(GPT(PRESETS["course"]))
    print(f"course GPT: {n:,} parameters")
    assert n == 19_837_954
    assert round(n / 1e6, 1) == 19.8


def test_course_heads_concatenate_to_378():
    attn = GPT(PRESETS["course"]).h[0].attn
    assert attn.head_size == 54 and attn.attn_dim == 378
    assert attn.c_proj.weight.shape == (384, 378)


def test_tiny_preset_is_about_a_million_non_embedding_params():
    m = new_gpt("tiny")
    embed = m.wte.weight.numel() + m.wpe.weight.numel() + m.lm_head.weight.numel()
    assert 0.8e6 < count_params(m) - embed < 1.3e6


def test_init_normal_002_for_linear_and_embedding():
    m = new_gpt("tiny")
    for w in (m.wte.weight, m.wpe.weight, m.h[0].attn.c_attn.weight, m.lm_head.weight):
        assert abs(w.std().item() - 0.02) < 0.002
    assert torch.all(m.h[0].mlp.c_fc.bias == 0)


@pytest.mark.parametrize("impl", ["math", "sdpa"])
def test_shapes_and_causality(impl):
    m = tiny(attn_impl=impl)
    idx = torch.randint(0, 61, (2, 12))
    logits = m(idx)
    assert logits.shape == (2, 12, 61)
    changed = idx.clone()
    changed[:, 8] = (changed[:, 8] + 1) % 61
    other = m(changed)
    torch.testing.assert_close(other[:, :8], logits[:, :8])
    assert not torch.allclose(other[:, 8:], logits[:, 8:])


def test_math_and_sdpa_models_agree():
    idx = torch.randint(0, 61, (2, 16))
    torch.testing.assert_close(tiny(attn_impl="math")(idx), tiny(attn_impl="sdpa")(idx), atol=1e-5, rtol=1e-5)


def greedy(m, idx, n, use_cache):
    out = idx
    cache = m.new_cache(idx.shape[0]) if use_cache else None
    step = idx
    with torch.no_grad():
        for _ in range(n):
            logits = m(step, cache=cache) if use_cache else m(out)
            nxt = logits[:, -1].argmax(-1, keepdim=True)  # (B, 1)
            out = torch.cat([out, nxt], dim=1)
            step = nxt
    return out


@pytest.mark.parametrize("impl", ["math", "sdpa"])
def test_kv_cache_greedy_matches_full_recompute(impl):
    m = tiny(attn_impl=impl)
    idx = torch.randint(0, 61, (2, 5))
    assert greedy(m, idx, 20, True).tolist() == greedy(m, idx, 20, False).tolist()


def test_cache_chunked_prefill_logits_match():
    m = tiny()
    idx = torch.randint(0, 61, (1, 14))
    full = m(idx)
    cache = m.new_cache(1)
    parts = [m(idx[:, :6], cache=cache), m(idx[:, 6:7], cache=cache), m(idx[:, 7:], cache=cache)]
    torch.testing.assert_close(torch.cat(parts, 1), full, atol=1e-5, rtol=1e-5)
    assert cache.pos == 14


def test_context_overflow_is_a_value_error():
    m = tiny()
    with pytest.raises(ValueError, match="33 tokens"):
        m(torch.zeros(1, 33, dtype=torch.long))
    with pytest.raises(ValueError, match="max_len"):
        m.new_cache(1, 64)


def test_bad_config():
    with pytest.raises(ValueError, match="n_layer"):
        GPTConfig(n_layer=0)
    with pytest.raises(ValueError, match="attn_impl"):
        GPTConfig(attn_impl="fast")


def test_tied_weights_share_one_matrix():
    m = tiny(tie_weights=True)
    assert m.lm_head.weight is m.wte.weight
    assert count_params(m) == count_params(tiny()) - 61 * 42


def test_overfits_one_batch():
    torch.manual_seed(0)
    m = tiny().train()
    x = torch.randint(0, 61, (2, 16))
    y = torch.roll(x, -1, dims=1)
    opt = torch.optim.AdamW(m.parameters(), lr=1e-2)
    for _ in range(50):
        loss = F.cross_entropy(m(x).flatten(0, 1), y.flatten())
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.1, loss.item()
