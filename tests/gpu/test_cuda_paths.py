"""GPU checks (skipped without CUDA): both models forward/backward in bf16 with each attention path,
agreement between paths, KV cache on the GPU, bf16 checkpoints staying bf16, and a timing printout.

Run: python -m pytest -q -s tests/gpu/test_cuda_paths.py   (-s shows the timing table)
"""

from __future__ import annotations

import time

import pytest
import torch
import torch.nn.functional as F

from playground import attention, checkpoints
from playground.gpt import GPT
from playground.gpt import PRESETS as GPT_PRESETS
from playground.llama import LlamaConfig, Transformer

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]

IMPLS = ["math", "sdpa"] + (["flash"] if attention.flash_attn_func is not None else [])
DEV = torch.device("cuda")


def make(arch: str, impl: str, **kw) -> torch.nn.Module:
    torch.manual_seed(0)
    if arch == "gpt":
        cfg = {**GPT_PRESETS["course"].to_dict(), "dropout": 0.0, "attn_impl": impl, **kw}
        return GPT(type(GPT_PRESETS["course"])(**cfg)).to(DEV)
    cfg = LlamaConfig(vocab_size=4096, dim=512, n_layers=8, n_heads=8, n_kv_heads=4, hidden_dim=1376,
                      max_seq_len=1024, attn_impl=impl, **kw)  # fmt: skip
    return Transformer(cfg).to(DEV)


def step(model, idx):
    """One bf16-autocast forward/backward; returns (logits float32, loss, grad norm)."""
    model.zero_grad(set_to_none=True)
    with torch.autocast("cuda", dtype=torch.bfloat16):
        logits = model(idx)
        loss = F.cross_entropy(logits[:, :-1].flatten(0, 1).float(), idx[:, 1:].flatten())
    loss.backward()
    grads = torch.stack([p.grad.float().norm() for p in model.parameters() if p.grad is not None])
    return logits.float().detach(), loss.item(), grads.norm().item()


@pytest.mark.parametrize("arch", ["gpt", "llama"])
def test_forward_backward_bf16_every_path_agrees(arch):
    idx = torch.randint(0, 4096, (4, 512), device=DEV)
    results = {impl: step(make(arch, impl), idx) for impl in IMPLS}
    ref_logits, ref_loss, _ = results["math"]
    for impl, (logits, loss, gnorm) in results.items():
        assert torch.isfinite(logits).all() and gnorm == gnorm and gnorm > 0, impl
        rel = ((logits - ref_logits).abs().max() / ref_logits.abs().max()).item()
        print(f"\n{arch:6s} {impl:6s} loss {loss:.4f} grad-norm {gnorm:.4f} max rel. diff vs math {rel:.2e}")
        assert rel < 2e-2 and abs(loss - ref_loss) < 1e-2, (impl, rel, loss, ref_loss)


@pytest.mark.parametrize("arch", ["gpt", "llama"])
def test_pure_bf16_weights_train_a_step(arch):
    model = make(arch, "auto").to(torch.bfloat16)
    idx = torch.randint(0, 4096, (2, 256), device=DEV)
    logits = model(idx)
    assert logits.dtype == torch.bfloat16
    F.cross_entropy(logits[:, :-1].flatten(0, 1).float(), idx[:, 1:].flatten()).backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


@pytest.mark.parametrize("arch", ["gpt", "llama"])
@pytest.mark.parametrize("impl", IMPLS)
def test_kv_cache_greedy_matches_full_recompute_on_gpu(arch, impl):
    model = make(arch, impl).eval()  # float32 on the GPU: exact token agreement is a fair ask
    idx = torch.randint(0, 4096, (2, 16), device=DEV)
    full, cached, step_in, cache = idx, idx, idx, model.new_cache(2)
    with torch.no_grad():
        for _ in range(24):
            full = torch.cat([full, model(full)[:, -1].argmax(-1, keepdim=True)], 1)
            nxt = model(step_in, cache=cache)[:, -1].argmax(-1, keepdim=True)
            cached, step_in = torch.cat([cached, nxt], 1), nxt
    assert cached.tolist() == full.tolist()


def test_bf16_checkpoint_stays_bf16_on_cuda(tmp_path):
    from playground.tokenizer import train_tokenizer

    tok = train_tokenizer("\n".join(f"line {i} of a tiny corpus for a tiny tokenizer" for i in range(300)), 320)
    model = Transformer(LlamaConfig(vocab_size=320, dim=64, n_layers=2, n_heads=4, max_seq_len=64))
    checkpoints.save(checkpoints.Bundle(model.to(torch.bfloat16), tok, {}), tmp_path)
    b = checkpoints.load(str(tmp_path), device="cuda")
    assert next(b.model.parameters()).dtype == torch.bfloat16 and next(b.model.parameters()).is_cuda
    assert b.model(torch.zeros(1, 8, dtype=torch.long, device=DEV)).shape == (1, 8, 320)


def test_timing_table():
    """Not an assertion of speed: a printout for the closing note (ms per fwd+bwd, tokens/s)."""
    rows = []
    for arch in ("gpt", "llama"):
        for impl in IMPLS:
            model = make(arch, impl)
            idx = torch.randint(0, 4096, (16, 512), device=DEV)
            for _ in range(3):
                step(model, idx)
            torch.cuda.synchronize()
            t, n = time.perf_counter(), 10
            for _ in range(n):
                step(model, idx)
            torch.cuda.synchronize()
            ms = (time.perf_counter() - t) / n * 1000
            rows.append(f"{arch:6s} {impl:6s} {ms:8.2f} ms/step  {idx.numel() / ms * 1000:12,.0f} tok/s")
    print("\nbf16 autocast, batch 16 x 512, forward+backward on", torch.cuda.get_device_name())
    print("\n".join(rows))
