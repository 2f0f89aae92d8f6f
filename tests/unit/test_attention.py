"""The attention kernels agree with each other and with a float64 reference; the KV cache keeps its place."""

from __future__ import annotations

import math

import pytest
import torch

from playground import attention as A


def reference(q, k, v):
    """Float64, one query at a time, from the definition: query i (absolute S-T+i) sees keys 0..S-T+i."""
    q, k, v = q.double(), k.double(), v.double()
    t, s = q.shape[2], k.shape[2]
    out = torch.zeros_like(q)
    for i in range(t):
        n = s - t + i + 1
        w = torch.softmax(q[:, :, i : i + 1] @ k[:, :, :n].transpose(-2, -1) / math.sqrt(q.shape[-1]), dim=-1)
        out[:, :, i : i + 1] = w @ v[:, :, :n]
    return out


def qkv(t, s, b=2, nh=3, hs=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (
        torch.randn(b, nh, t, hs, generator=g),
        torch.randn(b, nh, s, hs, generator=g),
        torch.randn(b, nh, s, hs, generator=g),
    )


@pytest.mark.parametrize("t,s", [(7, 7), (1, 9), (3, 10), (1, 1)])
@pytest.mark.parametrize("impl", ["math", "sdpa", "auto", "flash"])
def test_kernels_match_reference(impl, t, s):
    q, k, v = qkv(t, s)
    out = A.attention(q, k, v, impl)
    assert out.shape == q.shape
    torch.testing.assert_close(out.double(), reference(q, k, v), atol=1e-5, rtol=1e-5)


def test_math_weights_are_causal_rows_that_sum_to_one():
    q, k, v = qkv(4, 6)
    _, w = A.math_attention(q, k, v)
    assert w.shape == (2, 3, 4, 6) and w.dtype == torch.float32
    torch.testing.assert_close(w.sum(-1), torch.ones(2, 3, 4))
    assert torch.all(w[..., 0, 3:] == 0) and torch.all(w[..., 3, :] > 0)  # query 0 sits at position 2


def test_causal_mask_shift():
    m = A.causal_mask(2, 4, torch.device("cpu"))
    assert m.tolist() == [[True, True, True, False], [True, True, True, True]]


def test_capture_weights_is_thread_local_and_forces_math():
    q, k, v = qkv(5, 5)
    with A.capture_weights() as store:
        A.attention(q, k, v, "sdpa")
        A.attention(q, k, v, "sdpa")
    assert len(store) == 2 and store[0].shape == (2, 3, 5, 5)
    A.attention(q, k, v, "sdpa")
    assert len(store) == 2  # nothing captured outside the block


def test_bad_impl():
    with pytest.raises(ValueError, match="bogus"):
        A.check_impl("bogus")


def test_kv_cache_positions_and_overflow():
    cache = A.KVCache(n_layers=2, batch_size=1, n_kv_heads=2, max_len=5, head_size=4)
    k = torch.randn(1, 2, 3, 4)
    ks, vs = cache.update(0, k, k + 1)
    assert ks.shape == (1, 2, 3, 4) and torch.equal(ks, k) and torch.equal(vs, k + 1)
    cache.update(1, k, k)  # every layer writes its 3 keys, then the model advances once
    cache.advance(3)
    ks, _ = cache.update(0, torch.ones(1, 2, 2, 4), torch.ones(1, 2, 2, 4))
    assert ks.shape == (1, 2, 5, 4) and torch.equal(ks[:, :, :3], k) and torch.all(ks[:, :, 3:] == 1)
    cache.advance(2)
    with pytest.raises(ValueError, match="KV cache full"):
        cache.update(0, torch.ones(1, 2, 1, 4), torch.ones(1, 2, 1, 4))
    cache.reset()
    assert cache.pos == 0
    with pytest.raises(ValueError, match="KVCache expects"):
        cache.update(0, torch.ones(2, 2, 1, 4), torch.ones(2, 2, 1, 4))


# ---- introspect: the views' plain data built on the capture above
def _models():
    from playground.gpt import GPT, GPTConfig
    from playground.llama import LlamaConfig, Transformer

    torch.manual_seed(0)
    gpt = GPT(GPTConfig(vocab_size=50, context_length=16, n_embd=24, n_layer=3, n_head=4, attn_impl="sdpa"))
    llama = Transformer(LlamaConfig(vocab_size=50, dim=24, n_layers=2, n_heads=4, n_kv_heads=2, max_seq_len=16))
    return {"gpt": gpt.eval(), "llama": llama.eval()}


@pytest.mark.parametrize("arch", ["gpt", "llama"])
def test_attention_maps_shape_rows_and_causality(arch):
    from playground import introspect

    model = _models()[arch]
    idx = torch.randint(0, 50, (9,))
    maps = introspect.attention_maps(model, idx)
    n_layers = 3 if arch == "gpt" else 2
    assert maps.shape == (n_layers, 4, 9, 9) and maps.dtype == torch.float32
    torch.testing.assert_close(maps.sum(-1), torch.ones(n_layers, 4, 9))
    assert torch.all(maps.triu(diagonal=1) == 0)
    torch.testing.assert_close(model(idx[None]), model(idx[None]))  # no state left behind
    with pytest.raises(ValueError, match="longer than"):
        introspect.attention_maps(model, torch.zeros(17, dtype=torch.long))


def test_count_params_and_top_k_table():
    from playground import introspect
    from playground.gpt import GPT, PRESETS

    c = introspect.count_params(GPT(PRESETS["course"]))
    assert c.total == 19_837_954 and c.embedding == 4096 * 384 + 512 * 384 + 384 * 4096
    assert c.non_embedding == c.total - c.embedding

    class Tok:
        def token_string(self, i):
            return f"t{i}"

    rows = introspect.top_k_table(torch.tensor([0.1, 0.6, 0.3]), Tok(), k=5)
    assert [r[:2] for r in rows] == [("t1", 1), ("t2", 2), ("t0", 0)]
    assert rows[0][2] == pytest.approx(0.6)
