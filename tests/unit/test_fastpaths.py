"""The fast paths compute the same function as the teaching paths.

- our fused-QKV GPT == the course's model (one Head module per head, written-out attention), weights copied
- decode.FastDecoder's logits == the model's own full forward, position by position (GPT, Llama, GQA, biases)
- decode.generate's tokens == full recomputation (greedy) and == sampling.generate (greedy and sampled)
- FastDecoder greedy == transformers' generate on the same weights (an independent reference)
- the torch.compile'd decode step == the eager one (CPU inductor); SDPA attention == matmul attention;
  the chunked read-back of greedy() == a step-by-step argmax loop
"""

from __future__ import annotations

import copy
import time

import pytest
import torch

from playground import attention, decode, sampling
from playground.course_gpt import CourseGPT, course_from_gpt
from playground.gpt import GPTConfig
from playground.llama import LlamaConfig, Transformer, repeat_kv
from tests.unit._tiny import hf_llama, randomise_, tiny_model

GPT_SHAPE = {"vocab_size": 97, "context": 40}  # TINY_SHAPES' GPT: hs 10, A 40 != C (as the course)
LLAMA_SHAPE = {"vocab_size": 97, "context": 48, "hidden_dim": 64}  # TINY_SHAPES' Llama: GQA 6/2
MODELS = {  # Llamas with random norms and biases too (randomise_), so a mix-up of any tensor shows
    "gpt": lambda: tiny_model("gpt", **GPT_SHAPE),
    "gpt-nobias-tied": lambda: tiny_model("gpt", **GPT_SHAPE, bias=False, tie_weights=True),
    "llama-gqa": lambda: randomise_(tiny_model("llama", **LLAMA_SHAPE), 0.2),
    "llama-mha-bias-tied": lambda: randomise_(
        tiny_model("llama", **LLAMA_SHAPE, n_kv_heads=6, attention_bias=True, mlp_bias=True, tie_weights=True), 0.2
    ),
}


