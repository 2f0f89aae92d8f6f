"""GPU checks of the fast paths (skipped without CUDA): the compiled + CUDA-graph decoder computes what the
eager one does, greedy tokens match the teaching path, and the bench runs end to end on tiny shapes.

Run: python -m pytest -q -s tests/gpu/test_bench_gpu.py   (-s shows the decoder's modes and timings)
"""

from __future__ import annotations

import json
import time

import pytest
import torch

from playground import bench, decode, sampling
from playground.gpt import new_gpt
from playground.llama import new_llama

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]
DEV = torch.device("cuda")


def model(arch: str, dtype=torch.float32):
    torch.manual_seed(0)
    m = new_llama("tiny", vocab_size=512) if arch == "llama" else new_gpt("tiny", vocab_size=512)
    return m.to(DEV, dtype).eval()


@pytest.mark.parametrize("compile_", [False, True])
@pytest.mark.parametrize("arch", ["gpt", "llama"])
def test_cuda_graph_decoder_equals_eager_decoder(arch, compile_):
    m = model(arch)
    fast = decode.FastDecoder(m, 64, compile=compile_, cuda_graph=True)
    eager = decode.FastDecoder(m, 64, compile=False, cuda_graph=False)
    print(f"\n{arch}: mode {fast.mode}, {fast.attn} attention")
    assert "cuda-graph" in fast.mode and ("compiled" in fast.mode) == compile_
    prompt = torch.randint(0, 512, (1, 10), device=DEV)
    torch.testing.assert_close(fast.prefill(prompt), eager.prefill(prompt), atol=1e-4, rtol=1e-4)
    for t in range(20):
        tok = torch.tensor([t * 7 % 512], device=DEV)
        torch.testing.assert_close(fast.step(tok).clone(), eager.step(tok), atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("attn", ["sdpa", "matmul"])
def test_whole_step_graph_bf16_close_to_eager_fp32(attn):
    """The whole step compiled as one graph (whole_step=True) in bf16, either attention: logits close to the
    float32 eager decoder's, step after step, and the same greedy tokens for a while."""
    m32 = model("llama")
    fast = decode.FastDecoder(model("llama", torch.bfloat16), 64, attn=attn, whole_step=True)
    eager = decode.FastDecoder(m32, 64, compile=False, cuda_graph=False, attn="matmul")
    print(f"\nwhole step: mode {fast.mode}, {fast.attn} attention")
    assert "cuda-graph" in fast.mode
    prompt = torch.randint(0, 512, (1, 10), device=DEV)
    for got, want in [(fast.prefill(prompt), eager.prefill(prompt))] + [
        (fast.step(torch.tensor([t], device=DEV)).clone(), eager.step(torch.tensor([t], device=DEV)))
        for t in range(3, 40, 3)
    ]:
        assert ((got.float() - want).abs().max() / want.abs().max()).item() < 3e-2


@pytest.mark.parametrize("arch", ["gpt", "llama"])
def test_graph_greedy_tokens_equal_sampling_generate_fp32(arch):
    m = model(arch)
    prompt = list(range(3, 15))
    want = list(sampling.generate(m, prompt, 40, temperature=0))
    assert list(decode.generate(m, prompt, 40, temperature=0)) == want
    g1, g2 = torch.Generator().manual_seed(1), torch.Generator().manual_seed(1)
    a = list(sampling.generate(m, prompt, 30, temperature=0.8, top_k=50, generator=g1))
    assert list(decode.generate(m, prompt, 30, temperature=0.8, top_k=50, generator=g2)) == a


@pytest.mark.parametrize("arch", ["gpt", "llama"])
def test_bf16_graph_decoder_close_to_model(arch):
    m = model(arch, torch.bfloat16)
    prompt = torch.randint(0, 512, (1, 16), device=DEV)
    with torch.no_grad():
        want = m(prompt)[:, -1].float()
    got = decode.FastDecoder(m, 32).prefill(prompt).float()
    assert ((got - want).abs().max() / want.abs().max()).item() < 3e-2


def test_decode_speed_printout():
    """Not an assertion of speed: eager model vs FastDecoder on SmolLM2-135M's shape, bf16, batch 1."""
    torch.manual_seed(0)
    m = new_llama("smollm2-135m").to(DEV, torch.bfloat16).eval()
    prompt = torch.randint(0, 49152, (1, 32), device=DEV)
    dec = decode.FastDecoder(m, 32 + 128)
    for name, fn in (("sampling.generate", lambda: list(sampling.generate(m, prompt[0].tolist(), 128, 0))),
                     (f"FastDecoder {dec.mode}", lambda: list(decode.greedy(dec, prompt, 128)))):  # fmt: skip
        fn()
        torch.cuda.synchronize()
        t = time.perf_counter()
        fn()
        torch.cuda.synchronize()
        print(f"\n{name:32s} {128 / (time.perf_counter() - t):8.0f} tok/s")


def test_bench_tiny_on_cuda_has_no_error_rows(tmp_path):
    out = tmp_path / "b.md"
    assert bench.cli(["--device", "cuda", "--quick", "--tiny", "--out", str(out)]) == 0
    rows = json.loads(out.with_suffix(".json").read_text())["rows"]
    assert rows and all(r["error"] is None and r["ours"] and r["ref"] for r in rows), rows
