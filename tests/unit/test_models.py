"""What holds for every model, GPT and Llama alike: logits' shape, causality, a clear error past the context, the KV
cache equals full recomputation, the math and SDPA attention paths agree, and one batch can be overfit."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from tests.unit._tiny import tiny_model, tiny_vocab

ARCHS = ["gpt", "llama"]


@pytest.mark.parametrize("impl", ["math", "sdpa"])
@pytest.mark.parametrize("arch", ARCHS)
def test_shapes_and_causality(arch, impl):
    m, V = tiny_model(arch, attn_impl=impl), tiny_vocab(arch)
    idx = torch.randint(0, V, (2, 15))
    logits = m(idx)
    assert logits.shape == (2, 15, V)
    changed = idx.clone()
    changed[:, 9] = (changed[:, 9] + 5) % V
    other = m(changed)
    torch.testing.assert_close(other[:, :9], logits[:, :9])  # the past never sees the future
    assert not torch.allclose(other[:, 9:], logits[:, 9:])


@pytest.mark.parametrize("arch", ARCHS)
def test_context_overflow_is_a_value_error(arch):
    m = tiny_model(arch, context=16)
    with pytest.raises(ValueError, match="17 tokens"):
        m(torch.zeros(1, 17, dtype=torch.long))
    with pytest.raises(ValueError, match="max_len"):
        m.new_cache(1, 32)


@pytest.mark.parametrize("arch", ARCHS)
def test_math_and_sdpa_agree(arch):
    idx = torch.randint(0, tiny_vocab(arch), (2, 20))
    math_logits, sdpa_logits = tiny_model(arch, attn_impl="math")(idx), tiny_model(arch, attn_impl="sdpa")(idx)
    torch.testing.assert_close(math_logits, sdpa_logits, atol=1e-5, rtol=1e-5)


def greedy(m, idx: torch.Tensor, n: int, use_cache: bool) -> list[list[int]]:
    out, step = idx, idx
    cache = m.new_cache(idx.shape[0]) if use_cache else None
    with torch.no_grad():
        for _ in range(n):
            logits = m(step, cache=cache) if use_cache else m(out)
            nxt = logits[:, -1].argmax(-1, keepdim=True)  # (B, 1)
            out, step = torch.cat([out, nxt], dim=1), nxt
    return out.tolist()


@pytest.mark.parametrize("impl", ["math", "sdpa"])
@pytest.mark.parametrize("arch", ARCHS)
def test_kv_cache_greedy_matches_full_recompute(arch, impl):
    m = tiny_model(arch, attn_impl=impl)
    idx = torch.randint(0, tiny_vocab(arch), (2, 5))
    assert greedy(m, idx, 20, True) == greedy(m, idx, 20, False)


@pytest.mark.parametrize("arch", ARCHS)
def test_cache_chunked_prefill_logits_match(arch):
    m = tiny_model(arch)
    idx = torch.randint(0, tiny_vocab(arch), (1, 14))
    full = m(idx)
    cache = m.new_cache(1)
    parts = [m(idx[:, :6], cache=cache), m(idx[:, 6:7], cache=cache), m(idx[:, 7:], cache=cache)]
    torch.testing.assert_close(torch.cat(parts, 1), full, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("arch", ARCHS)
def test_overfits_one_batch(arch):
    m = tiny_model(arch).train()
    x = torch.randint(0, tiny_vocab(arch), (2, 17))
    opt = torch.optim.AdamW(m.parameters(), lr=1e-2)
    for _ in range(60):
        loss = F.cross_entropy(m(x[:, :-1]).flatten(0, 1), x[:, 1:].flatten())
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.1, loss.item()