# ----------------------------------------------------------------------------- fused vs the course's heads
@pytest.mark.parametrize("impl", ["math", "sdpa"])
@pytest.mark.parametrize("bias", [True, False])
def test_fused_gpt_equals_course_separate_heads(impl, bias):
    ours = tiny_model("gpt", **GPT_SHAPE, bias=bias, attn_impl=impl)
    course = course_from_gpt(ours).eval()
    assert sum(p.numel() for p in course.parameters()) == sum(p.numel() for p in ours.parameters())
    idx = torch.randint(0, 97, (3, 40))
    with torch.no_grad():
        torch.testing.assert_close(ours(idx), course(idx), atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(ours(idx[:, :7]), course(idx[:, :7]), atol=1e-5, rtol=1e-5)  # T < context


def test_fused_gpt_gradients_equal_course():
    ours = tiny_model("gpt", **GPT_SHAPE, attn_impl="sdpa")
    course = course_from_gpt(ours)
    idx = torch.randint(0, 97, (2, 40))
    for m in (ours, course):
        torch.nn.functional.cross_entropy(m(idx).flatten(0, 1), idx.flatten()).backward()
    torch.testing.assert_close(ours.lm_head.weight.grad, course.final_linear.weight.grad, atol=1e-6, rtol=1e-4)
    w = ours.h[0].attn.c_attn.weight.grad  # (3A, C): head 1's value rows are rows 2A + hs .. 2A + 2 hs
    torch.testing.assert_close(w[80 + 10 : 80 + 20], course.blocks[0].ma.heads[1].values.weight.grad, atol=1e-6,
                               rtol=1e-4)  # fmt: skip


def test_course_model_is_the_notes_shape():
    with torch.device("meta"):
        c = CourseGPT(GPTConfig(vocab_size=4096, context_length=512, n_embd=384, n_layer=7, n_head=7))
    assert len(c.blocks[0].ma.heads) == 7 and c.blocks[0].ma.heads[0].queries.out_features == 54
    assert c.blocks[0].ma.combine.in_features == 378
    assert round(sum(p.numel() for p in c.parameters()) / 1e6, 1) == 19.8  # the notes: 19.8M parameters


# --------------------------------------------------------------------------------- the decode step
def test_grouped_attention_equals_repeat_kv_math():
    torch.manual_seed(0)
    B, nh, nkv, T, L, hs = 2, 6, 2, 3, 9, 8
    q = torch.randn(B, nh, T, hs)
    k, v = torch.randn(B, nkv, L, hs), torch.randn(B, nkv, L, hs)
    pos = 4  # the T queries sit at positions 4, 5, 6; slots 7, 8 hold garbage and must be masked
    mask = torch.arange(L)[None, :] <= (pos + torch.arange(T))[:, None]
    got = decode.grouped_attention(q, k, v, mask, hs**-0.5)
    want, _ = attention.math_attention(q, repeat_kv(k[:, :, : pos + T], 3), repeat_kv(v[:, :, : pos + T], 3))
    torch.testing.assert_close(got, want, atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("T", [1, 3])
def test_sdpa_grouped_attention_equals_grouped_matmul(T):
    """The decoder's one-kernel attention (SDPA over the grouped query rows, additive bias repeated per head
    of a group) == the written-out grouped attention, for one new token and for a prefill of T."""
    torch.manual_seed(1)
    B, nh, nkv, L, hs = 2, 6, 2, 11, 8
    q = torch.randn(B, nh, T, hs)
    k, v = torch.randn(B, nkv, L, hs), torch.randn(B, nkv, L, hs)
    mask = torch.arange(L)[None, :] <= (5 + torch.arange(T))[:, None]  # queries at 5.., later slots garbage
    want = decode.grouped_attention(q, k, v, mask, hs**-0.5)
    bias = decode.attention_bias(mask, nh // nkv, q.dtype)
    assert bias.shape == (3 * T, L) and bias.dtype == q.dtype
    torch.testing.assert_close(decode.sdpa_grouped_attention(q, k, v, bias, hs**-0.5), want, atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("name", ["gpt", "llama-gqa"])
def test_fast_decoder_attention_variants_and_bf16_agree(name):
    """attn='sdpa' (default) and attn='matmul' give the same logits; in bf16 both stay close to the float32 model
    (the products run in bf16 now, only the softmax in float32)."""
    model = MODELS[name]()
    idx = torch.randint(0, 97, (1, 14))
    a, b = decode.FastDecoder(model, 16), decode.FastDecoder(model, 16, attn="matmul")
    assert a.attn == "sdpa" and b.attn == "matmul"
    torch.testing.assert_close(a.prefill(idx[:, :8]), b.prefill(idx[:, :8]), atol=1e-5, rtol=1e-5)
    for t in range(8, 14):
        torch.testing.assert_close(a.step(idx[:, t]), b.step(idx[:, t]), atol=1e-5, rtol=1e-5)
    with torch.no_grad():
        want = model(idx)[:, -1]
    for attn in ("sdpa", "matmul"):
        dec = decode.FastDecoder(copy.deepcopy(model).to(torch.bfloat16), 16, attn=attn)
        got = dec.prefill(idx).float()
        assert ((got - want).abs().max() / want.abs().max()).item() < 3e-2, attn
    with pytest.raises(ValueError, match="attn"):
        decode.FastDecoder(model, 16, attn="flash")


def test_greedy_chunked_read_back_equals_step_by_step():
    """greedy() reads the device-side choices back in chunks (1, 2, 4, ... 16): every length gives the tokens
    of a one-step-at-a-time argmax loop, and decoder.hist holds them after the prompt."""
    model = MODELS["llama-gqa"]()
    prompt = torch.tensor([[3, 1, 4, 1, 5]])
    dec = decode.FastDecoder(model, 48)
    logits = dec.prefill(prompt)
    want = []
    for _ in range(40):
        want.append(int(logits.argmax(-1)))
        logits = dec.step(torch.tensor(want[-1:]))
    for n in (1, 2, 3, 7, 16, 23, 40):
        assert list(decode.greedy(dec, prompt, n)) == want[:n], n  # the CPU default: no read-ahead
        assert list(decode.greedy(dec, prompt, n, chunk=16)) == want[:n], n  # CUDA's chunked read-back
        assert list(decode.greedy(dec, prompt, n, chunk=3)) == want[:n], n
    assert dec.hist[0, 5:45].tolist() == want


@pytest.mark.parametrize("name", list(MODELS))
def test_fast_decoder_logits_equal_full_forward(name):
    model = MODELS[name]()
    idx = torch.randint(0, 97, (2, 20))
    with torch.no_grad():
        full = model(idx)  # (2, 20, V)
    dec = decode.FastDecoder(model, 24, batch_size=2)
    assert dec.mode == "eager"
    torch.testing.assert_close(dec.prefill(idx[:, :12]), full[:, 11], atol=1e-5, rtol=1e-5)
    for t in range(12, 20):  # one token per step, each row its own token
        torch.testing.assert_close(dec.step(idx[:, t]), full[:, t], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("name", list(MODELS))
def test_decode_generate_greedy_equals_full_recompute(name):
    model = MODELS[name]()
    prompt = [5, 17, 3, 60, 2]
    x = torch.tensor([prompt])
    with torch.no_grad():
        for _ in range(15):
            x = torch.cat([x, model(x)[:, -1].argmax(-1, keepdim=True)], dim=1)
    want = x[0, len(prompt) :].tolist()
    assert list(decode.generate(model, prompt, 15, temperature=0)) == want
    assert list(sampling.generate(model, prompt, 15, temperature=0)) == want


@pytest.mark.parametrize("name", ["gpt", "llama-gqa"])
def test_decode_generate_sampled_equals_sampling_generate(name):
    model = MODELS[name]()
    kw = dict(temperature=0.9, top_k=20, top_p=0.95)
    a = list(sampling.generate(model, [1, 2, 3], 20, generator=torch.Generator().manual_seed(7), **kw))
    b = list(decode.generate(model, [1, 2, 3], 20, generator=torch.Generator().manual_seed(7), **kw))
    assert a == b and len(a) == 20


def test_decode_generate_stops_at_eos_and_hands_long_runs_to_sampling():
    model = MODELS["gpt"]()
    tokens = list(decode.generate(model, [1, 2, 3], 15, temperature=0))
    eos = tokens[4]
    assert list(decode.generate(model, [1, 2, 3], 15, temperature=0, eos_id=eos))[-1] == eos
    # prompt 30 + 20 new > context 40: the static cache cannot slide, so sampling's sliding window answers
    prompt = list(range(30))
    assert list(decode.generate(model, prompt, 20, temperature=0)) == list(
        sampling.generate(model, prompt, 20, temperature=0)
    )
    assert list(decode.generate(model, prompt, 0)) == []


def test_fast_decoder_greedy_equals_transformers_generate():
    hf = hf_llama()  # a random transformers Llama (GQA 6/3); ours gets its tensors by the explicit name map
    ours = _ours_from_hf(hf)
    prompt = torch.tensor([[7, 100, 3, 250, 9, 31]])
    with torch.no_grad():
        want = hf.generate(prompt, attention_mask=torch.ones_like(prompt), max_new_tokens=20, min_new_tokens=20,
                           do_sample=False, eos_token_id=None, pad_token_id=0)[0, 6:].tolist()  # fmt: skip
    dec = decode.FastDecoder(ours, 26)
    assert list(decode.greedy(dec, prompt, 20)) == want


def _ours_from_hf(hf) -> Transformer:
    from playground import checkpoints

    c = hf.config
    model = Transformer(LlamaConfig.from_hf(c.to_dict())).eval()
    sd = hf.state_dict()
    with torch.no_grad():
        for name, p in model.named_parameters():
            p.copy_(sd[checkpoints.hf_name(name)])
    return model


def test_fast_decoder_rejects_bad_use(monkeypatch):
    model = MODELS["llama-gqa"]()
    with pytest.raises(ValueError, match="context"):
        decode.FastDecoder(model, 49)
    dec = decode.FastDecoder(model, 4)
    dec.prefill(torch.tensor([[1, 2, 3]]))
    dec.step(torch.tensor([4]))
    with pytest.raises(ValueError, match="full"):
        dec.step(torch.tensor([5]))
    with pytest.raises(ValueError, match="GPT and Llama"):
        decode.FastDecoder(torch.nn.Linear(2, 2), 4)
    monkeypatch.setenv("SPACES_ZERO_GPU", "true")
    assert decode.FastDecoder(model, 4, compile=True).mode == "eager"  # never compiled on ZeroGPU


@pytest.mark.parametrize("whole_step", [False, True])
def test_compiled_decode_step_equals_eager(whole_step):
    """CPU inductor (needs a C++ compiler): the compiled layers (or the whole compiled step) give the eager
    step's logits."""
    pytest.importorskip("torch._inductor")
    model = MODELS["gpt"]()
    t = time.perf_counter()
    try:
        fast = decode.FastDecoder(model, 30, compile=True, whole_step=whole_step)
        prompt = torch.tensor([[1, 2, 3, 4]])
        eager = decode.FastDecoder(model, 30, compile=False)
        torch.testing.assert_close(fast.prefill(prompt), eager.prefill(prompt))
        for tok in (5, 6, 7):
            torch.testing.assert_close(fast.step(torch.tensor([tok])), eager.step(torch.tensor([tok])), atol=1e-5,
                                       rtol=1e-5)  # fmt: skip
    except Exception as err:  # no compiler on this machine: say so instead of failing the suite
        if "compiler" in str(err).lower() or "InductorError" in type(err).__name__:
            pytest.skip(f"torch.compile unavailable here: {err}")
        raise
    assert fast.mode == "compiled"
    print(f"compiled decode test: {time.perf_counter() - t:.1f} s")
